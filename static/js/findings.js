// "What DeepScope sees": the run doctor's findings for the shown runs (docs/doctor.md). Each finding's
// "Show me" opens its evidence (the chart outlined, its statistic chosen, the slider at its step); its
// lesson link opens the lesson; "Try" starts what a teacher would suggest as a compared run. Between
// compared runs, a finding one run has and another has not is the difference to look at.
import { api, ApiError } from "./api.js";
import { $, el } from "./dom.js";
import { refreshRuns, show, watch } from "./runs.js";
import { openView } from "./evidence.js";
import { state } from "./state.js";

let drawnKey = "";

export function renderFindings(runs) {
  const box = $("findings");
  const withFindings = runs.filter((r) => r.findings && r.findings.length);
  const key = withFindings.map((r) => `${r.id}:${r.findings.map((f) => f.id).join("+")}:${r.findingsFinal}`).join(",");
  if (key === drawnKey) return;
  drawnKey = key;
  box.hidden = !withFindings.length;
  if (!withFindings.length) return;
  const idsIn = (run) => new Set(run.findings.filter((f) => f.severity !== "info").map((f) => f.id));
  const all = withFindings.map(idsIn);
  $("findings-list").replaceChildren(...withFindings.map((run, r) => el("section", { className: "finding-run" },
    withFindings.length > 1 || runs.length > 1 ? el("h3", { textContent: run.name }) : null,
    el("ul", {}, ...run.findings.map((f) => findingItem(run, f,
      withFindings.length > 1 && f.severity !== "info" && all.some((ids, j) => j !== r && !ids.has(f.id))))),
    run.findingsFinal ? null : el("p", { className: "muted", textContent: "While the run trains: this may change." }))));
}

function findingItem(run, f, differs) {
  const actions = el("span", { className: "finding-actions" },
    el("button", { type: "button", className: "secondary", textContent: "Show me", dataset: { testid: "finding-evidence" },
      on: { click: () => openEvidence(run, f) } }));
  const lesson = f.lesson && state.presets.find((p) => p.id === f.lesson);
  if (lesson) {
    actions.append(" ", el("button", { type: "button", className: "link", textContent: `Lesson: ${lesson.title}`,
      on: { click: () => openLessonCard(lesson) } }));
  }
  if (f.try && run.config && !run.config.watched) {
    actions.append(" ", el("button", { type: "button", className: "secondary", textContent: `Try ${f.try.text}`,
      dataset: { testid: "finding-try" }, on: { click: () => tryCure(run, f.try) } }));
  }
  return el("li", { className: `finding ${f.severity}`, dataset: { finding: f.id } },
    el("span", { className: `badge ${f.severity === "info" ? "held" : f.severity === "warning" ? "warn" : "not"}`,
      textContent: f.severity }), " ",
    el("strong", { textContent: f.title }),
    differs ? el("span", { className: "badge differs", textContent: "only this run" }) : null,
    el("details", {}, el("summary", { textContent: "Why" }), el("p", { textContent: f.detail })),
    actions);
}

// The evidence: the chart outlined and in view, its statistic chosen, the slider at the step it shows.
function openEvidence(run, f) {
  if (!state.compare.includes(run.id)) show([run.id, ...state.compare]);
  openView({ ...(f.evidence || {}), layer: (f.evidence || {}).layer || null });
}

function openLessonCard(lesson) {
  $("preset-select").value = lesson.id;
  $("preset-select").dispatchEvent(new Event("change"));
  $("lesson-card").scrollIntoView({ block: "start" });
}

// The same run with one change, started beside it: the comparison a teacher would suggest.
async function tryCure(run, cure) {
  const config = JSON.parse(JSON.stringify(run.config));
  for (const [section, fields] of Object.entries(cure.change)) Object.assign(config[section] ??= {}, fields);
  config.name = `${run.name}: ${cure.text.replace(/^the same net with /, "")}`.slice(0, 80);
  try {
    const started = await api("/api/runs", { method: "POST", body: config });
    watch(started);
    show([...state.compare, started.id]);
    refreshRuns();
  } catch (err) {
    $("form-error").textContent = err instanceof ApiError ? err.message : String(err);
  }
}
