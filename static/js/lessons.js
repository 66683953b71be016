// Lessons: one idea each. The learner predicts, runs the lesson's runs as one group, and sees their
// prediction set beside what happened, with a badge per expected outcome and the sweep's record.
import { api, ApiError } from "./api.js";
import { $, el, fmt } from "./dom.js";
import { refreshRuns, show, watch } from "./runs.js";
import { scheduleRender } from "./scheduler.js";
import { state, writeHash } from "./state.js";
import { openView, pointAt } from "./evidence.js";

export function showLesson(preset, prediction = null) {
  $("lesson").hidden = !preset;
  if (!preset) return;
  $("lesson-setup").textContent = setupText(preset);
  $("lesson-explanation").textContent = preset.explanation;
  $("lesson-look").replaceChildren(...linkPhrases(preset.look_at, preset.links || []));
  showPrediction(preset, prediction);
  $("prediction-result").textContent = "";
  $("lesson-outcome").replaceChildren();
  holdBackTheAnswer(true);
}

// The question and the setup come first; the explanation, what to look at and the checks (which state
// the outcome) wait until the runs have ended, or until the learner opens them.
function holdBackTheAnswer(hold) {
  const answer = $("lesson-answer");
  answer.open = !hold;
  $("lesson-answer-summary").textContent = hold ? "Show me the explanation now" : "The explanation";
}

// "relu: spiral, 6 hidden layers of 64, ReLU, He init, bias -1, Adam (lr 0.005), 15 epochs": each run's
// setup, without its outcome.
function setupText(preset) {
  const describe = ({ data, model, train, augment }) => {
    const parts = [`${data.dataset}`, `${model.depth} ${model.arch === "cnn" ? "conv blocks" : "hidden layers"} of ${model.width}`,
      model.activation === "leaky_relu" ? `leaky ReLU (a = ${model.leaky_slope})` : model.activation,
      `${model.init}${model.init === "small_normal" ? ` (N(0,1)·${model.init_std})` : ""} init`];
    if (model.bias_init) parts.push(`bias ${model.bias_init}`);
    if (model.batchnorm) parts.push(`batchnorm (α = ${model.bn_momentum})`);
    if (model.dropout) parts.push(`${model.dropout_mode} dropout ${model.dropout}`);
    if (augment && Object.values(augment).some(Boolean)) parts.push("augmented");
    parts.push(`${train.optimizer} (lr ${train.lr}), batches of ${train.batch_size}, ${train.epochs} epochs`);
    return parts.join(", ");
  };
  return `The runs: ${preset.runs.map((r) => `${r.label}: ${describe(r.config)}`).join("; ")}.`;
}

// The lesson's key phrases open their evidence: the chart, its statistic or histogram, the layer
// annotated and the step (or the steps played). Hovering or focusing a phrase outlines its chart. Built
// from text nodes: the lesson text is never parsed as markup.
function linkPhrases(text, links) {
  const parts = [];
  let rest = text;
  for (;;) {
    const hits = links.map((l) => ({ ...l, at: rest.indexOf(l.phrase) })).filter((l) => l.at >= 0);
    if (!hits.length) break;
    const first = hits.reduce((a, b) => (b.at < a.at ? b : a));
    parts.push(document.createTextNode(rest.slice(0, first.at)));
    const go = () => openView(first);
    parts.push(el("span", { className: "chart-link", tabIndex: 0, textContent: first.phrase, dataset: { chart: first.chart },
      attrs: { role: "button", "aria-label": `${first.phrase}: show the chart` },
      on: { mouseenter: () => pointAt(first.chart, true), mouseleave: () => pointAt(first.chart, false),
        focus: () => pointAt(first.chart, true), blur: () => pointAt(first.chart, false),
        click: go, keydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } } } }));
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
  $("predict-choices").replaceChildren(...p.choices.map((choice, i) => el("label", {},
    el("input", { type: "radio", name: "prediction", value: String(i), checked: prediction === i, on: { change: () => {
      if (state.lesson && state.lesson.preset.id === preset.id) {
        state.lesson.prediction = i;
        writeLessonHash();
        checkLesson();
      } else {
        state.pendingPrediction = i;
      }
    } } }), " ", choice)));
}

function predictionResult(preset, prediction, outcome) {
  const p = preset.predict;
  if (!p) return "";
  const held = outcome.checks.every((c) => c.held === true);
  const answer = p.choices[p.answer];
  const record = preset.evidence && preset.evidence.checks[0];
  const trials = record ? ` Held in ${record.held} of ${record.of} seeded trials.` : "";
  const why = outcome.checks.length ? ` ${measured(outcome.checks[0])}${trials}` : "";
  const exception = held ? "" : " This time not every check held: see below.";
  if (prediction === null || prediction === undefined) return `The answer: ${answer}.${why}${exception}`;
  const right = prediction === p.answer;
  return `You predicted: ${p.choices[prediction]}. ${right ? "Right" : `Not quite: the answer is ${answer}`}.${why}${exception}`;
}

const METRICS = { val_acc: "validation accuracy", train_acc: "training accuracy", val_loss: "validation loss",
  train_loss: "training loss", val_acc_batch_stats: "validation accuracy with batch statistics", gap: "the accuracy gap" };
const metricName = (m) => METRICS[m] || String(m || "").replace(/_/g, " ");

// A check's numbers as a teacher says them: "Here: 57%. The lesson expects more than 30%.", or, for two
// runs, "Here: leaky relu 0.41, relu 0.05: a difference of 0.36. The lesson expects more than 0.15."
function measured(c) {
  if (c.margin_unit === "finding") {
    return c.held ? `The doctor reports ${c.finding.replace(/_/g, " ")}.`
      : `The doctor did not report ${c.finding.replace(/_/g, " ")}${c.found && c.found.length ? ` (it reported: ${c.found.join(", ")})` : ""}.`;
  }
  if (c.left === null || c.left === undefined) return "";
  const pct = /%/.test(c.text) && Math.abs(c.left) <= 1 && Math.abs(c.bound ?? 0) <= 1;
  const v = (x) => (pct ? `${Math.round(100 * x)}%` : fmt(x));
  const want = { ">": "more than", ">=": "at least", "<": "less than", "<=": "at most" }[c.op] || c.op;
  if (c.right_run && c.right === null) return `Here: ${c.left_run} ${v(c.left)}; ${c.right_run} has no value.`;
  if (c.right_run && c.right_run === c.left_run) {  // two measures of one run: say which is which
    return `Here, ${c.left_run}: ${metricName(c.left_metric)} ${v(c.left)}, ${metricName(c.right_metric)} ${v(c.right)}`
      + (c.plus ? `: a difference of ${v(c.left - c.right)}. The lesson expects ${want} ${v(c.plus)}.` : ".");
  }
  if (c.right_run && c.plus) {
    return `Here: ${c.left_run} ${v(c.left)}, ${c.right_run} ${v(c.right)}: a difference of ${v(c.left - c.right)}. `
      + `The lesson expects ${want} ${v(c.plus)}.`;
  }
  if (c.right_run) {
    const side = c.op.startsWith(">") ? "higher" : "lower";
    return `Here: ${c.left_run} ${v(c.left)}, ${c.right_run} ${v(c.right)}. The lesson expects the first ${side}.`;
  }
  return `Here: ${v(c.left)}. The lesson expects ${want} ${v(c.bound ?? c.right)}.`;
}

// "Held in 49 of 50 seeded trials", with the sweep's detail behind a disclosure.
function evidenceItem(preset, i) {
  const ev = preset.evidence;
  const c = ev && ev.checks[i];
  if (!c) return null;
  const unit = c.margin_unit === "log10" ? " orders of magnitude" : "";
  const m = (x) => (x === null || x === undefined ? "n/a" : `${fmt(x, 2)}${unit}`);
  return el("details", { className: "evidence" }, el("summary", { textContent: `Held in ${c.held} of ${c.of} seeded trials.` }),
    el("span", { textContent: `The lesson's sweep trained it at seeds ${ev.seeds[0]} to ${ev.seeds[ev.seeds.length - 1]} with `
      + `${ev.threads.join(" and ")} torch thread${ev.threads.length > 1 || ev.threads[0] > 1 ? "s" : ""}; its margin past the `
      + `threshold was ${m(c.margin_median)} in the middle trial, ${m(c.margin_min)} at the least.` }));
}

function badgeItem(kind, word, text, result = "", evidence = null) {
  return el("li", {}, el("span", { className: `badge ${kind}`, textContent: word }), " ", text,
    result ? el("div", { className: "result", textContent: result }) : null, evidence);
}

export async function startLesson() {
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
export function openLesson(preset, group, runs, prediction = null) {
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

export function writeLessonHash() {
  const { preset, group, prediction } = state.lesson;
  writeHash({ lesson: preset.id, group, predict: prediction });
}

// One status for the whole lesson, and a clear moment when it is done.
export function renderLessonStatus() {
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

export async function checkLesson() {
  if (!state.lesson) return;
  const { preset, group } = state.lesson;
  const outcome = await api(`/api/presets/${preset.id}/outcome?group=${encodeURIComponent(group)}`).catch(() => null);
  if (!outcome || !outcome.finished) return;
  $("prediction-result").textContent = predictionResult(preset, state.lesson.prediction, outcome);
  holdBackTheAnswer(false);  // the runs have ended: the explanation and the checks, beside the result
  $("lesson-outcome").replaceChildren(...outcome.checks.map((c, i) => badgeItem(
    c.held === true ? "held" : c.held === false ? "not" : "wait",
    c.held === true ? "held" : c.held === false ? "did not hold" : "no data",
    c.text, measured(c), evidenceItem(preset, i))));
}
