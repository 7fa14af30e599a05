// The platform dashboard: readers over time, trending books, a book's completion and
// abandonment, and the recommendation models. Refreshes itself while open.
"use strict";
(() => {
  const {$, esc, getJSON, count, when, day, state, failed, themeButton, axis, chart} = dogear;
  themeButton($("theme"));
  $("token").value = dogear.token();
  $("token").addEventListener("change", () => { dogear.setToken($("token").value); refresh(); });

  async function platform() {
    try {
      const s = await getJSON("/v1/stats");
      $("asof").textContent = "as of " + when(s.as_of);
      $("kpis").innerHTML = [
        [count(s.daily_active_readers), "readers today"],
        [count(s.monthly_active_readers), "readers in 30 days"],
        [count(s.totals.events), "events"],
        [count(s.totals.readers), "readers ever"],
        [count(s.processor_lag_events), "events waiting to be processed"],
      ].map(([v, what]) => `<div class="kpi"><b>${esc(v)}</b><span>${esc(what)}</span></div>`).join("");
      const series = s.daily_active_series;
      if (!s.totals.events) {
        state($("platform-state"), "empty", "No events yet: send some to POST /v1/events, import a Kindle or KOReader export, or run dogear loadgen.");
        $("dau").hidden = true;
        return;
      }
      state($("platform-state"), "ok", "");
      $("dau").hidden = false;
      $("dau").setAttribute("aria-label", `Bar chart of readers active each day over the last ${series.length} days`);
      chart($("dau"), () => ({
        xAxis: axis("day (UTC)", {type: "category", data: series.map((d) => day(d.date))}),
        yAxis: axis("readers", {type: "value", minInterval: 1}),
        series: [{type: "bar", name: "active readers", data: series.map((d) => d.readers)}],
      }));
    } catch (e) {
      failed($("platform-state"), e, "platform activity");
      $("asof").textContent = "";
    }
  }

  async function trending() {
    try {
      const t = await getJSON("/v1/trending?n=10");
      if (!t.books.length) {
        state($("trending-state"), "empty", "No book has been started recently.");
        $("trending").hidden = true;
        return;
      }
      state($("trending-state"), "ok", "");
      $("trending").hidden = false;
      $("trending").tBodies[0].innerHTML = t.books.map((b) =>
        `<tr><td><a href="#book=${encodeURIComponent(b.book)}" data-book="${esc(b.book)}">${esc(b.title || b.book)}</a>${b.authors ? `<div class="by">${esc(b.authors.join(", "))}</div>` : ""}</td><td class="num">${count(b.starts)}</td></tr>`).join("");
    } catch (e) {
      failed($("trending-state"), e, "trending books");
    }
  }

  async function book(id) {
    state($("book-state"), "loading", "Loading…");
    try {
      const b = await getJSON(`/v1/books/${encodeURIComponent(id)}/stats`);
      state($("book-state"), "ok", "");
      $("book").innerHTML = `<p class="title">${esc(b.title || b.book)}</p><div class="kpis">${[
        [count(b.readers_started), "readers started"],
        [b.completion_rate == null ? "–" : Math.round(b.completion_rate * 100) + " %", "finished it"],
        [b.average_rating == null ? "–" : b.average_rating.toFixed(1) + " / 5", `from ${count(b.ratings)} ratings`],
        [count(b.readers_abandoned), "abandoned it"],
      ].map(([v, what]) => `<div class="kpi"><b>${esc(v)}</b><span>${esc(what)}</span></div>`).join("")}</div>`;
      const curve = b.abandonment_curve;
      if (!b.readers_abandoned) {
        $("book").insertAdjacentHTML("beforeend", `<p class="state" data-state="empty">No reader has abandoned this book: where readers stop would show here.</p>`);
        $("abandonment").hidden = true;
        return;
      }
      $("abandonment").hidden = false;
      $("abandonment").setAttribute("aria-label", `Bar chart of where the ${b.readers_abandoned} readers who abandoned the book stopped`);
      chart($("abandonment"), () => ({
        xAxis: axis("where they stopped (% of the book)", {type: "category", data: curve.map((c) => `${Math.round(c.from * 100)}–${Math.round(c.to * 100)}`)}),
        yAxis: axis("readers", {type: "value", minInterval: 1}),
        series: [{type: "bar", name: "readers who stopped here", data: curve.map((c) => c.readers)}],
      }));
    } catch (e) {
      $("book").innerHTML = "";
      $("abandonment").hidden = true;
      if (e.status === 404) state($("book-state"), "empty", `No reader has opened ${id} yet.`);
      else failed($("book-state"), e, "the book");
    }
  }

  async function models() {
    try {
      const m = await getJSON("/v1/models");
      if (!m.models.length) {
        state($("models-state"), "empty", "No model trained yet: the trainer runs every --train-interval, or POST /v1/models/train. Until then readers get trending and popular books.");
        $("models").hidden = true;
        return;
      }
      state($("models-state"), "ok", "");
      $("models").hidden = false;
      const recall = (x) => x ? x.recall_at_20.toFixed(3) : "none serving";
      $("models").tBodies[0].innerHTML = m.models.slice().reverse().map((v) =>
        `<tr><td>v${v.version}</td><td>${esc(when(v.created))}</td><td class="num">${recall(v.metrics.candidate)}</td><td class="num">${recall(v.metrics.serving)}</td><td class="num">${count(v.metrics.held_out_interactions)}</td><td>${v.serving ? "<b>serving</b>" : esc(v.metrics.reason)}</td></tr>`).join("");
    } catch (e) {
      failed($("models-state"), e, "the models");
    }
  }

  async function refresh() {
    await Promise.all([platform(), trending(), models()]);
    document.body.dataset.loaded = "true";
  }

  $("book-form").addEventListener("submit", (e) => { e.preventDefault(); location.hash = "book=" + encodeURIComponent($("book-id").value); });
  $("reader-form").addEventListener("submit", (e) => { e.preventDefault(); location.href = "/readers/" + encodeURIComponent($("reader-id").value); });
  const fromHash = () => {
    const id = new URLSearchParams(location.hash.slice(1)).get("book");
    if (id) { $("book-id").value = id; book(id); }
  };
  addEventListener("hashchange", fromHash);
  refresh().then(fromHash);
  setInterval(() => { if ($("live").checked && !document.hidden) refresh(); }, 10_000);
})();
