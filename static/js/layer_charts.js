// Charts of the layers at the shown step (the depth strip, a statistic against depth, the histogram
// ridgeline) and of one layer over time (the heatmap).
import { LOG_STATS, STAT_LABELS, centres, draw, endLabels, escape, label, logAxis, plotHeight, stepMarker, styleOf } from "./plot.js";

// Compared nets of different depth line up by input and output: column k is every run's k-th hidden layer,
// and the last column every run's classifier. The labels are the layers' names where all runs have the
// same ones, else their place ("L3", "out"); many layers get the short form either way.
function columns(runs, pick, narrow) {
  const caps = runs.map((run) => pick(run));
  const hidden = Math.max(0, ...caps.map((ev) => (ev ? ev.layers.filter((l) => l.kind !== "output").length : 0)));
  const names = caps.filter(Boolean).map((ev) => ev.layers.map((l) => l.name).join("|"));
  const same = names.length && names.every((n) => n === names[0]);
  const first = caps.find(Boolean);
  const shortForm = narrow || hidden > 12 || !same;
  const ticks = [...Array.from({ length: hidden }, (_, j) => (shortForm ? `L${j + 1}` : escape(first.layers[j].name))),
    shortForm ? "out" : escape(first.layers[first.layers.length - 1].name)];
  // per run: the column of each of its layers
  const place = (ev) => ev.layers.map((l, j) => (l.kind === "output" && j === ev.layers.length - 1 ? hidden : j));
  return { ticks, place, hidden };
}

// The depth strip: one row per compared run, one cell per layer, coloured by a statistic at the chosen
// capture. Vanishing (a fading row), exploding, dead and symmetric layers show at a glance.
export function depthStrip(id, runs, pick, stat, onLayer) {
  const narrow = document.getElementById(id).clientWidth < 520;
  const { ticks, place } = columns(runs, pick, narrow);
  const log = LOG_STATS.has(stat);
  const z = [], text = [], hover = [];
  for (const run of runs) {
    const ev = pick(run);
    const row = ticks.map(() => null), words = ticks.map(() => ""), names = ticks.map(() => "");
    if (ev) {
      place(ev).forEach((col, j) => {
        const v = ev.layers[j].stats[stat];
        row[col] = v === null || v === undefined ? null : log ? Math.log10(Math.max(v, 1e-12)) : v;
        words[col] = v === null || v === undefined ? "n/a" : Number(v).toPrecision(2);
        names[col] = escape(ev.layers[j].name);
      });
    }
    z.push(row);
    text.push(words);
    hover.push(names);
  }
  draw(id, [{ z, x: ticks, y: runs.map((run) => label(run)), text, customdata: hover, type: "heatmap", colorscale: "Viridis",
    zmin: log ? undefined : 0, zmax: log ? undefined : 1, xgap: 2, ygap: 2,
    colorbar: { title: { text: log ? "log10" : "" }, thickness: 10 },
    hovertemplate: "%{y}<br>%{customdata}: %{text}<extra></extra>" }],
  { margin: { l: 120, r: 10, t: 5, b: 30 }, yaxis: { automargin: true },
    xaxis: { type: "category", automargin: true, tickangle: 0 } });
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

// One statistic against depth at the chosen capture of each run (the depth strip's statistic), with the
// run's name at the end of its line. A lesson link or a finding names a layer: its value is written on
// the chart for every run ("relu linear5: 100% dead").
export function layerStatsChart(id, runs, pick, stat, focus = null) {
  const { ticks, place } = columns(runs, pick, document.getElementById(id).clientWidth < 520);
  const traces = [];
  const notes = [];
  runs.forEach((run, i) => {
    const ev = pick(run);
    if (!ev) return;
    const s = styleOf(run, i);
    const cols = place(ev);
    traces.push({ x: cols.map((c) => ticks[c]), y: ev.layers.map((l) => l.stats[stat]), name: label(run),
      customdata: ev.layers.map((l) => escape(l.name)), endLabel: label(run), mode: "lines+markers", type: "scatter",
      line: { color: s.color, dash: s.dash }, marker: { symbol: s.symbol, size: 6 },
      hovertemplate: `%{customdata}: %{y:.3g}<extra>${label(run)}</extra>` });
    const j = focus ? ev.layers.findIndex((l) => l.name === focus.layer) : -1;
    if (j >= 0) notes.push({ x: ticks[cols[j]], y: ev.layers[j].stats[stat], run, s, name: ev.layers[j].name });
  });
  const log = LOG_STATS.has(stat);
  const yaxis = { title: { text: STAT_LABELS[stat] || stat }, automargin: true };
  if (log) {
    const axis = logAxis(traces, "y");
    traces.push(...axis.extra);
    Object.assign(yaxis, { type: "log", range: axis.range, exponentformat: "power",
      title: { text: `${STAT_LABELS[stat]} (log${axis.hasZero ? "; × = exactly 0" : ""})` } });
  } else {
    const top = stat === "slope_mean" ? Math.max(0.05, ...traces.flatMap((t) => t.y).filter(Number.isFinite)) * 1.08 : 1.08;
    yaxis.range = [-0.05 * top, top];
  }
  const say = (v) => (v === null || v === undefined ? "n/a" : stat.endsWith("_frac") ? `${Math.round(100 * v)}%` : Number(v).toPrecision(3));
  const annotations = notes.map((n, k) => ({ x: n.x, y: log && n.y ? Math.log10(n.y) : n.y, text: `${label(n.run)} ${escape(n.name)}: ${say(n.y)}`,
    showarrow: true, arrowhead: 2, ax: -40, ay: -26 - 18 * k, font: { size: 11, color: n.s.color }, bgcolor: "rgba(255,255,255,0.85)" }));
  const margin = { l: 60, r: 100, t: 10, b: 40 };
  const ends = endLabels(traces.filter((t) => t.endLabel), { range: yaxis.range, log, height: plotHeight(id, margin) });
  draw(id, traces, { showlegend: false, annotations: [...ends, ...annotations],
    yaxis, xaxis: { title: { text: "layer (input → output)" }, automargin: true, type: "category",
      categoryorder: "array", categoryarray: ticks, range: [-0.5, ticks.length - 0.5] }, margin });
}

// A ridgeline: each layer's histogram at the chosen step, stacked input (bottom) to output (top). By
// default each row spans its own range (shared by the compared runs), printed at its ends: with one
// range for all rows, a layer whose values shrank to 1e-4 would be a line at 0. ``shared`` puts every
// row on one value axis, to compare scales.
export function histogramChart(id, runs, pick, kind, shared = false, focus = null) {
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
    const s = styleOf(runs[r], r);
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
    const spread = ev.layers.reduce((sum, layer) => sum + (layer.hist[kind].hi - layer.hist[kind].lo), 0);
    traces.push({ x, y, customdata: value, text, name: label(runs[r]), mode: "lines", fill: "toself", type: "scatter",
      line: { color: s.color, width: 1, shape: "hvh", dash: s.dash }, spread, legendrank: r,
      hovertemplate: `%{text}: %{customdata:.3g}<extra>${label(runs[r])}</extra>` });
  });
  // The widest run underneath: a zero-initialised net's spike would otherwise hide under Xavier's spread.
  traces.sort((a, b) => b.spread - a.spread);
  // Each row's range at its ends: one text trace (sixty annotations took longer to draw than the shapes).
  const fmt = (v) => Number(v.toPrecision(2)).toString();
  if (!shared && rowRange.length) {
    traces.push({ x: rowRange.flatMap(() => [-0.01, 1.01]), y: rowRange.flatMap((_, i) => [i + 0.2, i + 0.2]),
      text: rowRange.flatMap(([lo, hi]) => [fmt(lo), fmt(hi)]), mode: "text", type: "scatter", showlegend: false,
      textposition: rowRange.flatMap(() => ["middle left", "middle right"]), hoverinfo: "skip",
      textfont: { size: 11, color: "#444" } });
  }
  // Where 0 is, on every row whose range holds it: a zero-initialised net's spike is read against it.
  const zeros = rowRange.map(([lo, hi], i) => (lo <= 0 && hi >= 0 ? i : -1)).filter((i) => i >= 0);
  if (zeros.length) {
    // Under the histograms: a zero-initialised net's spike at 0 is drawn over it, not hidden by it.
    traces.unshift({ x: zeros.map((i) => pos(i, 0)), y: zeros.map((i) => i + 0.45), mode: "markers", type: "scatter",
      name: "0", showlegend: false, hovertemplate: "0<extra></extra>",
      marker: { symbol: "line-ns", size: 22, line: { width: 1, color: "#777" } } });
  }
  const title = { act: "activation", preact: "pre-activation", grad: "dLoss/dW", weight: "weight" }[kind];
  const ticktext = names.map((n) => (focus && escape(focus.layer) === n ? `<b>${n} ◀</b>` : n));
  draw(id, traces, { yaxis: { tickvals: names.map((_, i) => i), ticktext, zeroline: false, automargin: true },
    xaxis: shared ? { title: { text: title } }
      : { title: { text: `${title}: each row from its lowest to its highest value (| marks 0)` }, showticklabels: false,
        range: [-0.16, 1.16], zeroline: false, showgrid: false },
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
  const name = escape(evs[0].layers[Math.min(layerIndex, evs[0].layers.length - 1)].name);
  draw(id, [{ z: zs, x: evs.map((e) => e.step), y: Array.from({ length: bins }, (_, i) => lo + (i + 0.5) * width),
    type: "heatmap", colorscale: "Viridis", colorbar: { title: { text: "√share" } },
    hovertemplate: "step %{x}<br>value %{y:.3g}<br>√share %{z:.3f}<extra></extra>" }],
  { shapes: stepMarker(step), xaxis: { title: { text: "step" }, range: [evs[0].step, evs[evs.length - 1].step || 1] },
    yaxis: { title: { text: `${kind} value` } }, margin: { l: 50, r: 10, t: 24, b: 40 },
    annotations: [{ text: `${label(run)} · ${name}`, x: 0, y: 1.01, xref: "paper", yref: "paper", xanchor: "left",
      yanchor: "bottom", showarrow: false, font: { size: 11 } }] });
}

