// The playground: wires the form, the lessons, the run list, the live streams and the charts.
import { api, ApiError, ensureToken, statuses, streamRun } from "./api.js";
import { ConfigForm } from "./form.js";
import * as charts from "./charts.js";

let FINISHED = new Set();  // the finished statuses, from /api/options
const $ = (id) => document.getElementById(id);

const state = {
  form: null,
  presets: [],
  views: new Map(),   // run id -> what its events built up
  shown: null,        // the run whose details are drawn
  compare: [],        // run ids drawn together, shown run first
  lesson: null,       // {preset, group}
  stepIndex: null,    // index into the shown run's captures; null follows the newest
  renderPending: false,
  pendingPrediction: null,
  pendingDeletes: new Map(),  // run id -> the timer that deletes it unless undone  // a prediction made before the lesson started
};

// ---- runs and their events -----------------------------------------------------------------
function view(run) {
  let v = state.views.get(run.id);
  if (!v) {
    v = { id: run.id, name: run.name, status: run.status, config: run.config, progress: run.progress || 0,
      steps: [], evals: [], layers: [], boundary: null, samples: null, points: null, lastSeq: -1, stream: null,
      ended: null };
    state.views.set(run.id, v);
  }
  return v;
}

function watch(run) {
  const v = view(run);
  if (v.stream || v.ended === "ended") return v;
  v.stream = streamRun(run.id, (ev) => onEvent(v, ev), (why) => {
    v.stream = null;
    v.ended = why;
    if (why === "unknown") {
      v.status = "deleted";
      $("runs-message").textContent = `Run “${v.name}” no longer exists: it was deleted or never was.`;
    }
    scheduleRender();
  });
  return v;
}

function onEvent(v, ev) {
  if (ev.seq <= v.lastSeq) {
    if (ev.seq === 0) Object.assign(v, { steps: [], evals: [], layers: [], boundary: null, samples: null, lastSeq: -1 });
    else return;  // a replay after reconnecting: already have it
  }
  v.lastSeq = ev.seq;
  switch (ev.type) {
    case "status":
      v.status = ev.status;
      v.message = ev.message;
      if (ev.status === "running") {
        v.config = ev.config || v.config;
        v.points = ev.points || null;
      }
      if (FINISHED.has(ev.status)) v.progress = ev.status === "completed" ? 1 : v.progress;
      break;
    case "step": v.steps.push(ev); v.progress = ev.progress; break;
    case "eval": v.evals.push(ev); break;
    case "layers": v.layers.push(ev); break;
    case "boundary": v.boundary = ev; break;
    case "samples": v.samples = ev; break;
    default: break;
  }
  if (ev.type === "status" && FINISHED.has(ev.status)) backfillCaptures(v);
  if (v.id === state.shown && ev.type === "status" && FINISHED.has(ev.status)) refreshRuns();
  if (state.lesson && ev.type === "status" && FINISHED.has(ev.status)) checkLesson();
  scheduleRender();
}

// Live, the server sends a viewer at most a couple of captures a second (a classroom's Wi-Fi); the store
// keeps every one. When a run ends, fetch the ones this page skipped, so the slider reaches them all.
async function backfillCaptures(v) {
  const have = new Set(v.layers.map((e) => e.seq));
  let after = -1;
  for (;;) {
    const page = await api(`/api/runs/${encodeURIComponent(v.id)}/events?type=layers&after=${after}&limit=100`)
      .catch(() => null);
    if (!page || !page.data.length) break;
    for (const e of page.data) if (!have.has(e.seq)) { v.layers.push(e); have.add(e.seq); }
    after = page.data[page.data.length - 1].seq;
  }
  v.layers.sort((a, b) => a.seq - b.seq);
  scheduleRender();
}

function show(ids) {
  state.compare = ids;
  state.shown = ids[0] || null;
  state.stepIndex = null;
  scheduleRender();
}

// ---- drawing: live data at most four times a second, the learner's own moves in the next frame ------
function scheduleRender(nextFrame = false) {
  if (nextFrame && !REDRAW_ALL) {
    if (state.frameRequested) return;
    state.frameRequested = true;
    // The learner's own move: draw what it changed in this same frame, not the next.
    requestAnimationFrame(() => { state.frameRequested = false; render(); if (queue.size) drain(Infinity); });
    return;
  }
  if (state.renderPending) return;
  state.renderPending = true;
  setTimeout(() => { state.renderPending = false; render(); }, 250);
}

// A chart is redrawn only when what it shows changed (its key), and only while it is on screen: one that
// scrolled away is drawn when it comes back. Drawing every chart on every update took 170-390 ms.
// ?redraw=all draws every chart on every update, on screen or not, as the page did before: only for
// benchmarks/page_smoothness.py, which measures both ways side by side.
const REDRAW_ALL = new URLSearchParams(location.search).get("redraw") === "all";
const drawnKeys = new Map();
const onScreen = new Set();
const screenWatch = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) onScreen.add(e.target.id); else onScreen.delete(e.target.id);
  }
  scheduleRender(true);
}, { rootMargin: "200px" });

// A chart to redraw waits in a queue, and each animation frame draws from it for at most FRAME_MS: a
// capture that changes four charts is four short tasks, with the page answering input between them,
// instead of one long one. A newer draw of the same chart replaces a waiting one.
const FRAME_MS = 30;
const queue = new Map();  // chart id -> [key, draw]
let draining = false;

// Charts that change slowly and cost much to draw wait at least this long between live redraws.
const MIN_GAP_MS = { "boundary-chart": 2000 };
const lastDrawn = new Map();
const waiting = new Set();  // charts with a render already set for the end of their gap

function redraw(id, key, drawChart) {
  if (REDRAW_ALL) { timed(id, drawChart); return; }
  if (!onScreen.has(id) || drawnKeys.get(id) === key) { queue.delete(id); return; }
  const wait = (lastDrawn.get(id) ?? -Infinity) + (MIN_GAP_MS[id] || 0) - performance.now();
  if (wait > 0) {
    if (!waiting.has(id)) {
      waiting.add(id);
      setTimeout(() => { waiting.delete(id); scheduleRender(); }, wait);
    }
    return;
  }
  queue.set(id, [key, drawChart]);
  if (!draining) { draining = true; requestAnimationFrame(() => drain()); }
}

function drain(budget = FRAME_MS) {
  const t0 = performance.now();
  while (queue.size && performance.now() - t0 < budget) {
    const [id, [key, drawChart]] = queue.entries().next().value;
    queue.delete(id);
    timed(id, drawChart);
    drawnKeys.set(id, key);
  }
  perf.frames.push({ t: t0, ms: performance.now() - t0 });
  if (perf.frames.length > 4000) perf.frames.splice(0, 2000);
  if (queue.size) requestAnimationFrame(() => drain()); else draining = false;
}

function timed(id, drawChart) {
  const t0 = performance.now();
  drawChart();
  lastDrawn.set(id, t0);
  perf.draws.push({ id, ms: performance.now() - t0 });
}

// For benchmarks/page_smoothness.py (and the curious): how long each update, frame of drawing and chart
// draw took, and how many draws wait.
const perf = { renders: [], frames: [], draws: [], get pending() { return queue.size; } };
window.deepscopePerf = perf;

const seqs = (runs, pick) => runs.map((r) => `${r.id}:${pick(r)?.seq ?? "-"}`).join(",");

function captureFor(run) {
  if (!run.layers.length) return null;
  const shown = state.views.get(state.shown);
  if (state.stepIndex === null || !shown || !shown.layers.length) return run.layers[run.layers.length - 1];
  const step = shown.layers[Math.min(state.stepIndex, shown.layers.length - 1)].step;
  let best = run.layers[0];  // the capture of this run nearest at or before the shown step
  for (const e of run.layers) if (e.step <= step) best = e;
  return best;
}

function render() {
  const shown = state.views.get(state.shown);
  const runs = state.compare.map((id) => state.views.get(id)).filter(Boolean);
  $("shown-title").textContent = !shown ? "No run shown" : runs.length > 1
    ? `Comparing ${runs.map((r) => r.name).join(" · ")}` : shown.name;
  $("run-status").textContent = shown ? `${shown.status}${shown.message ? ": " + shown.message : ""}` : "no run yet";
  $("run-progress").value = shown ? shown.progress : 0;
  $("cancel").disabled = !shown || FINISHED.has(shown.status) || shown.status === "deleted";
  $("from-shown").disabled = !shown || !shown.config;
  const slider = $("step-slider");
  const n = shown ? shown.layers.length : 0;
  slider.max = Math.max(0, n - 1);
  if (state.stepIndex === null) slider.value = slider.max;
  const cap = shown ? captureFor(shown) : null;
  $("step-value").textContent = cap ? cap.step : 0;
  const kind = $("hist-kind").value;
  const batch = $("batch-loss").checked;
  const evals = runs.map((r) => `${r.id}:${r.evals.length}:${batch ? r.steps.length : ""}`).join(",");
  const captures = seqs(runs, captureFor);
  const stat = $("strip-stat").value;
  const layer = Number($("heat-layer").value || 0);
  const t0 = performance.now();
  redraw("loss-chart", `${evals}|${batch}`, () => charts.lossChart("loss-chart", runs, batch));
  redraw("compare-chart", evals, () => charts.accuracyChart("compare-chart", runs));
  redraw("depth-strip", `${captures}|${stat}`, () => charts.depthStrip("depth-strip", runs, captureFor, stat, (i) => {
    $("heat-layer").value = String(i);
    scheduleRender(true);
  }));
  renderLessonStatus();
  describeCharts(runs);
  redraw("layer-stats-chart", `${captures}|${stat}`,
    () => charts.layerStatsChart("layer-stats-chart", runs, captureFor, stat));
  $("stats-stat").textContent = charts.STAT_LABELS[stat] || stat;
  const shared = $("hist-shared").checked;
  redraw("histogram-chart", `${captures}|${kind}|${shared}`,
    () => charts.histogramChart("histogram-chart", runs, captureFor, kind, shared));
  redraw("signal-chart", seqs(runs, (r) => r.layers.find((e) => e.step === 0)),
    () => charts.signalChart("signal-chart", runs));
  fillLayerSelect(shown);
  redraw("heatmap-chart", `${shown?.id}:${shown?.layers.length}|${layer}|${kind}`,
    () => charts.heatmapChart("heatmap-chart", shown, layer, kind));
  // The boundary is for 2-D sets and the samples for image sets: a card that cannot apply steps aside.
  $("boundary-fig").hidden = !runs.some((r) => r.boundary) && !$("boundary-fig").classList.contains("target");
  $("samples-fig").hidden = !runs.some((r) => r.samples) && !$("samples-fig").classList.contains("target");
  redraw("boundary-chart", seqs(runs, (r) => r.boundary), () => charts.boundaryChart("boundary-chart", runs));
  renderSamples(runs);
  perf.renders.push({ t: t0, ms: performance.now() - t0 });
  if (perf.renders.length > 2000) perf.renders.splice(0, 1000);
  if (perf.draws.length > 4000) perf.draws.splice(0, 2000);
}

// A sentence per chart for screen readers (and the curious): what it shows and the numbers that matter.
function describeCharts(runs) {
  const fmt = (x) => (x === null || x === undefined ? "n/a" : Number(x).toPrecision(3));
  const last = (arr) => (arr.length ? arr[arr.length - 1] : null);
  const each = (f) => runs.map((run) => `${run.name}: ${f(run)}`).join("; ") || "no run yet";
  charts.describe($("loss-chart"), `Loss against step. ${each((r) => `validation loss ${fmt(last(r.evals)?.val_loss)}`)}.`);
  charts.describe($("compare-chart"), `Validation accuracy against step. ${each((r) => fmt(last(r.evals)?.val_acc))}.`);
  const stat = $("strip-stat").value;
  charts.describe($("depth-strip"), `Depth strip of ${stat}, input to output. ${each((r) => {
    const ev = captureFor(r);
    const v = ev ? ev.layers.map((l) => l.stats[stat]).filter((x) => x !== null) : [];
    return v.length ? `first layer ${fmt(v[0])}, last ${fmt(v[v.length - 1])}` : "no capture yet";
  })}.`);
  charts.describe($("layer-stats-chart"), `${charts.STAT_LABELS[stat] || stat} per layer, input to output. ${each((r) => {
    const ev = captureFor(r);
    if (!ev) return "no capture yet";
    const v = ev.layers.map((l) => l.stats[stat]);
    const zeros = v.filter((x) => x === 0).length;
    return `at step ${ev.step}, ${fmt(v[0])} at the first layer, ${fmt(v[v.length - 1])} at the output`
      + (zeros ? `, exactly 0 at ${zeros} layer${zeros > 1 ? "s" : ""}` : "");
  })}.`);
  const kind = $("hist-kind").value;
  charts.describe($("histogram-chart"), `Histograms of ${kind} per layer. ${each((r) => {
    const ev = captureFor(r);
    if (!ev) return "no capture yet";
    const [a, b] = [ev.layers[0].hist[kind], ev.layers[ev.layers.length - 1].hist[kind]];
    return `at step ${ev.step}, the first layer spans ${fmt(a.lo)} to ${fmt(a.hi)}, the output layer ${fmt(b.lo)} to ${fmt(b.hi)}`;
  })}.`);
  const shownRun = runs[0];
  const layerIndex = Number($("heat-layer").value || 0);
  charts.describe($("heatmap-chart"), shownRun && shownRun.layers.length
    ? `${kind} of layer ${shownRun.layers[0].layers[Math.min(layerIndex, shownRun.layers[0].layers.length - 1)].name} of `
      + `${shownRun.name} over ${shownRun.layers.length} captures, steps ${shownRun.layers[0].step} to `
      + `${last(shownRun.layers).step}.` : "One layer over time: no capture yet.");
  charts.describe($("boundary-chart"), `Decision boundary of each compared run. ${each((r) => (r.boundary
    ? `at step ${r.boundary.step}, validation accuracy ${fmt(last(r.evals)?.val_acc)}` : "no boundary (2-D sets only)"))}.`);
  charts.describe($("signal-chart"), `Pre-activation std at step 0 by layer. ${each((r) => {
    const ev = r.layers.find((e) => e.step === 0);
    const v = ev ? ev.layers.filter((l) => l.kind !== "output").map((l) => l.stats.preact_std) : [];
    return v.length ? `first hidden layer ${fmt(v[0])}, last ${fmt(v[v.length - 1])}` : "no capture yet";
  })}.`);
}

function fillLayerSelect(run) {
  const select = $("heat-layer");
  const names = run && run.layers.length ? run.layers[0].layers.map((l) => l.name) : [];
  if (select.options.length === names.length && [...select.options].every((o, i) => o.textContent === names[i])) return;
  const keep = select.value;
  select.replaceChildren(...names.map((name, i) => Object.assign(document.createElement("option"), { value: i, textContent: name })));
  if (keep && Number(keep) < names.length) select.value = keep;
}

// A strip of augmented samples per compared run, each headed by its run's name: the augmentation lesson
// compares a run that augments with one that does not.
function renderSamples(runs) {
  const box = $("samples");
  const withSamples = runs.filter((run) => run.samples);
  const key = withSamples.map((run) => `${run.id}:${run.samples.seq}`).join(",");
  if (!withSamples.length) { box.textContent = "Image datasets only."; box.dataset.key = ""; return; }
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...withSamples.map((run) => {
    const ev = run.samples;
    const group = Object.assign(document.createElement("section"), { className: "sample-run" });
    const head = Object.assign(document.createElement("h3"), { textContent: `${run.name} (step ${ev.step})` });
    const strip = Object.assign(document.createElement("div"), { className: "sample-strip" });
    strip.replaceChildren(...ev.images.map((src, i) => {
      const fig = document.createElement("figure");
      const img = Object.assign(document.createElement("img"), { src, alt: `${run.name}, training sample: ${ev.labels[i]}` });
      const cap = document.createElement("figcaption");
      cap.textContent = ev.labels[i];
      fig.append(img, cap);
      return fig;
    }));
    group.append(head, strip);
    return group;
  }));
}

// ---- the run list ---------------------------------------------------------------------------
async function refreshRuns() {
  let list;
  try {
    list = await api("/api/runs?limit=50");
  } catch (err) {
    $("runs-message").textContent = "The server is not answering; retrying…";
    return;
  }
  if ($("runs-message").textContent.startsWith("The server")) $("runs-message").textContent = "";
  const rows = [];
  let lastGroup;
  for (const run of list.data.filter((r) => !state.pendingDeletes.has(r.id))) {
    // A lesson's runs share a group: a heading row names the lesson, so three "relu" runs of three
    // lessons are told apart.
    if (run.group !== lastGroup) {
      lastGroup = run.group;
      rows.push(groupRow(run.group));
    }
    rows.push(runRow(run));
  }
  $("run-rows").replaceChildren(...rows);
}

function groupRow(group) {
  const preset = group && state.presets.find((p) => group.startsWith(`${p.id}-`));
  const tr = Object.assign(document.createElement("tr"), { className: "group-row" });
  const th = Object.assign(document.createElement("th"), { scope: "rowgroup", colSpan: 5,
    textContent: !group ? "Single runs" : preset ? `Lesson: ${preset.title} (${group.slice(preset.id.length + 1)})`
      : `Group ${group}` });
  tr.append(th);
  return tr;
}

function runRow(run) {
  const v = state.views.get(run.id);
  if (v && !v.stream) { v.status = run.status; v.progress = run.progress; }
  const tr = document.createElement("tr");
  if (run.id === state.shown) tr.className = "shown";
  const pick = Object.assign(document.createElement("input"), { type: "checkbox", checked: state.compare.includes(run.id) });
  pick.setAttribute("aria-label", `compare ${run.name}`);
  pick.addEventListener("change", () => {
    const ids = state.compare.filter((id) => id !== run.id);
    if (pick.checked) { watch(run); ids.push(run.id); }
    show(ids.length ? ids : []);
    refreshRuns();
  });
  const name = document.createElement("button");
  name.type = "button";
  name.className = "secondary";
  name.textContent = run.name;  // text, never markup: a run name is user input
  name.title = "show this run";
  name.addEventListener("click", () => { watch(run); show([run.id, ...state.compare.filter((id) => id !== run.id)]); refreshRuns(); });
  const status = document.createElement("span");
  status.className = `status-${run.status}`;
  status.textContent = run.status;
  if (run.error) status.title = run.error;
  const bar = Object.assign(document.createElement("progress"), { max: 1, value: run.progress });
  bar.setAttribute("aria-label", `progress of ${run.name}`);
  const actions = document.createElement("td");
  if (!FINISHED.has(run.status)) {
    actions.append(button("Cancel", async () => { await api(`/api/runs/${run.id}/cancel`, { method: "POST" }).catch(() => {}); refreshRuns(); }));
  } else {
    actions.append(button("Delete", () => deleteWithUndo(run)));
    const report = Object.assign(document.createElement("a"), { href: `/api/runs/${run.id}/report`, textContent: "Report", target: "_blank" });
    actions.append(" ", report);
  }
  // The run as a standalone PyTorch script: the config is known from the start, so every run has one.
  const script = Object.assign(document.createElement("a"), { href: `/api/runs/${run.id}/script`, textContent: "PyTorch script", download: `deepscope-${run.id}.py` });
  script.setAttribute("aria-label", `PyTorch script of ${run.name}`);
  actions.append(" ", script);
  const cells = [pick, name, status, bar].map((el, i) => {
    const td = document.createElement("td");
    if (i === 1) td.className = "name";
    td.append(el);
    return td;
  });
  tr.append(...cells, actions);
  return tr;
}

// Delete waits UNDO_MS behind an Undo button before it reaches the server: a slip costs nothing.
const UNDO_MS = 8000;

function deleteWithUndo(run) {
  const timer = setTimeout(async () => {
    state.pendingDeletes.delete(run.id);
    await api(`/api/runs/${run.id}`, { method: "DELETE" }).catch(() => {});
    state.views.delete(run.id);
    if ($("undo-bar").dataset.run === run.id) $("undo-bar").hidden = true;
    refreshRuns();
  }, UNDO_MS);
  state.pendingDeletes.set(run.id, timer);
  show(state.compare.filter((id) => id !== run.id));
  const bar = $("undo-bar");
  bar.dataset.run = run.id;
  $("undo-text").textContent = `Deleted “${run.name}”.`;
  bar.hidden = false;
  $("undo-btn").focus();
  refreshRuns();
}

function undoDelete() {
  const id = $("undo-bar").dataset.run;
  clearTimeout(state.pendingDeletes.get(id));
  state.pendingDeletes.delete(id);
  $("undo-bar").hidden = true;
  refreshRuns();
}

function button(text, onClick) {
  const b = Object.assign(document.createElement("button"), { type: "button", textContent: text, className: "secondary" });
  b.addEventListener("click", onClick);
  return b;
}

// ---- lessons ---------------------------------------------------------------------------------
function showLesson(preset, prediction = null) {
  $("lesson").hidden = !preset;
  if (!preset) return;
  $("lesson-explanation").textContent = preset.explanation;
  $("lesson-look").replaceChildren(...linkPhrases(preset.look_at, preset.links || []));
  showPrediction(preset, prediction);
  $("prediction-result").textContent = "";
  $("lesson-outcome").replaceChildren(...preset.expect.map((e, i) => badgeItem("wait", "pending", e.text,
    evidenceText(preset, i))));
}

// The lesson's key phrases point at their chart: hovering or focusing one outlines the chart, a click
// (or Enter) brings it into view. Built from text nodes: the lesson text is never parsed as markup.
function linkPhrases(text, links) {
  const parts = [];
  let rest = text;
  for (;;) {
    const hits = links.map((l) => ({ ...l, at: rest.indexOf(l.phrase) })).filter((l) => l.at >= 0);
    if (!hits.length) break;
    const first = hits.reduce((a, b) => (b.at < a.at ? b : a));
    parts.push(document.createTextNode(rest.slice(0, first.at)));
    const span = Object.assign(document.createElement("span"), { className: "chart-link", tabIndex: 0,
      textContent: first.phrase });
    span.dataset.chart = first.chart;
    span.setAttribute("role", "button");
    span.setAttribute("aria-label", `${first.phrase}: show the chart`);
    const fig = () => document.querySelector(`[data-testid=${first.chart}]`)?.closest("figure");
    const point = (on) => fig()?.classList.toggle("pointed", on);
    span.addEventListener("mouseenter", () => point(true));
    span.addEventListener("mouseleave", () => point(false));
    span.addEventListener("focus", () => point(true));
    span.addEventListener("blur", () => point(false));
    const go = () => fig()?.scrollIntoView({ block: "center", behavior: "smooth" });
    span.addEventListener("click", go);
    span.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    parts.push(span);
    rest = rest.slice(first.at + first.phrase.length);
  }
  parts.push(document.createTextNode(rest));
  return parts;
}

// Before the run, the learner commits to an answer; after it, the page sets it beside what happened.
function showPrediction(preset, prediction) {
  const p = preset.predict;
  $("lesson-predict").hidden = !p;
  if (!p) return;
  $("predict-q").textContent = p.question;
  $("predict-choices").replaceChildren(...p.choices.map((choice, i) => {
    const label = document.createElement("label");
    const radio = Object.assign(document.createElement("input"), { type: "radio", name: "prediction", value: String(i),
      checked: prediction === i });
    radio.addEventListener("change", () => {
      if (state.lesson && state.lesson.preset.id === preset.id) {
        state.lesson.prediction = i;
        writeLessonHash();
        checkLesson();
      } else {
        state.pendingPrediction = i;
      }
    });
    label.append(radio, " ", choice);
    return label;
  }));
}

function predictionResult(preset, prediction, outcome) {
  const p = preset.predict;
  if (!p) return "";
  const held = outcome.checks.every((c) => c.held === true);
  const evidence = preset.evidence && preset.evidence.checks && preset.evidence.checks[0];
  const sweep = evidence ? ` The same happened in ${evidence.held} of ${evidence.of} seeded trials of the sweep.` : "";
  const answer = p.choices[p.answer];
  if (prediction === null || prediction === undefined) {
    return `The answer: ${answer}.${held ? "" : " (This time not every check held: see below.)"}${sweep}`;
  }
  const right = prediction === p.answer;
  return `You predicted: ${p.choices[prediction]}. ${right ? "Right" : "Not quite"}: ${answer}.`
    + `${held ? "" : " (This time not every check held: see below.)"}${sweep}`;
}

// "held in 20/20 trials (seeds 0-9 at 1 and 2 torch threads), margin 0.41 (min 0.33)": the sweep's record
function evidenceText(preset, i) {
  const ev = preset.evidence;
  const c = ev && ev.checks[i];
  if (!c) return "";
  const unit = c.margin_unit === "log10" ? " decades" : "";
  const m = (x) => (x === null || x === undefined ? "n/a" : `${Number(x.toPrecision(2))}${unit}`);
  return `held in ${c.held}/${c.of} trials (seeds ${ev.seeds[0]}-${ev.seeds[ev.seeds.length - 1]} at `
    + `${ev.threads.join(" and ")} torch threads), margin ${m(c.margin_median)} (min ${m(c.margin_min)})`;
}

function badgeItem(kind, word, text, evidence = "", result = "") {
  const li = document.createElement("li");
  const badge = Object.assign(document.createElement("span"), { className: `badge ${kind}`, textContent: word });
  li.append(badge, " ", text);
  if (result) li.append(Object.assign(document.createElement("div"), { className: "result", textContent: result }));
  if (evidence) li.append(Object.assign(document.createElement("div"), { className: "evidence", textContent: evidence }));
  return li;
}

async function startLesson() {
  const preset = state.presets.find((p) => p.id === $("preset-select").value);
  if (!preset) return;
  $("lesson-start").disabled = true;  // one click, one lesson
  try {
    const runs = await api(`/api/presets/${preset.id}/runs`, { method: "POST" });
    openLesson(preset, runs[0].group, runs, state.pendingPrediction ?? null);
    refreshRuns();
  } catch (err) {
    $("lesson-start").disabled = false;
    $("form-error").textContent = err instanceof ApiError ? err.message : String(err);
  }
}

// A lesson opens on its evidence: its runs compared, the slider at the lesson's step, its chart in view
// and outlined. The lesson and its group live in the URL, so a reload or a shared link comes back here.
function openLesson(preset, group, runs, prediction = null) {
  state.lesson = { preset, group, ids: runs.map((r) => r.id), prediction };
  state.pendingPrediction = null;
  runs.forEach(watch);
  show(state.lesson.ids);
  showLesson(preset, prediction);
  const target = preset.target || {};
  state.stepIndex = target.step === 0 ? 0 : null;
  if (target.strip) $("strip-stat").value = target.strip;
  if (target.hist) $("hist-kind").value = target.hist;
  document.querySelectorAll("figure.target").forEach((f) => f.classList.remove("target"));
  const chart = target.chart && document.querySelector(`[data-testid=${target.chart}]`);
  if (chart) {
    const fig = chart.closest("figure");
    fig.classList.add("target");
    fig.scrollIntoView({ block: "center" });
  }
  writeLessonHash();
  scheduleRender();
}

function writeLessonHash() {
  const { preset, group, prediction } = state.lesson;
  history.replaceState(null, "", `#lesson=${encodeURIComponent(preset.id)}&group=${encodeURIComponent(group)}`
    + (prediction === null || prediction === undefined ? "" : `&predict=${prediction}`));
}

// One status for the whole lesson, and a clear moment when it is done.
function renderLessonStatus() {
  const lesson = state.lesson;
  if (!lesson) { $("lesson-status").textContent = ""; return; }
  const views = lesson.ids.map((id) => state.views.get(id)).filter(Boolean);
  const count = (s) => views.filter((v) => v.status === s).length;
  const active = count("running") + count("queued");
  $("lesson-start").disabled = active > 0;
  $("lesson-status").textContent = active
    ? `${count("running")} of ${views.length} runs running, ${count("queued")} queued`
    : `Done: ${views.length === 2 ? "both runs have" : `all ${views.length} runs have`} ended.`;
}

async function checkLesson() {
  const { preset, group } = state.lesson;
  const outcome = await api(`/api/presets/${preset.id}/outcome?group=${encodeURIComponent(group)}`).catch(() => null);
  if (!outcome || !outcome.finished) return;
  $("prediction-result").textContent = predictionResult(preset, state.lesson.prediction, outcome);
  const fmt = (x) => (x === null || x === undefined ? "n/a" : Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(2) : x.toFixed(3));
  const unit = (c) => (c.margin_unit === "log10" ? " decades" : "");
  // Both values and the margin: "0.925 against 0.775 (needed above 0.825): margin 0.100"
  const result = (c) => (c.left === null || c.right === null ? "" : `This run: ${fmt(c.left)} against ${fmt(c.right)}`
    + (c.bound !== null && c.bound !== c.right ? ` (threshold ${fmt(c.bound)})` : "")
    + (c.margin !== null ? `; margin ${fmt(c.margin)}${unit(c)}` : ""));
  $("lesson-outcome").replaceChildren(...outcome.checks.map((c, i) => badgeItem(
    c.held === true ? "held" : c.held === false ? "not" : "wait",
    c.held === true ? "held" : c.held === false ? "did not hold" : "no data",
    c.text, evidenceText(preset, i), result(c))));
}

// ---- the form --------------------------------------------------------------------------------
function configFromHash() {
  const m = location.hash.match(/config=([^&]*)/);
  if (!m) return null;
  try { return JSON.parse(decodeURIComponent(m[1])); } catch { return null; }
}

function writeHash() {
  const cfg = { ...state.form.config() };
  const name = $("f-name").value.trim();
  if (name) cfg.name = name;
  history.replaceState(null, "", "#config=" + encodeURIComponent(JSON.stringify(cfg)));
}

async function submit(event) {
  event.preventDefault();
  state.form.clearErrors();
  $("form-error").textContent = "";
  const body = state.form.config();
  const name = $("f-name").value.trim();
  if (name) body.name = name;
  try {
    const run = await api("/api/runs", { method: "POST", body });
    state.lesson = null;
    watch(run);
    const others = [...document.querySelectorAll("#run-rows input[type=checkbox]:checked")].length
      ? state.compare.filter((id) => id !== run.id) : [];
    show([run.id, ...others]);
    refreshRuns();
  } catch (err) {
    if (err instanceof ApiError && err.status === 422) {
      const rest = state.form.showErrors(err.detail);
      // The message goes next to its field: open the panels that hold it.
      for (const slot of document.querySelectorAll("#config-form [data-error-for]")) {
        if (!slot.textContent) continue;
        for (let d = slot.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
      }
      $("form-error").textContent = rest.join(" ");
    } else {
      $("form-error").textContent = err instanceof ApiError ? err.message : String(err);
    }
  }
}

async function main() {
  ensureToken();
  const [options, presets, known] = await Promise.all([api("/api/options"), api("/api/presets"), statuses()]);
  FINISHED = known.finished;
  state.presets = presets;
  state.form = new ConfigForm($("form-sections"), options, writeHash);
  const fromHash = configFromHash();
  if (fromHash) {
    state.form.setConfig(fromHash);
    if (fromHash.name) $("f-name").value = fromHash.name;
    $("tweak").open = true;
  }
  // "Tweak this lesson": the form starts from the shown run's settings, then the learner changes one.
  $("from-shown").addEventListener("click", () => {
    const shown = state.views.get(state.shown);
    if (!shown || !shown.config) return;
    state.form.setConfig(shown.config);
    $("f-name").value = "";
    writeHash();
  });
  $("f-name").addEventListener("input", writeHash);
  for (const p of presets) $("preset-select").append(Object.assign(document.createElement("option"), { value: p.id, textContent: p.title }));
  $("preset-select").addEventListener("change", () => {
    state.pendingPrediction = null;
    showLesson(presets.find((p) => p.id === $("preset-select").value));
  });
  $("lesson-start").addEventListener("click", startLesson);
  $("undo-btn").addEventListener("click", undoDelete);
  $("config-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", async () => {
    if (state.shown) await api(`/api/runs/${state.shown}/cancel`, { method: "POST" }).catch(() => {});
    refreshRuns();
  });
  $("step-slider").addEventListener("input", (e) => { state.stepIndex = Number(e.target.value); scheduleRender(true); });
  $("live-btn").addEventListener("click", () => { state.stepIndex = null; scheduleRender(true); });
  for (const id of ["hist-kind", "hist-shared", "batch-loss", "strip-stat", "heat-layer"]) {
    $(id).addEventListener("change", () => scheduleRender(true));
  }
  document.querySelectorAll(".chart").forEach((el) => screenWatch.observe(el));
  const lessonLink = location.hash.match(/lesson=([^&]*)&group=([^&]*)/);
  if (lessonLink) {
    const preset = presets.find((p) => p.id === decodeURIComponent(lessonLink[1]));
    const group = decodeURIComponent(lessonLink[2]);
    const list = preset ? await api(`/api/runs?group=${encodeURIComponent(group)}`).catch(() => null) : null;
    if (preset && list && list.count) {
      $("preset-select").value = preset.id;
      const predicted = location.hash.match(/predict=(\d+)/);
      openLesson(preset, group, list.data.reverse(), predicted ? Number(predicted[1]) : null);
      checkLesson();
    }
  }
  render();
  await refreshRuns();
  setInterval(refreshRuns, 2000);
}

main().catch((err) => { $("form-error").textContent = `The page could not start: ${err.message}`; });
