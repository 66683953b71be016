// Runs on the page: what each run's events built up (its view), the live streams, and the run list.
import { api, streamRun } from "./api.js";
import { $, button, el } from "./dom.js";
import { scheduleRender } from "./scheduler.js";
import { state } from "./state.js";

const hooks = { onFinished: () => {} };

// What the page does when a watched run ends (lessons.js checks its outcome).
export function onRunFinished(fn) { hooks.onFinished = fn; }

// ---- a run's view: its events, reduced -----------------------------------------------------
export function view(run) {
  let v = state.views.get(run.id);
  if (!v) {
    v = { id: run.id, name: run.name, status: run.status, config: run.config, progress: run.progress || 0,
      steps: [], evals: [], layers: [], boundaries: [], samples: [], points: null, lastSeq: -1, stream: null,
      ended: null };
    state.views.set(run.id, v);
  }
  return v;
}

export function watch(run) {
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
    if (ev.seq === 0) {
      Object.assign(v, { steps: [], evals: [], layers: [], boundaries: [], samples: [], lastSeq: -1, findings: null,
        findingsFinal: false });
    }
    else return;  // a replay after reconnecting: already have it
  }
  v.lastSeq = ev.seq;
  switch (ev.type) {
    case "status":
      v.status = ev.status;
      v.message = ev.message;
      if (ev.status === "running" || ev.first_look) {  // a first look: a waiting run's step 0 (docs/events.md)
        v.config = ev.config || v.config;
        v.points = ev.points || null;
        v.totalSteps = ev.total_steps;
        v.stepsPerEpoch = ev.steps_per_epoch || null;
      }
      if (ev.status === "queued") followPlace(v);
      if (state.finished.has(ev.status)) {
        v.progress = ev.status === "completed" ? 1 : v.progress;
        if (ev.summary && ev.summary.findings) Object.assign(v, { findings: ev.summary.findings, findingsFinal: true });
        if (ev.summary && ev.summary.storage_note) v.storageNote = ev.summary.storage_note;
      }
      break;
    case "step": v.steps.push(ev); v.progress = ev.progress; break;
    case "eval": v.evals.push(ev); break;
    case "layers": v.layers.push(ev); break;
    case "boundary": v.boundaries.push(ev); break;
    case "samples": v.samples.push(ev); break;
    case "findings": v.findings = ev.findings; break;
    default: break;
  }
  if (ev.type === "status" && state.finished.has(ev.status)) {
    backfillCaptures(v);
    if (v.id === state.shown) refreshRuns();
    hooks.onFinished(v);
  }
  scheduleRender();
}

// Live, the server sends a viewer at most a couple of captures (and boundaries) a second, for a
// classroom's Wi-Fi; the store keeps every one. When a run ends, fetch the ones this page skipped, so
// the slider reaches them all.
async function backfillCaptures(v) {
  for (const [type, list] of [["layers", v.layers], ["boundary", v.boundaries]]) {
    const have = new Set(list.map((e) => e.seq));
    let after = -1;
    for (;;) {
      const page = await api(`/api/runs/${encodeURIComponent(v.id)}/events?type=${type}&after=${after}&limit=100`)
        .catch(() => null);
      if (!page || !page.data.length) break;
      for (const e of page.data) if (!have.has(e.seq)) { list.push(e); have.add(e.seq); }
      after = page.data[page.data.length - 1].seq;
    }
    list.sort((a, b) => a.seq - b.seq);
  }
  scheduleRender();
}

export function show(ids) {
  state.compare = ids;
  state.shown = ids[0] || null;
  state.stepIndex = null;
  if (state.shown) followPlace(state.views.get(state.shown));
  scheduleRender();
}

// A waiting run says where it is in the queue and about when it starts (the run's ``queue``), asked
// again every two seconds while it is shown and waits.
const placeTimers = new Map();
function followPlace(v) {
  if (!v || placeTimers.has(v.id)) return;
  const ask = async () => {
    if (v.status !== "queued" || v.id !== state.shown) { placeTimers.delete(v.id); return; }
    try {
      const run = await api(`/api/runs/${v.id}`);
      if (v.status === "queued") v.queue = run.queue;
      scheduleRender();
    } catch (err) { /* the next ask tries again */ }
    placeTimers.set(v.id, setTimeout(ask, 2000));
  };
  placeTimers.set(v.id, setTimeout(ask, 0));
}

// ---- the run list ---------------------------------------------------------------------------
export async function refreshRuns() {
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
  const title = !group ? "Single runs" : preset ? `Lesson: ${preset.title} (${group.slice(preset.id.length + 1)})`
    : `Group ${group}`;
  return el("tr", { className: "group-row" }, el("th", { scope: "rowgroup", colSpan: 5, textContent: title }));
}

function runRow(run) {
  const v = state.views.get(run.id);
  if (v && !v.stream) { v.status = run.status; v.progress = run.progress; }
  const pick = el("input", { type: "checkbox", checked: state.compare.includes(run.id), attrs: { "aria-label": `compare ${run.name}` },
    on: { change: () => {
      const ids = state.compare.filter((id) => id !== run.id);
      if (pick.checked) { watch(run); ids.push(run.id); }
      show(ids);
      refreshRuns();
    } } });
  // text, never markup: a run name is user input
  const name = el("button", { type: "button", className: "secondary", textContent: run.name, title: "show this run",
    on: { click: () => { watch(run); show([run.id, ...state.compare.filter((id) => id !== run.id)]); refreshRuns(); } } });
  const status = el("span", { className: `status-${run.status}`, textContent: run.status, title: run.error || "" });
  const bar = el("progress", { max: 1, value: run.progress, attrs: { "aria-label": `progress of ${run.name}` } });
  const actions = el("td");
  if (!state.finished.has(run.status)) {
    actions.append(button("Cancel", async () => {
      await api(`/api/runs/${run.id}/cancel`, { method: "POST" }).catch(() => {});
      refreshRuns();
    }));
  } else {
    actions.append(button("Delete", () => deleteWithUndo(run)), " ",
      el("a", { href: `/api/runs/${run.id}/report`, textContent: "Report", target: "_blank" }));
  }
  // The run as a standalone PyTorch script: the config is known from the start, so every run has one
  // (but a watched run: its training is the learner's own code).
  if (run.source !== "watched") {
    actions.append(" ", el("a", { href: `/api/runs/${run.id}/script`, textContent: "PyTorch script",
      download: `deepscope-${run.id}.py`, attrs: { "aria-label": `PyTorch script of ${run.name}` } }));
  }
  const cells = [pick, name, status, bar].map((child, i) => el("td", { className: i === 1 ? "name" : "" }, child));
  return el("tr", { className: run.id === state.shown ? "shown" : "", dataset: { run: run.id } }, ...cells, actions);
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

export function undoDelete() {
  const id = $("undo-bar").dataset.run;
  clearTimeout(state.pendingDeletes.get(id));
  state.pendingDeletes.delete(id);
  $("undo-bar").hidden = true;
  refreshRuns();
}
