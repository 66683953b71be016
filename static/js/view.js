// Drawing the shown runs: every chart at the shown step, with a text summary of each for screen readers.
import { boundaryChart } from "./boundary.js";
import { accuracyChart, lossChart, signalChart } from "./curves.js";
import { depthStrip, heatmapChart, histogramChart, layerStatsChart } from "./layer_charts.js";
import { STAT_LABELS, describe, moveStepMarker, stepMarker, timeAxis } from "./plot.js";
import { $, el, fmt } from "./dom.js";
import { renderFindings } from "./findings.js";
import { renderLessonStatus } from "./lessons.js";
import { redraw, scheduleRender } from "./scheduler.js";
import { state } from "./state.js";
import { boundaryFor, captureFor, samplesFor, shownStep, syncSlider } from "./timeline.js";

// A run keeps its colour wherever it is shown: a lesson's runs by their place in the lesson, any other
// run by the order this page first drew it in.
const colours = new Map();
function colourOf(run) {
  const lesson = state.lesson && state.lesson.ids.includes(run.id) ? state.lesson.preset : null;
  const label = lesson ? lesson.runs.findIndex((r) => r.label === run.name) : -1;
  if (label >= 0) return label;
  if (!colours.has(run.id)) colours.set(run.id, colours.size);
  return colours.get(run.id);
}

// A run that ran to its end is not a run that learned: the doctor's worst finding says which. A run
// that reached its storage cap says its captures are sparser than asked (engine/storage.py).
function statusLine(run) {
  if (!run) return "no run yet";
  if (run.status === "queued") return queuedLine(run);
  const capped = run.storageNote ? " (its captures thinned to fit the server's storage cap)" : "";
  const line = `${run.status}${run.message ? ": " + run.message : ""}${capped}`;
  const worst = (run.findings || []).find((f) => f.severity === "problem" || f.severity === "warning");
  const name = worst && worst.title.split(":")[0];
  return worst ? `${line}; but DeepScope sees: ${name.charAt(0).toLowerCase()}${name.slice(1)}` : line;
}

function queuedLine(run) {
  const q = run.queue;
  const where = q ? `, ${q.place === 1 ? "next" : `number ${q.place} of ${q.of}`} in line` : "";
  const when = q && q.starts_in_s != null ? `, starting in about ${Math.max(1, Math.round(q.starts_in_s))} s` : "";
  const look = run.steps.length ? "; its step 0 is shown meanwhile" : "";
  return `queued${where}${when}${look}`;
}

// A chart over training time whose data did not change since it was drawn only moves its step line.
const drawnData = new Map();
function withMarker(id, dataKey, step, drawChart, shapes, streaming) {
  redraw(id, `${dataKey}|${step}`, () => {
    if (drawnData.get(id) === dataKey) moveStepMarker(id, shapes());
    else { drawChart(); drawnData.set(id, dataKey); }
  }, streaming);
}

const seqs = (runs, pick) => runs.map((r) => `${r.id}:${pick(r)?.seq ?? "-"}`).join(",");

export function render() {
  const shown = state.views.get(state.shown);
  const runs = state.compare.map((id) => state.views.get(id)).filter(Boolean);
  runs.forEach((run) => { run.colour = colourOf(run); });
  const palette = runs.map((r) => r.colour).join(",");
  $("shown-title").textContent = !shown ? "No run shown" : runs.length > 1
    ? `Comparing ${runs.map((r) => r.name).join(" · ")}` : shown.name;
  $("run-status").textContent = statusLine(shown);
  $("run-progress").value = shown ? shown.progress : 0;
  $("cancel").disabled = !shown || state.finished.has(shown.status) || shown.status === "deleted";
  $("from-shown").disabled = !shown || !shown.config || Boolean(shown.config.watched);
  syncSlider(shown);
  const step = shownStep();
  const kind = $("hist-kind").value;
  const batch = $("batch-loss").checked;
  const stat = $("strip-stat").value;
  const layer = Number($("heat-layer").value || 0);
  const evals = runs.map((r) => `${r.id}:${r.evals.length}:${batch ? r.steps.length : ""}`).join(",");
  const captures = seqs(runs, captureFor);
  // arriving data redraws a chart at most once per its gap while runs stream (scheduler.js)
  const streaming = runs.some((r) => !state.finished.has(r.status));
  const marker = () => stepMarker(step, timeAxis(runs), runs[0]);
  withMarker("loss-chart", `${evals}|${batch}|${palette}`, step, () => lossChart("loss-chart", runs, batch, step), marker, streaming);
  withMarker("compare-chart", `${evals}|${palette}`, step, () => accuracyChart("compare-chart", runs, step), marker, streaming);
  redraw("depth-strip", `${captures}|${stat}|${palette}`, () => depthStrip("depth-strip", runs, captureFor, stat, (i) => {
    $("heat-layer").value = String(i);
    scheduleRender(true);
  }), streaming);
  renderLessonStatus();
  renderFindings(runs);
  describeCharts(runs, step);
  const focus = state.focus ? `${state.focus.chart}:${state.focus.layer}` : "";
  redraw("layer-stats-chart", `${captures}|${stat}|${focus}|${palette}`,
    () => layerStatsChart("layer-stats-chart", runs, captureFor, stat, state.focus), streaming);
  $("stats-stat").textContent = STAT_LABELS[stat] || stat;
  const shared = $("hist-shared").checked;
  redraw("histogram-chart", `${captures}|${kind}|${shared}|${focus}|${palette}`,
    () => histogramChart("histogram-chart", runs, captureFor, kind, shared, state.focus), streaming);
  redraw("signal-chart", seqs(runs, (r) => r.layers.find((e) => e.step === 0)),
    () => signalChart("signal-chart", runs), streaming);
  fillLayerSelect(shown);
  withMarker("heatmap-chart", `${shown?.id}:${shown?.layers.length}|${layer}|${kind}`, step,
    () => heatmapChart("heatmap-chart", shown, layer, kind, step), () => stepMarker(step), streaming);
  // The boundary is for 2-D sets and the samples for image sets: a card that cannot apply steps aside.
  $("boundary-fig").hidden = !runs.some((r) => r.boundaries.length) && !$("boundary-fig").classList.contains("target");
  $("samples-fig").hidden = !runs.some((r) => r.samples.length) && !$("samples-fig").classList.contains("target");
  redraw("boundary-chart", seqs(runs, boundaryFor), () => boundaryChart("boundary-chart", runs, boundaryFor), streaming);
  renderSamples(runs);
}

// A sentence per chart for screen readers (and the curious): what it shows and the numbers that matter.
function describeCharts(runs, step) {
  const last = (arr) => (arr.length ? arr[arr.length - 1] : null);
  const each = (f) => runs.map((run) => `${run.name}: ${f(run)}`).join("; ") || "no run yet";
  const at = step === null ? "" : ` The shown step is ${step}.`;
  describe($("loss-chart"), `Loss against step.${at} ${each((r) => `validation loss ${fmt(last(r.evals)?.val_loss)}`)}.`);
  describe($("compare-chart"), `Validation accuracy against step.${at} ${each((r) => fmt(last(r.evals)?.val_acc))}.`);
  const stat = $("strip-stat").value;
  describe($("depth-strip"), `Depth strip of ${stat}, input to output. ${each((r) => {
    const ev = captureFor(r);
    const v = ev ? ev.layers.map((l) => l.stats[stat]).filter((x) => x !== null) : [];
    return v.length ? `first layer ${fmt(v[0])}, last ${fmt(v[v.length - 1])}` : "no capture yet";
  })}.`);
  describe($("layer-stats-chart"), `${STAT_LABELS[stat] || stat} per layer, input to output. ${each((r) => {
    const ev = captureFor(r);
    if (!ev) return "no capture yet";
    const v = ev.layers.map((l) => l.stats[stat]);
    const zeros = v.filter((x) => x === 0).length;
    return `at step ${ev.step}, ${fmt(v[0])} at the first layer, ${fmt(v[v.length - 1])} at the output`
      + (zeros ? `, exactly 0 at ${zeros} layer${zeros > 1 ? "s" : ""}` : "");
  })}.`);
  const kind = $("hist-kind").value;
  describe($("histogram-chart"), `Histograms of ${kind} per layer. ${each((r) => {
    const ev = captureFor(r);
    if (!ev) return "no capture yet";
    const [a, b] = [ev.layers[0].hist[kind], ev.layers[ev.layers.length - 1].hist[kind]];
    return `at step ${ev.step}, the first layer spans ${fmt(a.lo)} to ${fmt(a.hi)}, the output layer ${fmt(b.lo)} to ${fmt(b.hi)}`;
  })}.`);
  const shownRun = runs[0];
  const layerIndex = Number($("heat-layer").value || 0);
  describe($("heatmap-chart"), shownRun && shownRun.layers.length
    ? `${kind} of layer ${shownRun.layers[0].layers[Math.min(layerIndex, shownRun.layers[0].layers.length - 1)].name} of `
      + `${shownRun.name} over ${shownRun.layers.length} captures, steps ${shownRun.layers[0].step} to `
      + `${last(shownRun.layers).step}.` : "One layer over time: no capture yet.");
  describe($("boundary-chart"), `Decision boundary of each compared run. ${each((r) => {
    const b = boundaryFor(r);
    if (!b) return "no boundary (2-D sets only)";
    const evalThen = r.evals.filter((e) => e.step <= b.step).pop() || r.evals[0];
    return `at step ${b.step}, validation accuracy ${fmt(evalThen?.val_acc)}`;
  })}.`);
  describe($("signal-chart"), `Pre-activation std at step 0 by layer. ${each((r) => {
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
  select.replaceChildren(...names.map((name, i) => el("option", { value: i, textContent: name })));
  if (keep && Number(keep) < names.length) select.value = keep;
}

// A strip of augmented samples per compared run, each headed by its run's name, at the shown step: the
// augmentation lesson compares a run that augments with one that does not.
function renderSamples(runs) {
  const box = $("samples");
  const withSamples = runs.map((run) => [run, samplesFor(run)]).filter(([, ev]) => ev);
  const key = withSamples.map(([run, ev]) => `${run.id}:${ev.seq}`).join(",");
  if (!withSamples.length) { box.textContent = "Image datasets only."; box.dataset.key = ""; return; }
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...withSamples.map(([run, ev]) => el("section", { className: "sample-run" },
    el("h3", { textContent: `${run.name} (step ${ev.step})` }),
    el("div", { className: "sample-strip" }, ...ev.images.map((src, i) => el("figure", {},
      el("img", { src, alt: `${run.name}, training sample: ${ev.labels[i]}` }),
      el("figcaption", { textContent: ev.labels[i] })))))));
}
