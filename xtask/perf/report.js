// The plots of report.html, drawn with uPlot from the JSON the page embeds (id report-data).
const data = JSON.parse(document.getElementById("report-data").textContent);
const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const width = () => Math.min(960, document.body.clientWidth - 40);
function bytes(v) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (Math.round(v * 10) / 10) + " " + units[i];
}
function holder(parent, title) {
  const div = document.createElement("div");
  div.className = "plot";
  const h = document.createElement("h3");
  h.textContent = title;
  div.appendChild(h);
  parent.appendChild(div);
  return div;
}
const plots = document.getElementById("plots");
for (const m of data.methods) {
  const el = holder(plots, m.scenario + ": latency against size (p50 solid, p99 dashed), log-log");
  const series = [{label: "size", value: (u, v) => v == null ? "-" : bytes(v)}];
  const columns = [m.sizes];
  m.methods.forEach((s, i) => {
    const color = palette[i % palette.length];
    series.push({label: s.method + " p50", stroke: color, width: 2, spanGaps: true});
    columns.push(s.p50);
    series.push({label: s.method + " p99", stroke: color, width: 1, dash: [5, 5], spanGaps: true, points: {show: true}});
    columns.push(s.p99);
  });
  const crossover = {
    hooks: {draw: [u => {
      if (m.crossover == null) return;
      const x = u.valToPos(m.crossover, "x", true);
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "#000";
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillStyle = "#000";
      ctx.font = "12px sans-serif";
      ctx.fillText("crossover " + m.crossover_label, x + 4, u.bbox.top + 14);
      ctx.restore();
    }]}
  };
  new uPlot({
    width: width(), height: 360, plugins: [crossover],
    scales: {x: {time: false, distr: 3}, y: {distr: 3}},
    // Ticks at the sizes measured, each labelled (uPlot's log axes label only some by default).
    axes: [{label: "bytes per transfer", splits: () => m.sizes, filter: (u, vs) => vs,
            values: (u, vs) => vs.map(v => v == null ? "" : bytes(v))},
           {label: "us per transfer"}],
    series,
  }, columns, el);
}
for (const c of data.concurrency) {
  const el = holder(plots, c.scenario + ": throughput against transfers in flight");
  new uPlot({
    width: width(), height: 320,
    scales: {x: {time: false, distr: 3}},
    axes: [{label: "in flight"}, {label: "MiB/s"}],
    series: [{label: "in flight"},
             {label: "median MiB/s", stroke: palette[0], width: 2, points: {show: true}},
             {label: "p5 MiB/s", stroke: palette[0], width: 1, dash: [5, 5]},
             {label: "p95 MiB/s", stroke: palette[0], width: 1, dash: [5, 5]}],
  }, [c.in_flight, c.p50, c.p5, c.p95], el);
}
for (const d of data.distributions) {
  const el = holder(plots, d.scenario + ": distribution of each series (CDF, " + d.unit + (d.log ? ", log" : "") + ")");
  const series = [{label: "fraction"}];
  const columns = [d.fractions];
  d.series.forEach((s, i) => {
    series.push({label: s.id, stroke: palette[i % palette.length], width: 1.5});
    columns.push(s.values);
  });
  // The fraction is uPlot's x, drawn upwards on the left; the value is its y, drawn along the
  // bottom: a CDF, value to the right, cumulative fraction up.
  new uPlot({
    width: width(), height: 320,
    scales: {x: {time: false, ori: 1, dir: 1}, y: {distr: d.log ? 3 : 1, ori: 0, dir: 1}},
    axes: [{label: "cumulative fraction of samples", side: 3}, {label: d.unit, side: 2}],
    series,
  }, columns, el);
}
