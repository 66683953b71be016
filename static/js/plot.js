// What every chart shares: one draw call, run styles (Okabe–Ito colours, safe for the common colour
// blindnesses, with a dash and a marker each), names at line ends, log axes that show zeros, and the
// text summary a screen reader reads. Every chart takes the runs to draw, the shown run first.

// Classes in a decision boundary get their own colours, apart from the runs' (Paul Tol's muted scheme).
export const CLASSES = ["#332288", "#44AA99", "#AA4499", "#DDCC77", "#88CCEE", "#882255"];
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
// The mode bar (zoom, save...) shows on hover; on a touch screen, where there is no hover, it would sit on
// the evidence, so it is left out there.
const TOUCH = window.matchMedia && window.matchMedia("(hover: none)").matches;
const CONFIG = { responsive: true, displaylogo: false, displayModeBar: TOUCH ? false : "hover" };
const BASE = { margin: { l: 50, r: 10, t: 10, b: 40 }, legend: { orientation: "h", y: -0.2 }, font: { size: 11 } };

export function draw(id, traces, layout) {
  Plotly.react(id, traces, { ...BASE, ...layout }, CONFIG);
}

// Plotly reads a subset of HTML in names and hover text: a run's name is user input, so escape it.
export function label(run) {
  return escape(run.name || run.id);
}

// Plotly reads a subset of HTML in every label: layer names of a watched model are user text too.
export function escape(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

// Runs are told apart by dash and marker as well as colour (colour alone fails some readers and prints).
export const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];
const MARKERS = ["circle", "square", "diamond", "triangle-up", "x", "star"];
export const runStyle = (i) => ({ color: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length],
  symbol: MARKERS[i % MARKERS.length] });
// A run's style wherever it is drawn: by its own colour index (view.js gives each run one that stays),
// else by its place among the runs drawn.
export const styleOf = (run, i) => runStyle(run.colour ?? i);

// The x axis of curves over training: steps, or epochs where the compared runs take different numbers
// of steps an epoch (a run of batches of 8 beside runs of 64 would squeeze those into a corner).
export function timeAxis(runs) {
  const per = runs.map((r) => r.stepsPerEpoch).filter(Boolean);
  const byEpoch = per.length > 1 && Math.max(...per) > 1.2 * Math.min(...per);
  const x = (run, e) => (byEpoch ? e.step / (run.stepsPerEpoch || 1) : e.step);
  const last = Math.max(1, ...runs.flatMap((r) => [...r.evals, ...r.steps.slice(-1)].map((e) => x(r, e))));
  // A little room left of 0, so the axes' two zeros do not print on one spot.
  return { byEpoch, x, axis: { title: { text: byEpoch ? "epoch" : "step" }, range: [-0.02 * last, last * 1.02] } };
}

// A name at the end of each line instead of a legend box: the legend took a third of the card and
// overprinted the axis title. Labels that would print over each other (two runs ending at nearly the same
// value) are pushed apart on the screen, keeping their order: ``range`` is the y axis range (in log10
// for a log axis) and ``height`` the plot's height in pixels.
const LABEL_PX = 14;
export function endLabels(traces, { range = null, log = false, height = 250 } = {}) {
  // at the last point that has a value: a statistic the output layer has none of ends a layer earlier
  const at = (t) => t.y.findLastIndex((v) => v !== null && v !== undefined && Number.isFinite(v));
  const last = (t) => t.y[at(t)];
  const ends = traces.filter((t) => t.x.length && at(t) >= 0);
  const axisValue = (v) => (log ? Math.log10(Math.max(v, 1e-300)) : v);
  const all = ends.flatMap((t) => t.y).filter((v) => v !== null && Number.isFinite(v)).map(axisValue);
  const [lo, hi] = range || [Math.min(...all), Math.max(...all)];
  const pixel = (t) => ((axisValue(last(t)) - lo) / ((hi - lo) || 1)) * height;
  const shift = new Map();
  let floor = Infinity;
  for (const t of [...ends].sort((a, b) => pixel(b) - pixel(a))) {
    const placed = Math.min(pixel(t), floor - LABEL_PX);
    shift.set(t, placed - pixel(t));
    floor = placed;
  }
  return ends.map((t) => ({ x: t.x[at(t)], y: last(t), xref: t.xaxis || "x", yref: t.yaxis || "y",
    text: t.endLabel, showarrow: false, xanchor: "left", xshift: 4, yshift: shift.get(t),
    font: { size: 10, color: t.line.color } }));
}

// The height in pixels of a chart's plot area, for laying out labels. Each chart's height is kept by a
// ResizeObserver: reading clientHeight after the chart before it was drawn made the browser lay out the
// page again in the middle of drawing (page_smoothness.py's profile: a tenth of the main thread's work).
const heights = new Map();
const resized = new ResizeObserver((entries) => {
  for (const e of entries) heights.set(e.target.id, e.contentRect.height);
});
export function plotHeight(id, margin) {
  if (!heights.has(id)) {
    const chart = document.getElementById(id);
    heights.set(id, chart.clientHeight);
    resized.observe(chart);
  }
  return Math.max(60, heights.get(id) - margin.t - margin.b);
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

export const LOG_STATS = new Set(["act_std", "grad_norm", "preact_std", "act_grad_std"]);

// A log axis cannot show 0 or a negative value, and Plotly drops such points without a word: a dead
// layer's gradient line would simply end. Here a zero is drawn at the axis floor as an open cross with
// "exactly 0" on hover. The axis also spans at least one decade, so values of 0.99998 to 0.99999 do not
// fill it and magnify noise.
export function logAxis(traces, yaxis) {
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

// The shown step, on a chart whose x axis is the step: a thin line, so a learner sees where the slider is.
// Moving the shown step moves only this line: a relayout of the shapes, not a redraw of the traces
// (which cost 30-35 ms a chart on every slider move).
export function moveStepMarker(id, shapes) {
  Plotly.relayout(id, { shapes });
}

export function stepMarker(step, axis = null, run = null) {
  if (step === null || step === undefined) return [];
  if (axis && run) step = axis.x(run, { step });
  return [{ type: "line", x0: step, x1: step, y0: 0, y1: 1, yref: "paper", line: { color: "#444", width: 1, dash: "dot" } }];
}

export function centres(h) {
  const n = h.counts.length, w = (h.hi - h.lo) / n;
  return h.counts.map((_, i) => h.lo + (i + 0.5) * w);
}

