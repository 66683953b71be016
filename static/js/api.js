// Talking to the REST API and the run WebSocket. Who this browser is, the server decides: it issues a
// signed identity in an HttpOnly cookie that the browser sends by itself. The workshop token, when the
// server asks for one, is kept in a cookie after the first prompt.

export function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.split("=")[1]) : null;
}

export function setCookie(name, value, maxAge = 31536000) {
  document.cookie = `${name}=${encodeURIComponent(value)}; path=/; max-age=${maxAge}; SameSite=Strict`;
}

export function ensureToken() {
  if (document.body.dataset.needsToken !== "true" || cookie("deepscope_token")) return;
  const token = window.prompt("This DeepScope server needs the workshop token:");
  if (token) setCookie("deepscope_token", token.trim());
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

export async function api(path, { method = "GET", body, headers: extra = {} } = {}) {
  const headers = { ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new ApiError(res.status, data && data.detail !== undefined ? data.detail : data);
  return data;
}

// The run statuses and the WebSocket's close codes, from GET /api/options (their one home is the server):
// {all, active, finished} as Sets, and closeCodes by name.
let statusesPromise = null;
export function statuses() {
  statusesPromise ??= api("/api/options").then((o) => ({
    all: new Set(o.statuses.all), active: new Set(o.statuses.active), finished: new Set(o.statuses.finished),
    closeCodes: o.close_codes }));
  return statusesPromise;
}

// An event as it arrives: JSON text, or (big events, asked for with ?encoding=deflate) deflated JSON bytes.
async function decode(data) {
  if (typeof data === "string") return JSON.parse(data);
  const inflated = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return JSON.parse(await new Response(inflated).text());
}

// Opens /ws/runs/{id}; calls onEvent for each event, onEnd(reason) when the stream is over for good.
// A dropped connection (server restart, network) reconnects with backoff and replays from seq 0;
// the caller drops duplicates by seq. Big events come deflated: a classroom's Wi-Fi carries a third.
export function streamRun(runId, onEvent, onEnd) {
  let closedByUs = false;
  let delay = 500;
  let socket;
  let codes = null;
  const open = async () => {
    codes ??= (await statuses()).closeCodes;
    if (closedByUs) return;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${proto}://${location.host}/ws/runs/${encodeURIComponent(runId)}?encoding=deflate`);
    socket.binaryType = "arraybuffer";
    let decoded = Promise.resolve();  // decoding bytes is asynchronous: this chain keeps events in seq order
    socket.onmessage = (msg) => {
      delay = 500;
      decoded = decoded.then(() => decode(msg.data)).then(onEvent, (err) => console.error("event dropped:", err));
    };
    socket.onclose = (ev) => {
      if (closedByUs) return;
      if (ev.code === codes.ended) return void decoded.then(() => onEnd("ended"));
      if (ev.code === codes.not_found) return onEnd("unknown");
      if (ev.code === codes.forbidden) return onEnd("forbidden");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 8000);
    };
    socket.onerror = () => {};  // onclose follows and decides
  };
  open();
  return { close() { closedByUs = true; socket?.close(); } };
}
