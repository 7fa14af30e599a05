// A reader's page: their reading time, days, speed, books, highlights and what to read next.
"use strict";
(() => {
  const {$, esc, getJSON, count, duration, date, day, state, failed, themeButton, css, axis, chart} = dogear;
  const reader = decodeURIComponent(location.pathname.split("/").pop());
  const api = "/v1/readers/" + encodeURIComponent(reader);
  $("who").textContent = `${reader}'s reading`;
  document.title = `${reader}'s reading · dogear`;
  themeButton($("theme"));
  const panels = ["time", "days", "weekly", "speed", "continue", "finished", "highlights", "recs", "year"];

  // Calendar arithmetic on YYYY-MM-DD dates, at noon UTC so no zone or DST shifts a day.
  const noon = (ymd) => new Date(ymd + "T12:00:00Z");
  const ymd = (d) => d.toISOString().slice(0, 10);
  const addDays = (s, n) => ymd(new Date(noon(s).getTime() + n * 864e5));
  const monday = (s) => addDays(s, -((noon(s).getUTCDay() + 6) % 7));
  const sum = (days) => days.reduce((t, d) => t + d.minutes, 0);
  const days_ = (n) => count(n) + (n === 1 ? " day" : " days");

  function titleOf(books) {
    const byId = new Map(books.map((b) => [b.book, b]));
    return (id) => {
      const b = byId.get(id);
      return {title: (b && b.title) || id, authors: (b && b.authors) || []};
    };
  }
  const bookLine = (t) => `<span class="title">${esc(t.title)}</span>${t.authors.length ? ` <span class="by">by ${esc(t.authors.join(", "))}</span>` : ""}`;

  function readingTime(ins) {
    const days = ins.reading_by_day, today = days[days.length - 1].date;
    const since = (start) => sum(days.filter((d) => d.date >= start));
    $("time").innerHTML = [
      [duration(since(monday(today))), "this week"],
      [duration(since(today.slice(0, 8) + "01")), "this month"],
      [duration(since(today.slice(0, 5) + "01-01")), "this year"],
      [days_(ins.current_streak_days), "current streak"],
      [days_(ins.longest_streak_days), "longest streak"],
    ].map(([v, what]) => `<div class="kpi"><b>${esc(v)}</b><span>${esc(what)}</span></div>`).join("");
    $("asof").textContent = `days in ${ins.time_zone} · updated ${dogear.when(ins.as_of)}`;
    state($("time-state"), "ok", "");
  }

  function calendar(ins) {
    // A year on wide screens; half of one on a phone, so the days stay large enough to see.
    const all = ins.reading_by_day, days = all.slice(innerWidth < 600 ? -182 : -366);
    const read = days.filter((d) => d.minutes > 0).length;
    if (!read) {
      state($("days-state"), "empty", "No reading days yet: days you read on light up here.");
      $("calendar").hidden = true;
      return;
    }
    state($("days-state"), "ok", "");
    $("calendar").hidden = false;
    $("calendar").setAttribute("aria-label", `Calendar of reading days: ${read} of the last ${days.length} days had reading`);
    chart($("calendar"), () => ({
      tooltip: {formatter: (p) => `${day(p.value[0])}: ${duration(p.value[1])}`},
      visualMap: {type: "piecewise", orient: "horizontal", left: "center", bottom: 0, itemGap: 6, itemWidth: 12, itemHeight: 10,
        textStyle: {color: css("--muted"), fontSize: 12},
        pieces: [{value: 0, label: "0"}, {gt: 0, lte: 15, label: "≤15"}, {gt: 15, lte: 45, label: "≤45"},
          {gt: 45, lte: 90, label: "≤90"}, {gt: 90, label: ">90 min"}],
        inRange: {color: [css("--heat0"), css("--heat1"), css("--heat2"), css("--heat3"), css("--heat4")]}},
      calendar: {range: [days[0].date, days[days.length - 1].date], top: 28, left: 40, right: 10, bottom: 46, cellSize: ["auto", "auto"],
        itemStyle: {color: css("--panel"), borderColor: css("--panel"), borderWidth: 2},
        splitLine: {show: false}, yearLabel: {show: false},
        dayLabel: {firstDay: 1, nameMap: "en", fontSize: 12, color: css("--muted")},
        monthLabel: {fontSize: 12, color: css("--muted")}},
      series: [{type: "heatmap", coordinateSystem: "calendar", data: days.map((d) => [d.date, Math.round(d.minutes)])}],
    }));
    $("streaks").innerHTML = `Current streak <b>${days_(ins.current_streak_days)}</b> · longest <b>${days_(ins.longest_streak_days)}</b>`;
  }

  function weekly(ins) {
    const weeks = new Map();
    for (const d of ins.reading_by_day.slice(-7 * 26)) {
      const w = monday(d.date);
      weeks.set(w, (weeks.get(w) || 0) + d.minutes);
    }
    const labels = [...weeks.keys()], values = [...weeks.values()].map(Math.round);
    if (!values.some((v) => v > 0)) {
      state($("weekly-state"), "empty", "No reading time recorded in the last six months.");
      $("weekly").hidden = true;
      return;
    }
    state($("weekly-state"), "ok", "");
    $("weekly").hidden = false;
    $("weekly").setAttribute("aria-label", `Bar chart of minutes read per week over the last ${labels.length} weeks`);
    chart($("weekly"), () => ({
      xAxis: axis("week starting", {type: "category", data: labels.map(day)}),
      yAxis: axis("minutes", {type: "value", minInterval: 1}),
      series: [{type: "bar", name: "minutes read", data: values}],
    }));
  }

  function speed(ins, books) {
    $("speed-now").innerHTML = [
      [ins.pages_per_hour == null ? "–" : count(ins.pages_per_hour), "pages per hour"],
      [ins.percent_per_hour == null ? "–" : ins.percent_per_hour.toFixed(1) + " %", "of a book per hour"],
    ].map(([v, what]) => `<div class="kpi"><b>${esc(v)}</b><span>${esc(what)}</span></div>`).join("");
    const points = books.filter((b) => b.finished && b.reading_minutes >= 10 && b.pages_read > 0)
      .map((b) => ({when: b.finished, perHour: b.pages_read / (b.reading_minutes / 60), title: b.title || b.book}))
      .sort((a, b) => a.when.localeCompare(b.when));
    if (points.length < 2) {
      state($("speed-state"), "empty", "How your speed changes shows here once you have finished two books with page turns recorded.");
      $("speed").hidden = true;
      return;
    }
    state($("speed-state"), "ok", "");
    $("speed").hidden = false;
    $("speed").setAttribute("aria-label", `Pages per hour of each of ${points.length} finished books, by the day it was finished`);
    chart($("speed"), () => ({
      tooltip: {trigger: "item", formatter: (p) => `${esc(points[p.dataIndex].title)}: ${Math.round(p.value[1])} pages/h`},
      xAxis: axis("finished", {type: "time", axisLabel: Object.assign(axis("").axisLabel, {hideOverlap: true, formatter: "{d} {MMM}"})}),
      yAxis: axis("pages per hour", {type: "value", minInterval: 1}),
      series: [{type: "line", name: "pages per hour", symbolSize: 8, data: points.map((p) => [p.when, Math.round(p.perHour)])}],
    }));
  }

  function continueReading(ins, title) {
    const items = ins.continue_reading.slice(0, 6);
    if (!items.length) {
      state($("continue-state"), "empty", "Nothing in progress: books you start appear here with how far you got.");
      $("continue").innerHTML = "";
      return;
    }
    state($("continue-state"), "ok", "");
    $("continue").innerHTML = items.map((c) => {
      const pct = c.position == null ? null : Math.round(c.position * 100);
      return `<li>${bookLine(title(c.book))}
        ${pct == null ? "" : `<progress max="100" value="${pct}" aria-label="${pct} percent read"></progress>`}
        <div class="muted">${pct == null ? "" : pct + "% · "}${c.estimated_minutes_left == null ? "" : "about " + duration(c.estimated_minutes_left) + " left · "}last read ${esc(dogear.when(c.last_read))}</div></li>`;
    }).join("");
  }

  function finished(books) {
    const done = books.filter((b) => b.finished).sort((a, b) => b.finished.localeCompare(a.finished));
    if (!done.length) {
      state($("finished-state"), "empty", "No finished books yet.");
      $("finished").innerHTML = "";
      return;
    }
    state($("finished-state"), "ok", "");
    $("finished").innerHTML = done.slice(0, 20).map((b) =>
      `<li>${bookLine({title: b.title || b.book, authors: b.authors || []})}
        <div class="muted">finished ${esc(date(b.finished))}${b.rating ? ` · rated ${b.rating} of 5` : ""} · ${esc(duration(b.reading_minutes))} reading</div></li>`).join("") +
      (done.length > 20 ? `<li class="muted">and ${done.length - 20} more</li>` : "");
  }

  function year(ins, books) {
    const days = ins.reading_by_day, today = days[days.length - 1].date, y = today.slice(0, 4);
    const inYear = days.filter((d) => d.date.startsWith(y));
    const thisYear = (iso) => iso && new Date(iso).getFullYear() === Number(y);
    const finishedThisYear = books.filter((b) => thisYear(b.finished));
    const months = new Map();
    for (const d of inYear) months.set(d.date.slice(0, 7), (months.get(d.date.slice(0, 7)) || 0) + d.minutes);
    const best = [...months].sort((a, b) => b[1] - a[1])[0];
    if (!sum(inYear) && !finishedThisYear.length) {
      state($("year-state"), "empty", `Nothing read in ${y} yet: your year in books fills in as you read.`);
      $("year").innerHTML = "";
      return;
    }
    state($("year-state"), "ok", "");
    const monthName = (m) => new Intl.DateTimeFormat(undefined, {month: "long"}).format(noon(m + "-01"));
    $("year").innerHTML = [
      [count(finishedThisYear.length), `books finished in ${y}`],
      [duration(sum(inYear)), "spent reading"],
      [count(inYear.filter((d) => d.minutes > 0).length), "days with reading"],
      [count(books.filter((b) => thisYear(b.started)).length), "books started"],
      [best && best[1] > 0 ? monthName(best[0]) : "–", "most-read month"],
    ].map(([v, what]) => `<div class="kpi"><b>${esc(v)}</b><span>${esc(what)}</span></div>`).join("");
  }

  async function highlights(title) {
    try {
      const h = await getJSON(api + "/highlights");
      if (!h.highlights.length) {
        state($("highlights-state"), "empty", "No highlights yet: passages you highlight are kept here.");
        return;
      }
      state($("highlights-state"), "ok", "");
      $("highlights").innerHTML = h.highlights.slice(-12).reverse().map((x) =>
        `<blockquote>${esc(x.text)}<cite>${esc(x.title || title(x.book).title)}</cite></blockquote>`).join("");
    } catch (e) {
      failed($("highlights-state"), e, "your highlights");
    }
  }

  async function recommendations(title) {
    try {
      const r = await getJSON(api + "/recommendations?n=8");
      if (!r.items.length) {
        state($("recs-state"), "empty", "No suggestions yet: they come as dogear learns what readers read.");
        return;
      }
      state($("recs-state"), "ok", "");
      $("recs").innerHTML = r.items.map((it) =>
        `<li>${bookLine({title: it.title || it.book, authors: it.authors || []})}<div class="reason">${esc(it.reason)}</div></li>`).join("");
    } catch (e) {
      failed($("recs-state"), e, "suggestions");
    }
  }

  async function load() {
    let ins, books;
    try {
      [ins, books] = await Promise.all([getJSON(api + "/insights?days=366"), getJSON(api + "/books")]);
    } catch (e) {
      for (const p of panels) {
        if (e.status === 404) state($(p + "-state"), "empty", `Nothing recorded for ${reader} yet: reading in an app connected to dogear shows up here within seconds.`);
        else failed($(p + "-state"), e, "this reader's reading");
      }
      document.body.dataset.loaded = "true";
      return;
    }
    const title = titleOf(books.books);
    readingTime(ins);
    calendar(ins);
    weekly(ins);
    speed(ins, books.books);
    continueReading(ins, title);
    finished(books.books);
    year(ins, books.books);
    await Promise.all([highlights(title), recommendations(title)]);
    document.body.dataset.loaded = "true";
  }
  load();
  setInterval(load, 60_000);
})();
