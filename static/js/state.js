// The page's state, in one place, and the one codec for the URL hash (playground's state.ts does both):
// the lesson, its group and the learner's prediction, or the config of their own run, survive a reload
// and travel in a shared link.

export const state = {
  form: null,             // the ConfigForm
  presets: [],            // the lessons, from /api/presets
  finished: new Set(),    // the finished statuses, from /api/options
  views: new Map(),       // run id -> what its events built up (runs.js)
  shown: null,            // the run whose details are drawn
  compare: [],            // run ids drawn together, shown run first
  lesson: null,           // {preset, group, ids, prediction}
  pendingPrediction: null, // a prediction made before the lesson started
  stepIndex: null,        // index into the shown run's captures; null follows the newest
  focus: null,            // {chart, layer}: the layer a lesson link or a finding annotates
  playing: null,          // the timer that steps the slider while the run plays
  pendingDeletes: new Map(), // run id -> the timer that deletes it unless undone
};

// Flags for benchmarks/page_smoothness.py, read here and nowhere else: ?perf keeps timing counters
// (window.deepscopePerf), ?redraw=all draws every chart on every update, as the page did before.
const query = new URLSearchParams(location.search);
export const flags = { perf: query.has("perf") || query.get("redraw") === "all", redrawAll: query.get("redraw") === "all" };

// The hash: #lesson=ID&group=G&predict=N, or #config=JSON. One reader, one writer.
export function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  let config = null;
  if (params.has("config")) {
    try { config = JSON.parse(params.get("config")); } catch { config = null; }
  }
  const predict = params.get("predict");
  return { lesson: params.get("lesson"), group: params.get("group"), run: params.get("run"),
    predict: predict !== null && /^\d+$/.test(predict) ? Number(predict) : null, config };
}

// #run=ID shows one run (deepscope.watch prints such a link).
export function writeHash({ lesson = null, group = null, predict = null, config = null, run = null }) {
  const params = new URLSearchParams();
  if (lesson) { params.set("lesson", lesson); params.set("group", group); }
  if (lesson && predict !== null && predict !== undefined) params.set("predict", String(predict));
  if (!lesson && run) params.set("run", run);
  if (!lesson && !run && config) params.set("config", JSON.stringify(config));
  history.replaceState(null, "", params.toString() ? `#${params}` : location.pathname + location.search);
}
