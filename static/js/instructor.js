// The instructor's view: every run with its owner; cancel or delete any. Asks once for the instructor
// token and keeps it in a cookie.
import { api, ApiError, cookie, setCookie, statuses } from "./api.js";

const $ = (id) => document.getElementById(id);
let FINISHED = new Set();

function token(ask) {
  let t = cookie("deepscope_instructor");
  if (!t || ask) {
    t = (window.prompt("Instructor token (DEEPSCOPE_INSTRUCTOR_TOKEN):") || "").trim();
    setCookie("deepscope_instructor", t, 86400);
  }
  return t.trim();
}

async function call(path, method = "GET") {
  try {
    return await api(path, { method, headers: { "X-DeepScope-Instructor": token(false) } });
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      token(true);
      throw new Error("the instructor token was refused; try again");
    }
    throw err;
  }
}

function action(text, run, path, method) {
  const b = Object.assign(document.createElement("button"), { type: "button", textContent: text, className: "secondary" });
  b.addEventListener("click", async () => {
    try { await call(path, method); } catch (err) { $("message").textContent = err.message; }
    refresh();
  });
  b.setAttribute("aria-label", `${text} ${run.name}`);
  return b;
}

async function refresh() {
  let list;
  try {
    list = await call("/api/instructor/runs?limit=1000");
    $("message").textContent = "";
  } catch (err) {
    $("message").textContent = err.message;
    return;
  }
  const active = list.data.filter((r) => !FINISHED.has(r.status));
  const owners = new Set(list.data.map((r) => r.owner));
  $("summary").textContent = `${list.count} runs from ${owners.size} clients; ${active.length} queued or running.`;
  $("rows").replaceChildren(...list.data.map((run) => {
    const tr = document.createElement("tr");
    const cells = [run.owner || "?", run.name, run.status, null, run.created_at.slice(11, 19)].map((text) => {
      const td = document.createElement("td");
      if (text !== null) td.textContent = text;  // text, never markup
      return td;
    });
    const bar = Object.assign(document.createElement("progress"), { max: 1, value: run.progress });
    cells[3].append(bar);
    const act = document.createElement("td");
    act.append(FINISHED.has(run.status) ? action("Delete", run, `/api/runs/${run.id}`, "DELETE")
      : action("Cancel", run, `/api/runs/${run.id}/cancel`, "POST"));
    tr.append(...cells, act);
    return tr;
  }));
}

token(false);  // the cookie it sets lets the options call below through on a token server
statuses().then((known) => { FINISHED = known.finished; refresh(); setInterval(refresh, 2000); })
  .catch((err) => { $("message").textContent = err.message; });
