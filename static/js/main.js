// The playground's wiring: the form, the lessons, the run list, the time axis and the charts, each in
// its own module (state.js holds the state and the URL codec).
import { api, ApiError, ensureToken, statuses } from "./api.js";
import { $, el } from "./dom.js";
import { ConfigForm } from "./form.js";
import { checkLesson, openLesson, showLesson, startLesson } from "./lessons.js";
import { onRunFinished, refreshRuns, show, undoDelete, watch } from "./runs.js";
import { observe, scheduleRender, setRenderer } from "./scheduler.js";
import { readHash, state, writeHash } from "./state.js";
import { pause, togglePlay } from "./timeline.js";
import { render } from "./view.js";

function formConfig() {
  const cfg = { ...state.form.config() };
  const name = $("f-name").value.trim();
  if (name) cfg.name = name;
  return cfg;
}

const writeConfigHash = () => writeHash({ config: formConfig() });

async function submit(event) {
  event.preventDefault();
  state.form.clearErrors();
  $("form-error").textContent = "";
  try {
    const run = await api("/api/runs", { method: "POST", body: formConfig() });
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

function wireControls(presets) {
  // "Tweak this lesson": the form starts from the shown run's settings, then the learner changes one.
  $("from-shown").addEventListener("click", () => {
    const shown = state.views.get(state.shown);
    if (!shown || !shown.config) return;
    state.form.setConfig(shown.config);
    $("f-name").value = "";
    writeConfigHash();
  });
  $("f-name").addEventListener("input", writeConfigHash);
  for (const p of presets) $("preset-select").append(el("option", { value: p.id, textContent: p.title }));
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
  $("step-slider").addEventListener("input", (e) => { pause(); state.stepIndex = Number(e.target.value); scheduleRender(true); });
  $("live-btn").addEventListener("click", () => { pause(); state.stepIndex = null; scheduleRender(true); });
  $("play-btn").addEventListener("click", togglePlay);
  for (const id of ["hist-kind", "hist-shared", "batch-loss", "strip-stat", "heat-layer"]) {
    $(id).addEventListener("change", () => scheduleRender(true));
  }
  document.querySelectorAll(".chart").forEach(observe);
}

// A shared link or a reload: the lesson and its group come back with the prediction made.
async function restoreLesson(presets, hash) {
  const preset = hash.lesson && presets.find((p) => p.id === hash.lesson);
  if (!preset || !hash.group) return;
  const list = await api(`/api/runs?group=${encodeURIComponent(hash.group)}`).catch(() => null);
  if (!list || !list.count) return;
  $("preset-select").value = preset.id;
  openLesson(preset, hash.group, list.data.reverse(), hash.predict);
  checkLesson();
}

async function main() {
  ensureToken();
  const [options, presets, known] = await Promise.all([api("/api/options"), api("/api/presets"), statuses()]);
  state.finished = known.finished;
  state.presets = presets;
  setRenderer(render);
  onRunFinished(() => checkLesson());
  state.form = new ConfigForm($("form-sections"), options, writeConfigHash);
  const hash = readHash();
  if (hash.config) {
    state.form.setConfig(hash.config);
    if (hash.config.name) $("f-name").value = hash.config.name;
    $("tweak").open = true;
  }
  wireControls(presets);
  await restoreLesson(presets, hash);
  if (hash.run && !hash.lesson) {
    const run = await api(`/api/runs/${encodeURIComponent(hash.run)}`).catch(() => null);
    if (run) { watch(run); show([run.id]); }
  }
  render();
  await refreshRuns();
  setInterval(refreshRuns, 2000);
}

main().catch((err) => { $("form-error").textContent = `The page could not start: ${err.message}`; });
