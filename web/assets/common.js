// Shared by dogear's pages: the API client, formatting in the viewer's locale and time zone,
// loading, empty and error states, themes, and charts (ECharts, rendered as SVG).
"use strict";
const dogear = (() => {
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  // The token comes in the page's fragment (#token=..., never sent to a server or in a Referer)
  // or was given before in this tab; it is then taken out of the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("dogear-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = () => sessionStorage.getItem("dogear-token") || "";
  const setToken = (t) => sessionStorage.setItem("dogear-token", t);

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function getJSON(path) {
    const headers = token() ? {Authorization: "Bearer " + token()} : {};
    let r;
    try {
      r = await fetch(path, {headers});
    } catch (e) {
      throw new APIError(0, "dogear cannot be reached: " + e.message);
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new APIError(r.status, body.error || r.statusText);
    return body;
  }

  const numbers = new Intl.NumberFormat();
  const count = (n) => n == null ? "–" : numbers.format(Math.round(n));
  function duration(minutes) {
    if (minutes == null) return "–";
    const m = Math.round(minutes);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  }
  const whenFormat = new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "short"});
  const dayFormat = new Intl.DateTimeFormat(undefined, {day: "numeric", month: "short"});
  const dateFormat = new Intl.DateTimeFormat(undefined, {dateStyle: "medium"});
  const when = (iso) => iso ? whenFormat.format(new Date(iso)) : "–";
  const date = (iso) => iso ? dateFormat.format(new Date(iso)) : "–";
  // day formats a YYYY-MM-DD calendar date (already in the reader's zone) without shifting it.
  const day = (ymd) => dayFormat.format(new Date(ymd + "T12:00:00"));

  // state shows a panel's loading, empty or error message in its .state element.
  function state(el, kind, message) {
    el.hidden = !message;
    el.className = "state" + (kind === "error" ? " error" : "");
    el.dataset.state = kind;
    el.textContent = message || "";
  }
  function failed(el, e, what) {
    const hint = e.status === 401 ? " Open this page with #token=YOUR_TOKEN at the end of its address (dogear token)." :
      e.status === 403 ? " The token given does not open this." : "";
    state(el, "error", `Could not load ${what}: ${e.message}.${hint}`);
  }

  // Themes: the system's, unless the viewer chose one on this device.
  const root = document.documentElement;
  const redraws = new Map(); // chart element -> its draw function
  function applyTheme(t) {
    root.dataset.theme = t || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    redraws.forEach((draw) => draw());
  }
  applyTheme(localStorage.getItem("dogear-theme"));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(localStorage.getItem("dogear-theme")));
  function themeButton(button) {
    const label = () => { button.textContent = root.dataset.theme === "dark" ? "Light theme" : "Dark theme"; };
    label();
    button.addEventListener("click", () => {
      const next = root.dataset.theme === "dark" ? "light" : "dark";
      localStorage.setItem("dogear-theme", next);
      applyTheme(next);
      label();
    });
  }

  const css = (name) => getComputedStyle(root).getPropertyValue(name).trim();
  // Chart text is 12 px or larger everywhere; counts never get fractional ticks.
  const text = () => ({color: css("--muted"), fontSize: 12});
  function axis(name, extra) {
    return Object.assign({
      name, nameLocation: "middle", nameGap: 34, nameTextStyle: {color: css("--muted"), fontSize: 13},
      axisLabel: text(), axisLine: {lineStyle: {color: css("--line")}}, splitLine: {lineStyle: {color: css("--line")}},
    }, extra);
  }
  // chart draws option (a function of nothing, so a theme change can redraw it) into el.
  function chart(el, option) {
    const draw = () => {
      const old = echarts.getInstanceByDom(el);
      if (old) old.dispose();
      const c = echarts.init(el, null, {renderer: "svg"});
      c.setOption(Object.assign({
        animation: false, aria: {enabled: true}, textStyle: text(), color: [css("--accent")],
        tooltip: {trigger: "axis", textStyle: {fontSize: 13}},
        grid: {left: 64, right: 16, top: 16, bottom: 52},
      }, option()));
      el.dataset.drawn = "true";
      // A User Timing mark for the first chart of the page (docs/benchmarks.md measures it).
      if (!performance.getEntriesByName("dogear-first-chart").length) performance.mark("dogear-first-chart");
    };
    draw();
    redraws.set(el, draw);
  }
  addEventListener("resize", () => document.querySelectorAll("[data-drawn]").forEach((el) => {
    const c = echarts.getInstanceByDom(el);
    if (c) c.resize();
  }));

  return {$, esc, token, setToken, getJSON, count, duration, when, date, day, state, failed, themeButton, css, axis, chart};
})();
