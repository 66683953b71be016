// Plotly charts drawn from a run's events. Every function takes the runs to draw (the shown run first)
// and gives each run the same colour everywhere. Okabe–Ito: safe for the common colour blindnesses.

// Classes in a decision boundary get their own colours, apart from the runs' (Paul Tol's muted scheme).
const CLASSES = ["#332288", "#44AA99", "#AA4499", "#DDCC77", "#88CCEE", "#882255"];
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const CONFIG = { responsive: true, displaylogo: false };
const BASE = { margin: { l: 50, r: 10, t: 10, b: 40 }, legend: { orientation: "h", y: -0.2 }, font: { size: 11 } };

function draw(id, traces, layout) {
  Plotly.react(id, traces, { ...BASE, ...layout }, CONFIG);
}

// Plotly reads a subset of HTML in names and hover text: a run's name is user input, so escape it.
function label(run) {
  return String(run.name || run.id).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

// Runs are told apart by dash and marker as well as colour (colour alone fails some readers and prints).
export const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];
const MARKERS = ["circle", "square", "diamond", "triangle-up", "x", "star"];
export const runStyle = (i) => ({ color: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length],
  symbol: MARKERS[i % MARKERS.length] });

// A name at the end of each line instead of a legend box: the legend took a third of the card and
// overprinted the axis title.
// Labels that would print on the same spot (two runs ending at the same value) are moved apart.
function endLabels(traces, log = false) {
  const ends = traces.filter((t) => t.x.length && t.y[t.y.length - 1] !== null && t.y[t.y.length - 1] !== undefined);
  const pos = (t) => (log ? Math.log10(Math.max(t.y[t.y.length - 1], 1e-300)) : t.y[t.y.length - 1]);
  const values = ends.map(pos);
  const span = (Math.max(...values) - Math.min(...values)) || 1;
  return ends.map((t, i) => {
    const crowded = values.slice(0, i).filter((v) => Math.abs(v - values[i]) < 0.06 * span).length;
    return { x: t.x[t.x.length - 1], y: t.y[t.y.length - 1], xref: t.xaxis || "x", yref: t.yaxis || "y",
      text: t.endLabel, showarrow: false, xanchor: "left", xshift: 4, yshift: -12 * crowded,
      font: { size: 10, color: t.line.color } };
  });
}

// Validation loss per run (training loss thin beside it; the noisy batch loss on request).
export function lossChart(id, runs, showBatch = false) {
  const traces = [];
  runs.forEach((run, i) => {
    const s = runStyle(i);
    if (showBatch) {
      traces.push({ x: run.steps.map((e) => e.step), y: run.steps.map((e) => e.loss), name: `${label(run)}: batch loss`,
        line: { color: s.color, width: 1 }, opacity: 0.35, type: "scattergl", mode: "lines", hoverinfo: "skip" });
    }
    traces.push({ x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.train_loss), name: `${label(run)}: train`,
      line: { color: s.color, width: 1, dash: s.dash }, opacity: 0.6, mode: "lines", type: "scatter" });
    traces.push({ x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.val_loss), name: `${label(run)}: validation`,
      line: { color: s.color, width: 2.5, dash: s.dash }, marker: { symbol: s.symbol, size: 6 },
      mode: "lines+markers", type: "scatter", endLabel: label(run) });
  });
  draw(id, traces, { showlegend: false, annotations: endLabels(traces.filter((t) => t.endLabel)),
    margin: { l: 55, r: 90, t: 10, b: 40 }, xaxis: { title: { text: "step" } },
    yaxis: { title: { text: "loss (thick: validation)" }, rangemode: "tozero" } });
}

export function accuracyChart(id, runs) {
  const traces = runs.map((run, i) => {
    const s = runStyle(i);
    return { x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.val_acc), name: label(run), endLabel: label(run),
      line: { color: s.color, width: 2.5, dash: s.dash }, marker: { symbol: s.symbol, size: 6 }, mode: "lines+markers",
      type: "scatter" };
  });
  // With batchnorm: the same net with each batch's own statistics instead of the moving averages (thin)
  runs.forEach((run, i) => {
    const withBatch = run.evals.filter((e) => e.val_acc_batch_stats !== undefined && e.val_acc_batch_stats !== null);
    if (!withBatch.length) return;
    const s = runStyle(i);
    traces.push({ x: withBatch.map((e) => e.step), y: withBatch.map((e) => e.val_acc_batch_stats),
      name: `${label(run)}: batch statistics`, line: { color: s.color, width: 1, dash: "dot" }, mode: "lines",
      type: "scatter" });
  });
  draw(id, traces, { showlegend: false, annotations: endLabels(traces.filter((t) => t.endLabel)), margin: { l: 55, r: 90, t: 10, b: 40 },
    xaxis: { title: { text: "step" } }, yaxis: { title: { text: "validation accuracy" }, range: [0, 1.02] } });
}

// One sentence per chart for screen readers (and anyone): what it shows and the numbers that matter.
// (A hidden paragraph the chart points to with aria-describedby: the chart itself holds Plotly's buttons,
// so it cannot be an image with a label.)
export function describe(el, text) {
  const id = `${el.id}-summary`;
  let p = document.getElementById(id);
  if (!p) {
    p = Object.assign(document.createElement("p"), { id, className: "sr-only" });
    el.after(p);
    el.setAttribute("aria-describedby", id);
  }
  if (p.textContent !== text) p.textContent = text;
}

const LOG_STATS = new Set(["act_std", "grad_norm", "preact_std", "act_grad_std"]);

// The depth strip: one row per compared run, one cell per layer, coloured by a statistic at the chosen
// capture. Vanishing (a fading row), exploding, dead and symmetric layers show at a glance.
export function depthStrip(id, runs, pick, stat, onLayer) {
  const rows = runs.map((run) => pick(run)).map((ev) => (ev ? ev.layers.map((l) => l.stats[stat]) : []));
  const names = runs.map((run, i) => (pick(run) ? pick(run).layers.map((l) => l.name) : [])).find((n) => n.length) || [];
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

// A log axis cannot show 0 or a negative value, and Plotly drops such points without a word: a dead
// layer's gradient line would simply end. Here a zero is drawn at the axis floor as an open cross with
// "exactly 0" on hover. The axis also spans at least one decade, so values of 0.99998 to 0.99999 do not
// fill it and magnify noise.
function logAxis(traces, yaxis) {
  const on = traces.filter((t) => (t.yaxis || "y") === yaxis);
  const ys = on.flatMap((t) => t.y).filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  const positive = ys.filter((v) => v > 0);
  let lo = positive.length ? Math.log10(Math.min(...positive)) : -1;
  let hi = positive.length ? Math.log10(Math.max(...positive)) : 1;
  const hasZero = ys.some((v) => v <= 0);
  if (hasZero) lo -= 1;  // room for the floor
  if (hi - lo < 1) { const mid = (hi + lo) / 2; lo = mid - 0.5; hi = mid + 0.5; }
  const floor = 10 ** (lo + 0.15);
  const extra = [];
  for (const t of on) {
    const zeros = t.y.map((v, i) => (v !== null && v !== undefined && v <= 0 ? i : -1)).filter((i) => i >= 0);
    if (!zeros.length) continue;
    t.y = t.y.map((v) => (v !== null && v !== undefined && v <= 0 ? null : v));
    extra.push({ x: zeros.map((i) => t.x[i]), y: zeros.map(() => floor), xaxis: t.xaxis, yaxis: t.yaxis,
      mode: "markers", type: "scatter", name: `${t.name}: exactly 0`, showlegend: false,
      marker: { symbol: "x-open", size: 9, color: t.line ? t.line.color : "#555" },
      hovertemplate: `%{x}: exactly 0<extra>${t.name}</extra>` });
  }
  return { range: [lo - 0.05, hi + 0.05], extra, hasZero };
}

export const STAT_LABELS = {
  act_std: "activation std", grad_norm: "gradient norm", dead_frac: "dead fraction",
  saturated_frac: "saturated fraction", slope_mean: "mean slope f'(z)", duplicate_frac: "duplicate fraction",
};

// One statistic against depth at the chosen capture of each run (the depth strip's statistic): one
// chart per statistic, with the run's name at the end of its line, instead of three cramped panels.
export function layerStatsChart(id, runs, pick, stat) {
  const traces = [];
  runs.forEach((run, i) => {
    const ev = pick(run);
    if (!ev) return;
    const s = runStyle(i);
    traces.push({ x: ev.layers.map((l) => l.name), y: ev.layers.map((l) => l.stats[stat]), name: label(run),
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

function centres(h) {
  const n = h.counts.length, w = (h.hi - h.lo) / n;
  return h.counts.map((_, i) => h.lo + (i + 0.5) * w);
}

// A ridgeline: each layer's histogram at the chosen step, stacked input (bottom) to output (top). By
// default each row spans its own range (shared by the compared runs), printed at its ends: with one
// range for all rows, a layer whose values shrank to 1e-4 would be a line at 0. ``shared`` puts every
// row on one value axis, to compare scales.
export function histogramChart(id, runs, pick, kind, shared = false) {
  const captures = runs.map((run) => pick(run));
  const names = (captures.find(Boolean) || { layers: [] }).layers.map((l) => l.name);
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
      text.push(...xs.map(() => layer.name), null);
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
export function heatmapChart(id, run, layerIndex, kind) {
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
  { xaxis: { title: { text: "step" }, range: [evs[0].step, evs[evs.length - 1].step || 1] },
    yaxis: { title: { text: `${kind} value` } } });
}

// Step 0: the measured pre-activation std per hidden layer, and the engine's theory line: each layer's
// std predicted from the measured layer before by Var(z') = n Var(w) E[f(z)^2] (the activation's own
// second moment, with the bias and dropout; MLPs without batchnorm).
export function signalChart(id, runs) {
  const traces = [];
  runs.forEach((run, r) => {
    const ev = run.layers.find((e) => e.step === 0);
    if (!ev) return;
    const hidden = ev.layers.filter((l) => l.kind !== "output");
    const names = hidden.map((l) => l.name);
    const color = PALETTE[r % PALETTE.length];
    traces.push({ x: names, y: hidden.map((l) => l.stats.preact_std), name: `${label(run)}: measured pre-activation std`,
      mode: "lines+markers", type: "scatter", line: { color } });
    if (ev.theory_preact_std) {
      traces.push({ x: names, y: ev.theory_preact_std, name: `${label(run)}: theory`, mode: "lines", type: "scatter",
        line: { color, dash: "dash" }, theory: true });
    }
  });
  // The range follows the measurements (a dead layer's 0 marked by a cross), plus two decades: a theory
  // line that falls to 1e-38 runs off the bottom instead of flattening every measured line.
  const measured = traces.filter((t) => !t.theory);
  const axis = logAxis(measured, "y");
  traces.push(...axis.extra);
  axis.range[0] = Math.min(axis.range[0], axis.range[1] - 2);
  draw(id, traces, { yaxis: { type: "log", range: axis.range, exponentformat: "power", title: { text: "std at step 0" } },
    xaxis: { automargin: true, tickangle: -45 }, margin: { l: 55, r: 10, t: 10, b: 60 } });
}

// One small panel per compared run (up to four), side by side on the same axes: a lesson's comparison is
// the point, and one panel could show only one run's boundary.
export function boundaryChart(id, runs) {
  const shown = runs.filter((run) => run.boundary).slice(0, 4);
  if (!shown.length) return draw(id, [], { annotations: [{ text: "2-D datasets only", showarrow: false }] });
  const traces = [], annotations = [], layout = {};
  const n = shown.length, gap = 0.04, width = (1 - gap * (n - 1)) / n;
  // A phone has no room for panels side by side: they stack, each as tall as the card.
  const stacked = n > 1 && document.getElementById(id).clientWidth < 520;
  const size = stacked ? (1 - gap * (n - 1)) / n : width;
  shown.forEach((run, p) => {
    const ev = run.boundary, k = ev.probs.length;
    const ax = p === 0 ? "" : String(p + 1);
    let z, colorscale, zmin, zmax;
    if (k === 2) {
      z = ev.probs[1];
      colorscale = [[0, CLASSES[0]], [0.5, "#ffffff"], [1, CLASSES[1]]];
      zmin = 0; zmax = ev.prob_scale;
    } else {
      z = ev.probs[0].map((row, i) => row.map((_, j) => {
        let best = 0;
        for (let c = 1; c < k; c++) if (ev.probs[c][i][j] > ev.probs[best][i][j]) best = c;
        return best;
      }));
      colorscale = Array.from({ length: k }, (_, c) => [[c / k, CLASSES[c % CLASSES.length]],
        [(c + 1) / k, CLASSES[c % CLASSES.length]]]).flat();
      zmin = -0.5; zmax = k - 0.5;
    }
    // At most about 400 training points a panel: the shape of the data shows, and drawing stays quick.
    const all = run.points || { x: [], y: [], label: [] };
    const every = Math.max(1, Math.ceil(all.x.length / 400));
    const keep = (arr) => arr.filter((_, i) => i % every === 0);
    const pts = { x: keep(all.x), y: keep(all.y), label: keep(all.label) };
    traces.push({ z, x: ev.x, y: ev.y, type: "heatmap", colorscale, zmin, zmax, opacity: 0.45, showscale: false,
      hoverinfo: "skip", xaxis: `x${ax}`, yaxis: `y${ax}` });
    traces.push({ x: pts.x, y: pts.y, mode: "markers", type: "scatter", name: "training points", xaxis: `x${ax}`,
      yaxis: `y${ax}`, marker: { color: pts.label.map((c) => CLASSES[c % CLASSES.length]), size: n > 2 ? 3 : 4,
        line: { width: 0.5, color: "#222" } } });
    const left = stacked ? 0 : p * (width + gap);
    const top = stacked ? 1 - p * (size + gap) : 1;
    layout[`xaxis${ax}`] = { domain: stacked ? [0, 1] : [left, left + width], anchor: `y${ax}`,
      showticklabels: stacked || n < 3, title: { text: p === n - 1 || !stacked ? "x1" : "" } };
    layout[`yaxis${ax}`] = { domain: stacked ? [top - size, top] : [0, 1], anchor: `x${ax}`,
      showticklabels: stacked || p === 0, title: { text: stacked || p === 0 ? "x2" : "" } };
    annotations.push({ text: `${label(run)} · step ${ev.step}`, x: stacked ? 0.5 : left + width / 2, y: top,
      xref: "paper", yref: "paper", yanchor: "bottom", showarrow: false,
      font: { size: 10, color: runStyle(runs.indexOf(run)).color } });
  });
  document.getElementById(id).style.height = stacked ? `${280 * n}px` : "";
  draw(id, traces, { ...layout, annotations, showlegend: false, margin: { l: 40, r: 10, t: 24, b: 35 } });
}
