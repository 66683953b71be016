// Charts of the layers at the shown step (the depth strip, a statistic against depth, the histogram
// ridgeline) and of one layer over time (the heatmap).
import { LOG_STATS, STAT_LABELS, centres, draw, endLabels, escape, label, logAxis, runStyle, stepMarker } from "./plot.js";

// The depth strip: one row per compared run, one cell per layer, coloured by a statistic at the chosen
// capture. Vanishing (a fading row), exploding, dead and symmetric layers show at a glance.
export function depthStrip(id, runs, pick, stat, onLayer) {
  const rows = runs.map((run) => pick(run)).map((ev) => (ev ? ev.layers.map((l) => l.stats[stat]) : []));
  const names = runs.map((run, i) => (pick(run) ? pick(run).layers.map((l) => escape(l.name)) : [])).find((n) => n.length) || [];
  const log = LOG_STATS.has(stat);
  const z = rows.map((r) => names.map((_, j) => {
    const v = r[j];
    if (v === null || v === undefined) return null;
    return log ? Math.log10(Math.max(v, 1e-12)) : v;
  }));
  const text = rows.map((r) => names.map((_, j) => (r[j] === null || r[j] === undefined ? "n/a" : Number(r[j]).toPrecision(2))));
  // On a narrow card "linear1 linear2 ..." runs together: L1, L2, ..., out.
  const narrow = document.getElementById(id).clientWidth < 520;
  const ticktext = narrow ? names.map((nm) => nm.replace(/^linear/, "L").replace(/^conv/, "C").replace("output", "out")) : names;
  draw(id, [{ z, x: names, y: runs.map((run) => label(run)), text, type: "heatmap", colorscale: "Viridis",
    zmin: log ? undefined : 0, zmax: log ? undefined : (stat === "slope_mean" ? 1 : 1), xgap: 2, ygap: 2,
    colorbar: { title: { text: log ? "log10" : "" }, thickness: 10 },
    hovertemplate: "%{y}<br>%{x}: %{text}<extra></extra>" }],
  { margin: { l: 120, r: 10, t: 5, b: 30 }, yaxis: { automargin: true },
    xaxis: { type: "category", automargin: true, tickangle: 0, tickvals: names, ticktext } });
  const el = document.getElementById(id);
  if (onLayer && el.on && !el.dataset.clickBound) {  // Plotly adds .on to a div once it has drawn there
    el.dataset.clickBound = "1";
    el.on("plotly_click", (ev) => {
      const name = ev.points && ev.points[0] ? ev.points[0].x : null;
      const index = el.data && el.data[0] ? el.data[0].x.indexOf(name) : -1;
      if (index >= 0) onLayer(index);
    });
  }
}

// One statistic against depth at the chosen capture of each run (the depth strip's statistic): one
// chart per statistic, with the run's name at the end of its line, instead of three cramped panels.
export function layerStatsChart(id, runs, pick, stat) {
  const traces = [];
  runs.forEach((run, i) => {
    const ev = pick(run);
    if (!ev) return;
    const s = runStyle(i);
    traces.push({ x: ev.layers.map((l) => escape(l.name)), y: ev.layers.map((l) => l.stats[stat]), name: label(run),
      endLabel: label(run), mode: "lines+markers", type: "scatter", line: { color: s.color, dash: s.dash },
      marker: { symbol: s.symbol, size: 6 } });
  });
  const log = LOG_STATS.has(stat);
  const yaxis = { title: { text: STAT_LABELS[stat] || stat } };
  if (log) {
    const axis = logAxis(traces, "y");
    traces.push(...axis.extra);
    Object.assign(yaxis, { type: "log", range: axis.range, exponentformat: "power",
      title: { text: `${STAT_LABELS[stat]} (log${axis.hasZero ? "; × = exactly 0" : ""})` } });
  } else {
    yaxis.range = stat === "slope_mean" ? undefined : [-0.03, 1.03];
    if (stat === "slope_mean") yaxis.rangemode = "tozero";
  }
  draw(id, traces, { showlegend: false, annotations: endLabels(traces.filter((t) => t.endLabel), log), yaxis,
    xaxis: { title: { text: "layer (input → output)" }, automargin: true, type: "category" },
    margin: { l: 60, r: 90, t: 10, b: 40 } });
}

// A ridgeline: each layer's histogram at the chosen step, stacked input (bottom) to output (top). By
// default each row spans its own range (shared by the compared runs), printed at its ends: with one
// range for all rows, a layer whose values shrank to 1e-4 would be a line at 0. ``shared`` puts every
// row on one value axis, to compare scales.
export function histogramChart(id, runs, pick, kind, shared = false) {
  const captures = runs.map((run) => pick(run));
  const names = (captures.find(Boolean) || { layers: [] }).layers.map((l) => escape(l.name));
  const rowRange = names.map((_, i) => {
    const hs = captures.filter(Boolean).map((ev) => ev.layers[i] && ev.layers[i].hist[kind]).filter(Boolean);
    return [Math.min(...hs.map((h) => h.lo)), Math.max(...hs.map((h) => h.hi))];
  });
  const pos = (i, x) => {
    const [lo, hi] = rowRange[i];
    return shared ? x : (hi > lo ? (x - lo) / (hi - lo) : 0.5);
  };
  // One trace per run: every row's shape, closed on its own baseline, one after the other with a gap
  // (null) between them. Ninety traces for three 30-layer runs took most of an update to draw.
  const traces = [];
  captures.forEach((ev, r) => {
    if (!ev) return;
    const s = runStyle(r);
    const x = [], y = [], value = [], text = [];
    ev.layers.forEach((layer, i) => {
      const h = layer.hist[kind];
      const peak = Math.max(1, ...h.counts);
      const xs = [h.lo, ...centres(h), h.hi];
      x.push(...xs.map((v) => pos(i, v)), null);
      y.push(i, ...h.counts.map((c) => i + 0.9 * c / peak), i, null);
      value.push(...xs, null);
      text.push(...xs.map(() => escape(layer.name)), null);
    });
    traces.push({ x, y, customdata: value, text, name: label(runs[r]), mode: "lines", fill: "toself", type: "scatter",
      line: { color: s.color, width: 1, shape: "hvh", dash: s.dash },
      hovertemplate: `%{text}: %{customdata:.3g}<extra>${label(runs[r])}</extra>` });
  });
  // Each row's range at its ends: one text trace (sixty annotations took longer to draw than the shapes).
  const fmt = (v) => Number(v.toPrecision(2)).toString();
  if (!shared && rowRange.length) {
    traces.push({ x: rowRange.flatMap(() => [-0.01, 1.01]), y: rowRange.flatMap((_, i) => [i + 0.2, i + 0.2]),
      text: rowRange.flatMap(([lo, hi]) => [fmt(lo), fmt(hi)]), mode: "text", type: "scatter", showlegend: false,
      textposition: rowRange.flatMap(() => ["middle left", "middle right"]), hoverinfo: "skip",
      textfont: { size: 9, color: "#444" } });
  }
  const title = { act: "activation", preact: "pre-activation", grad: "dLoss/dW", weight: "weight" }[kind];
  draw(id, traces, { yaxis: { tickvals: names.map((_, i) => i), ticktext: names, zeroline: false, automargin: true },
    xaxis: shared ? { title: { text: title } }
      : { title: { text: `${title}: each row from its lowest to its highest value` }, showticklabels: false,
        range: [-0.14, 1.14], zeroline: false, showgrid: false },
    margin: { l: 60, r: 10, t: 10, b: 40 }, showlegend: runs.length > 1,
    legend: { orientation: "h", y: 1.02, yanchor: "bottom" } });
}

// One layer's histogram over time, re-binned onto a common value axis: value bins by step.
export function heatmapChart(id, run, layerIndex, kind, step = null) {
  const evs = run ? run.layers : [];
  if (!evs.length) return draw(id, [], {});
  const hists = evs.map((e) => e.layers[Math.min(layerIndex, e.layers.length - 1)].hist[kind]);
  const lo = Math.min(...hists.map((h) => h.lo)), hi = Math.max(...hists.map((h) => h.hi));
  const bins = 48, width = (hi - lo) / bins || 1;
  const z = Array.from({ length: bins }, () => new Array(hists.length).fill(0));
  hists.forEach((h, col) => {
    const total = h.counts.reduce((a, b) => a + b, 0) || 1;
    centres(h).forEach((c, k) => {
      const row = Math.min(bins - 1, Math.max(0, Math.floor((c - lo) / width)));
      z[row][col] += h.counts[k] / total;
    });
  });
  // Square root of the share: a spike (ReLU's zeros) would otherwise wash out the rest of the scale.
  const zs = z.map((row) => row.map(Math.sqrt));
  draw(id, [{ z: zs, x: evs.map((e) => e.step), y: Array.from({ length: bins }, (_, i) => lo + (i + 0.5) * width),
    type: "heatmap", colorscale: "Viridis", colorbar: { title: { text: "√share" } },
    hovertemplate: "step %{x}<br>value %{y:.3g}<br>√share %{z:.3f}<extra></extra>" }],
  { shapes: stepMarker(step), xaxis: { title: { text: "step" }, range: [evs[0].step, evs[evs.length - 1].step || 1] },
    yaxis: { title: { text: `${kind} value` } } });
}

