// Lessons: one idea each. The learner predicts, runs the lesson's runs as one group, and sees their
// prediction set beside what happened, with a badge per expected outcome and the sweep's record.
import { api, ApiError } from "./api.js";
import { $, el, fmt } from "./dom.js";
import { refreshRuns, show, watch } from "./runs.js";
import { scheduleRender } from "./scheduler.js";
import { state, writeHash } from "./state.js";
import { play, showStep } from "./timeline.js";

export function showLesson(preset, prediction = null) {
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
// (or Enter) brings it into view, at the link's step (or plays its range of steps). Built from text
// nodes: the lesson text is never parsed as markup.
function linkPhrases(text, links) {
  const parts = [];
  let rest = text;
  for (;;) {
    const hits = links.map((l) => ({ ...l, at: rest.indexOf(l.phrase) })).filter((l) => l.at >= 0);
    if (!hits.length) break;
    const first = hits.reduce((a, b) => (b.at < a.at ? b : a));
    parts.push(document.createTextNode(rest.slice(0, first.at)));
    const fig = () => document.querySelector(`[data-testid=${first.chart}]`)?.closest("figure");
    const point = (on) => fig()?.classList.toggle("pointed", on);
    const go = () => {
      if (first.steps) { showStep(first.steps[0]); play(first.steps[1]); } else if (first.step !== undefined) showStep(first.step);
      fig()?.scrollIntoView({ block: "center", behavior: "smooth" });
    };
    parts.push(el("span", { className: "chart-link", tabIndex: 0, textContent: first.phrase, dataset: { chart: first.chart },
      attrs: { role: "button", "aria-label": `${first.phrase}: show the chart` },
      on: { mouseenter: () => point(true), mouseleave: () => point(false), focus: () => point(true), blur: () => point(false),
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
  const evidence = preset.evidence && preset.evidence.checks && preset.evidence.checks[0];
  const sweep = evidence ? ` The same happened in ${evidence.held} of ${evidence.of} seeded trials of the sweep.` : "";
  const answer = p.choices[p.answer];
  const exception = held ? "" : " (This time not every check held: see below.)";
  if (prediction === null || prediction === undefined) return `The answer: ${answer}.${exception}${sweep}`;
  const right = prediction === p.answer;
  return `You predicted: ${p.choices[prediction]}. ${right ? "Right" : "Not quite"}: ${answer}.${exception}${sweep}`;
}

// "held in 20/20 trials (seeds 0-9 at 1 and 2 torch threads), margin 0.41 (min 0.33)": the sweep's record
function evidenceText(preset, i) {
  const ev = preset.evidence;
  const c = ev && ev.checks[i];
  if (!c) return "";
  const unit = c.margin_unit === "log10" ? " decades" : "";
  const m = (x) => (x === null || x === undefined ? "n/a" : `${fmt(x, 2)}${unit}`);
  return `held in ${c.held}/${c.of} trials (seeds ${ev.seeds[0]}-${ev.seeds[ev.seeds.length - 1]} at `
    + `${ev.threads.join(" and ")} torch threads), margin ${m(c.margin_median)} (min ${m(c.margin_min)})`;
}

function badgeItem(kind, word, text, evidence = "", result = "") {
  return el("li", {}, el("span", { className: `badge ${kind}`, textContent: word }), " ", text,
    result ? el("div", { className: "result", textContent: result }) : null,
    evidence ? el("div", { className: "evidence", textContent: evidence }) : null);
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
