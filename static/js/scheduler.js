// When charts are drawn. Live data is drawn at most four times a second; the learner's own moves (the
// slider, a select, play) in the next frame. A chart is redrawn only when what it shows changed (its
// key) and only while it is on screen: one that scrolled away is drawn when it comes back. Drawing
// every chart on every update took 170-390 ms.
import { flags } from "./state.js";

let renderer = () => {};
let renderPending = false;
let frameRequested = false;
// Whether the render running now answers the learner's own move (the slider, a select, play): its charts
// are drawn at once. A render for arriving data keeps each chart's gap (MIN_GAP_MS) while runs stream,
// wherever the slider stands: a lesson opened on step 0 still receives its runs' curves.
let answering = false;

export function setRenderer(fn) { renderer = fn; }

export function scheduleRender(nextFrame = false) {
  if (nextFrame && !flags.redrawAll) {
    if (frameRequested) return;
    frameRequested = true;
    // The learner's own move: the first chart it changed is drawn in this same frame, the rest one frame
    // at a time after it. Drawing them all in one frame was one task of 230 ms on a 30-layer lesson
    // (benchmarks/page_smoothness.py), in which the slider itself did not move.
    requestAnimationFrame(() => {
      frameRequested = false;
      answering = true;
      try { render(); } finally { answering = false; }
      if (queue.size) drain(0);
    });
    return;
  }
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => { renderPending = false; render(); }, 250);
}

function render() {
  const t0 = performance.now();
  renderer();
  record(perf.renders, { t: t0, ms: performance.now() - t0 });
}

const drawnKeys = new Map();
const onScreen = new Set();
const screenWatch = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) onScreen.add(e.target.id); else onScreen.delete(e.target.id);
  }
  scheduleRender(true);
}, { rootMargin: "200px" });

export function observe(element) { screenWatch.observe(element); }

// A chart to redraw waits in a queue, and each animation frame draws from it while the frame's work, with
// the next chart's last drawing time, stays within FRAME_MS: a capture that changes four charts is four
// short tasks, with the page answering input between them, instead of one long one (a task over 50 ms
// is a long task: two 35 ms charts in one frame made one). A newer draw of the same chart replaces a
// waiting one.
const FRAME_MS = 45;
const lastCost = new Map();  // chart id -> ms its last drawing took
const queue = new Map();  // chart id -> [key, draw]
let drainScheduled = false;

function scheduleDrain() {
  if (drainScheduled) return;
  drainScheduled = true;
  requestAnimationFrame(() => { drainScheduled = false; drain(); });
}

// While runs stream, a chart waits at least this long between redraws for arriving data: the boundary
// changes slowly and costs much to draw; the curves and the heatmap gain a point (or a step line) on nearly
// every update, and the per-layer charts change with every capture. Redrawing them four times a second
// kept the main thread in long tasks 40% of the time. The learner's own moves are drawn at once.
const MIN_GAP_MS = { "boundary-chart": 2000, "loss-chart": 1000, "compare-chart": 1000, "heatmap-chart": 1000,
  "histogram-chart": 1000, "layer-stats-chart": 1000, "depth-strip": 1000 };
const lastDrawn = new Map();
const waiting = new Set();  // charts with a render already set for the end of their gap

export function redraw(id, key, drawChart, streaming = true) {
  if (flags.redrawAll) { timed(id, drawChart); return; }
  if (!onScreen.has(id) || drawnKeys.get(id) === key) { queue.delete(id); return; }
  const wait = streaming && !answering ? (lastDrawn.get(id) ?? -Infinity) + (MIN_GAP_MS[id] || 0) - performance.now() : 0;
  if (wait > 0) {
    if (!waiting.has(id)) {
      waiting.add(id);
      setTimeout(() => { waiting.delete(id); scheduleRender(); }, wait);
    }
    return;
  }
  queue.set(id, [key, drawChart]);
  scheduleDrain();
}

function drain(budget = FRAME_MS) {
  const t0 = performance.now();
  let drawn = 0;
  for (;;) {
    const next = queue.entries().next();
    if (next.done) break;
    const [id, [key, drawChart]] = next.value;
    if (drawn++ > 0 && performance.now() - t0 + (lastCost.get(id) ?? 0) > budget) break;
    queue.delete(id);
    timed(id, drawChart);
    drawnKeys.set(id, key);
  }
  record(perf.frames, { t: t0, ms: performance.now() - t0 });
  if (queue.size) scheduleDrain();
}

function timed(id, drawChart) {
  const t0 = performance.now();
  drawChart();
  lastDrawn.set(id, t0);
  lastCost.set(id, performance.now() - t0);
  record(perf.draws, { id, ms: performance.now() - t0 });
}

// How long each update, frame of drawing and chart draw took, and how many draws wait: kept only with
// ?perf (benchmarks/page_smoothness.py reads window.deepscopePerf).
const perf = { renders: [], frames: [], draws: [], get pending() { return queue.size; } };
if (flags.perf) window.deepscopePerf = perf;

function record(list, entry) {
  if (!flags.perf) return;
  list.push(entry);
  if (list.length > 4000) list.splice(0, 2000);
}
