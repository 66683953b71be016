// The time axis: which step the page shows. The slider has one position per capture of the shown run;
// every chart follows it (the compared runs at their capture nearest at or before that step, the
// boundary and the samples too). At the end of the slider (or with Live) the page follows the newest
// capture while the run trains. Play steps through the captures at a readable pace.
import { $ } from "./dom.js";
import { scheduleRender } from "./scheduler.js";
import { state } from "./state.js";

export const PLAY_MS = 220;  // per capture: 50 captures play in about 11 s

// The newest item of ``list`` (in step order) at or before ``step``; the first one if none is.
function atOrBefore(list, step) {
  if (!list.length) return null;
  let best = list[0];
  for (const e of list) if (e.step <= step) best = e;
  return best;
}

// The step the page shows: the shown run's capture under the slider, or its newest.
export function shownStep() {
  const shown = state.views.get(state.shown);
  if (!shown || !shown.layers.length) return null;
  const i = state.stepIndex === null ? shown.layers.length - 1 : Math.min(state.stepIndex, shown.layers.length - 1);
  return shown.layers[i].step;
}

export function captureFor(run) {
  if (!run.layers.length) return null;
  const step = shownStep();
  return step === null ? run.layers[run.layers.length - 1] : atOrBefore(run.layers, step);
}

export function boundaryFor(run) {
  const step = shownStep();
  return step === null ? run.boundaries[run.boundaries.length - 1] || null : atOrBefore(run.boundaries, step);
}

export function samplesFor(run) {
  const step = shownStep();
  return step === null ? run.samples[run.samples.length - 1] || null : atOrBefore(run.samples, step);
}

// Move the slider to the capture at or before ``step`` (a lesson's evidence link, a finding).
export function showStep(step) {
  const shown = state.views.get(state.shown);
  if (step === Infinity || !shown || !shown.layers.length) { state.stepIndex = step === 0 ? 0 : null; return; }
  let index = 0;
  shown.layers.forEach((e, i) => { if (e.step <= step) index = i; });
  state.stepIndex = index;
  scheduleRender(true);
}

export function play(until = null) {
  const shown = state.views.get(state.shown);
  if (!shown || shown.layers.length < 2) return;
  pause();
  const last = shown.layers.length - 1;
  if (state.stepIndex === null || state.stepIndex >= last) state.stepIndex = 0;
  state.playing = setInterval(() => {
    const end = until === null ? last : shown.layers.findLastIndex((e) => e.step <= until);
    if (state.stepIndex >= Math.max(0, end)) { pause(); return; }
    state.stepIndex += 1;
    scheduleRender(true);
  }, PLAY_MS);
  syncPlayButton();
  scheduleRender(true);
}

export function pause() {
  if (state.playing) clearInterval(state.playing);
  state.playing = null;
  syncPlayButton();
}

export function togglePlay() {
  if (state.playing) pause(); else play();
}

function syncPlayButton() {
  const b = $("play-btn");
  if (!b) return;
  b.textContent = state.playing ? "Pause" : "Play";
  b.setAttribute("aria-pressed", state.playing ? "true" : "false");
}

// The slider's own state: one position per capture, at the end while following the newest.
export function syncSlider(shown) {
  const slider = $("step-slider");
  const n = shown ? shown.layers.length : 0;
  slider.max = Math.max(0, n - 1);
  if (state.stepIndex === null) slider.value = slider.max;
  else slider.value = Math.min(state.stepIndex, n - 1);
  const step = shownStep();
  $("step-value").textContent = step === null ? 0 : step;
  $("play-btn").disabled = n < 2;
  $("live-btn").disabled = state.stepIndex === null;
}
