// The perfopt dashboard: history from /api/v1/history on a pool or range change, then one live
// point a second from the server-sent events of /api/v1/events. No build step, no dependency
// but uPlot. `window.perfoptDashboard` exposes the state (point counts, errors) for tests.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const MiB = 1024 * 1024;
  const METHODS = ["zero_copy", "grpc"];
  const METHOD_NAMES = { zero_copy: "zero-copy", grpc: "gRPC" };

  const state = {
    errors: [],
    events: 0,
    historyLoads: 0,
    lastHistory: null,
    pool: "",
    range: 300,
    last: null,
    now: 0,
    charts: {},
    source: null,
    pools: new Set(),
  };
  window.perfoptDashboard = state;
  window.addEventListener("error", (e) => state.errors.push(String(e.message || e)));
  window.addEventListener("unhandledrejection", (e) => state.errors.push("rejection: " + e.reason));
  document.addEventListener("securitypolicyviolation", (e) =>
    state.errors.push("content security policy blocked " + e.blockedURI + " (" + e.violatedDirective + ")"));

  // Numbers as an operator reads them.
  const fixed = (v, d) => (v == null || !isFinite(v) ? "–" : Number(v).toFixed(d));
  const count = (v) => (v == null ? "–" : Number(v).toLocaleString("en-US"));
  const bytes = (v) => {
    if (v == null) return "–";
    if (v >= MiB) return fixed(v / MiB, 1) + " MiB";
    if (v >= 1024) return fixed(v / 1024, 1) + " KiB";
    return v + " B";
  };

  // Charts: each is a uPlot over columns [t, series...]; `live` says how a snapshot adds a row.
  const palette = { zero_copy: ["#0b6e4f", "#2ea043", "#7ee2a8"], grpc: ["#0550ae", "#218bff", "#80ccff"] };
  const latencySeries = [];
  for (const m of METHODS) {
    ["p50", "p95", "p99"].forEach((p, i) =>
      latencySeries.push({ label: METHOD_NAMES[m] + " " + p, stroke: palette[m][i], width: i === 0 ? 2 : 1, spanGaps: false }));
  }
  const specs = {
    latency: { el: "c-latency", unit: "ms", series: latencySeries,
      live: (s) => METHODS.flatMap((m) => ["p50_ms", "p95_ms", "p99_ms"].map((k) => s.window.methods[m][k])) },
    rate: { el: "c-rate", unit: "/s", series: [
        { label: "all", stroke: "#1d232b", width: 2 },
        { label: "zero-copy", stroke: palette.zero_copy[1] },
        { label: "gRPC", stroke: palette.grpc[1] },
        { label: "failed", stroke: "#cf222e" }],
      live: (s) => [s.window.transfers_per_s,
        s.window.methods.zero_copy.transfers / s.window.secs,
        s.window.methods.grpc.transfers / s.window.secs,
        s.window.failures / s.window.secs] },
    bytes: { el: "c-bytes", unit: "MiB/s", series: [
        { label: "zero-copy", stroke: palette.zero_copy[1], width: 2 },
        { label: "gRPC", stroke: palette.grpc[1], width: 2 }],
      live: (s) => METHODS.map((m) => s.window.methods[m].bytes_per_s / MiB) },
    shm: { el: "c-shm", unit: "MiB", series: [
        { label: "held", stroke: "#8250df", width: 2, fill: "rgba(130,80,223,0.1)" },
        { label: "budget", stroke: "#5b6673", dash: [4, 4] }],
      live: (s) => [s.shared_memory.held_bytes / MiB, s.shared_memory.budget_bytes / MiB] },
  };

  function emptyData(spec) {
    return [[]].concat(spec.series.map(() => []));
  }

  function makeChart(name) {
    const spec = specs[name];
    const el = $(spec.el);
    const opts = {
      width: Math.max(300, el.clientWidth || 600),
      height: 180,
      legend: { live: false },
      // Every chart spans the range chosen, ending at the latest snapshot.
      scales: { x: { time: true, range: (u, min, max) => {
        const end = state.now || max;
        return [end - state.range, end];
      } } },
      axes: [{}, { label: spec.unit, size: 60 }],
      series: [{}].concat(spec.series.map((s) => Object.assign({
        value: (u, v) => (v == null ? "–" : fixed(v, v < 10 ? 3 : 1) + " " + spec.unit) }, s))),
    };
    state.charts[name] = new uPlot(opts, emptyData(spec), el);
  }

  // The points each chart holds, for tests and the footer.
  state.points = () => Object.fromEntries(Object.entries(state.charts).map(([k, u]) => [k, u.data[0].length]));

  function setData(name, data) {
    state.charts[name].setData(data);
  }

  function append(name, t, row) {
    const u = state.charts[name];
    const data = u.data.map((col) => col.slice());
    data[0].push(t);
    row.forEach((v, i) => data[i + 1].push(v == null || !isFinite(v) ? null : v));
    const from = t - state.range;
    let drop = 0;
    while (drop < data[0].length && data[0][drop] < from) drop++;
    u.setData(drop ? data.map((col) => col.slice(drop)) : data);
  }

  // History: the store's buckets for the range, then live points are appended.
  async function loadHistory() {
    const q = new URLSearchParams({ range_secs: String(state.range) });
    if (state.pool) q.set("pool", state.pool);
    const r = await fetch("/api/v1/history?" + q);
    const h = await r.json();
    if (!r.ok) throw new Error("history: " + (h.error || r.status));
    const t = h.t;
    const latency = [t];
    for (const m of METHODS) for (const k of ["p50_ms", "p95_ms", "p99_ms"]) latency.push(h[m][k]);
    setData("latency", latency);
    setData("rate", [t, h.transfers_per_s, h.zero_copy.transfers_per_s, h.grpc.transfers_per_s, h.failed_per_s]);
    setData("bytes", emptyData(specs.bytes));
    setData("shm", emptyData(specs.shm));
    state.now = Date.now() / 1000;
    state.historyLoads++;
    state.lastHistory = { range: state.range, pool: state.pool, points: t.length };
  }

  function onSnapshot(s) {
    state.events++;
    state.last = s;
    state.now = s.t;
    for (const name of Object.keys(specs)) append(name, s.t, specs[name].live(s));
    show(s);
  }

  function connect() {
    if (state.source) state.source.close();
    const q = state.pool ? "?pool=" + encodeURIComponent(state.pool) : "";
    const source = new EventSource("/api/v1/events" + q);
    state.source = source;
    source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
    source.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
    source.onerror = () => {
      // The browser retries a dropped stream by itself, but not a refused one (e.g. 503: too
      // many dashboards open).
      const closed = source.readyState === EventSource.CLOSED;
      $("conn").textContent = closed ? "disconnected: reload the page to retry" : "reconnecting…";
      $("conn").className = "conn";
    };
  }

  async function reload() {
    state.pool = $("pool").value;
    state.range = Number($("range").value);
    if (state.source) state.source.close();
    try {
      await loadHistory();
    } catch (e) {
      state.errors.push(String(e));
    }
    connect();
  }

  // The numbers, tables and banner of one snapshot.
  function show(s) {
    const w = s.window;
    $("n-total").textContent = count(s.totals.transfers);
    $("n-rate").textContent = fixed(w.transfers_per_s, 1);
    $("n-bytes").textContent = fixed(w.bytes_per_s / MiB, 1);
    $("n-load").textContent = s.load.in_flight + " / " + s.load.queued;
    $("n-shm").textContent = fixed(s.shared_memory.held_bytes / MiB, 1) + " / " + fixed(s.shared_memory.budget_bytes / MiB, 0);
    $("n-threshold").textContent = Object.entries(s.thresholds).map(([p, b]) => p + " " + bytes(b)).join(", ") || "–";
    $("n-fail").textContent = count(s.totals.failures) + " / " + count(s.totals.fallbacks);
    const m = s.model;
    $("n-model").textContent = !m ? "off" : m.active ? "v" + m.version + " active" : m.version ? "v" + m.version + " inactive" : "rules";
    $("n-model-detail").textContent = !m ? "learning is off" :
      (m.accuracy == null ? "no validation yet" : "accuracy " + fixed(m.accuracy * 100, 1) + " %") +
      ", " + m.paired + " paired, " + m.drifts + " drifts";

    for (const p of s.pools) {
      if (state.pools.has(p)) continue;
      state.pools.add(p);
      const o = document.createElement("option");
      o.value = p;
      o.textContent = p;
      $("pool").appendChild(o);
    }

    const rows = Object.entries(w.decisions).map(([reason, by]) => [reason, by.zero_copy || 0, by.grpc || 0]);
    fill("t-decisions", rows.length ? rows : [["none in the last second", "", ""]], (tr, r) => {
      cell(tr, r[0]); cell(tr, r[1], "num"); cell(tr, r[2], "num");
    });
    fill("t-checks", s.checks, (tr, c) => {
      tr.className = c.state;
      cell(tr, c.name); cell(tr, c.state, "state-" + c.state); cell(tr, c.detail); cell(tr, c.remedy || "");
    });
    const list = $("l-events");
    list.replaceChildren();
    for (const e of s.learning_events.length ? s.learning_events : [{ text: "none yet" }]) {
      const li = document.createElement("li");
      li.textContent = e.at ? new Date(e.at * 1000).toLocaleTimeString() + " " + e.text : e.text;
      if (e.alert) li.className = "alert";
      list.appendChild(li);
    }

    const banner = $("banner");
    banner.className = "banner " + s.state;
    const failing = s.checks.filter((c) => c.state !== "pass");
    const title = { ready: "Ready: every check passes", degraded: "Degraded: transfers go on, something needs attention",
      not_ready: "Not ready: transfers cannot be served" }[s.state] || s.state;
    banner.replaceChildren(document.createTextNode(title));
    if (failing.length) {
      const ul = document.createElement("ul");
      for (const c of failing) {
        const li = document.createElement("li");
        li.textContent = c.name + ": " + c.detail + (c.remedy ? " — " + c.remedy : "");
        ul.appendChild(li);
      }
      banner.appendChild(ul);
    }
  }

  function fill(id, rows, each) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr");
      each(tr, r);
      body.appendChild(tr);
    }
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function start() {
    for (const name of Object.keys(specs)) makeChart(name);
    window.addEventListener("resize", () => {
      for (const [name, u] of Object.entries(state.charts)) {
        u.setSize({ width: Math.max(300, $(specs[name].el).clientWidth), height: 180 });
      }
    });
    $("pool").addEventListener("change", reload);
    $("range").addEventListener("change", reload);
    reload();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
