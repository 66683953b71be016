"""Service figures on a real `deepscope serve` (2 local workers) on loopback, measured side by side:

    python benchmarks/service.py [--viewers 100] [--submits 20]

1. POST /api/runs -> first step event on a WebSocket, warm server (goal: median < 300 ms).
2. One run watched by N WebSocket viewers: delivery latency p50/p99 of step events (event wall-clock
   stamp -> received), and the run's training steps/s with the viewers against the same run with none
   (goal: p99 < 100 ms, ratio >= 0.95).
3. API latency p50/p99 of GET /api/runs/{id} and GET /api/runs while two runs train.
4. Bytes per second one viewer receives from a 20- and a 100-layer run, with the page's encoding
   (?encoding=deflate) and with plain JSON side by side (goal: <= 50 KB/s, a 20-layer layers event
   <= 10 KB on the wire).
5. Storage: MB stored per lesson run (every lesson once), per own run, for a class of 60 (every lesson,
   shared, plus one own run each), and for the extreme config (a capture every step, no budget, no
   rate cap, 20 s) stored under the per-run cap against the same training uncapped, side by side.
6. Memory: the service's RSS with N WebSockets that never read (raw sockets: nothing is taken off
   them) replaying a finished 100-layer run, and after they close (``--only-memory``).
0. (printed first) `deepscope serve` until /healthz answers (goal: 1.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import websockets

LONG = {"model": {"depth": 10, "width": 64}, "train": {"epochs": 60, "fresh": True}}
WATCHED = {"model": {"depth": 10, "width": 64}, "train": {"epochs": 400, "fresh": True}}  # about 10 s of training
QUICK = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 1, "fresh": True}}
ENCODINGS = ("json", "deflate")
OWN = {"data": {"dataset": "moons"}, "model": {"depth": 6, "width": 32}, "train": {"epochs": 10, "fresh": True}}
EXTREME = {"model": {"depth": 20, "width": 64}, "train": {"epochs": 400, "fresh": True},
           "telemetry": {"every_steps": 1, "budget": 0, "max_per_second": 0}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def first_step_latency(base: str, ws_base: str, n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            run = (await c.post("/api/runs", json=QUICK)).json()
            async with websockets.connect(f"{ws_base}/ws/runs/{run['id']}") as ws:
                async for msg in ws:
                    if json.loads(msg)["type"] == "step":
                        out.append((time.perf_counter() - t0) * 1000)
                        break
            await wait_done(c, run["id"])
    return out


async def wait_done(c: httpx.AsyncClient, run_id: str) -> dict:
    while True:
        run = (await c.get(f"/api/runs/{run_id}")).json()
        if run["status"] not in ("queued", "running"):
            return run
        await asyncio.sleep(0.1)


async def viewer(ws_base: str, run_id: str, latencies: list[float], connected: list[float]) -> None:
    async with websockets.connect(f"{ws_base}/ws/runs/{run_id}", max_size=None) as ws:
        connected.append(time.time())
        async for msg in ws:
            now = time.time()
            # Parse only step events: this client shares two cores with the server and the worker.
            if msg.startswith('{"seq":') and '"type":"step"' in msg[:40]:
                ts = json.loads(msg)["ts"]
                latencies.append((ts, (now - ts) * 1000))


async def watched_run(base: str, ws_base: str, n_viewers: int) -> tuple[float, list[float]]:
    """Steps/s and delivery latencies once every viewer is connected (the connection storm is left out)."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        run = (await c.post("/api/runs", json=WATCHED)).json()
        stamped: list[tuple[float, float]] = []
        connected: list[float] = []
        tasks = [asyncio.create_task(viewer(ws_base, run["id"], stamped, connected)) for _ in range(n_viewers)]
        await wait_done(c, run["id"])
        await asyncio.gather(*tasks, return_exceptions=True)
        settled = (max(connected) if connected else time.time()) + 0.5
        steps = (await c.get(f"/api/runs/{run['id']}/events", params={"type": "step"})).json()["data"]
        steps = [e for e in steps if e["ts"] >= settled] if n_viewers else steps[len(steps) // 4:]
        speed = (steps[-1]["step"] - steps[0]["step"]) / (steps[-1]["ts"] - steps[0]["ts"])
        return speed, [lat for ts, lat in stamped if ts >= settled]


async def _received(ws_base: str, run_id: str, encoding: str, seconds: float) -> list[tuple[float, int, str]]:
    """(seconds since connecting, bytes on the wire, event type) of each message one viewer receives."""
    sizes = []
    async with websockets.connect(f"{ws_base}/ws/runs/{run_id}?encoding={encoding}", max_size=None) as ws:
        t0 = time.monotonic()
        async for msg in ws:
            now = time.monotonic() - t0
            text = zlib.decompress(msg).decode() if isinstance(msg, bytes) else msg
            sizes.append((now, len(msg) if isinstance(msg, bytes) else len(msg.encode()),
                          text[text.index('"type":"') + 8:][:6]))
            if now > seconds:
                break
    return sizes


async def viewer_bandwidth(base: str, ws_base: str, depth: int, seconds: float = 8.0) -> dict[str, tuple[float, float]]:
    """While a ``depth``-layer digits MLP trains, two viewers of it side by side, one per encoding (json: every
    event as text; deflate: the page's, big events deflated once per event): for each, the KB/s received
    in the live part (after the replay) and the mean size of a layers event on the wire. Also the stored
    layers events per second, for comparison, under "stored"."""
    config = {"data": {"dataset": "digits"}, "model": {"depth": depth, "width": 64},
              "train": {"epochs": 500, "fresh": True}, "telemetry": {"every_steps": 1, "budget": 0}}
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        run = (await c.post("/api/runs", json=config)).json()
        received = await asyncio.gather(*(_received(ws_base, run["id"], enc, seconds) for enc in ENCODINGS))
        await c.post(f"/api/runs/{run['id']}/cancel")
        await wait_done(c, run["id"])
        stored = (await c.get(f"/api/runs/{run['id']}/events", params={"type": "layers", "limit": 1000})).json()
    out = {}
    for encoding, sizes in zip(ENCODINGS, received, strict=True):
        live = [(t, n, k) for t, n, k in sizes if t > 2.0]  # past the replay and the start
        span = live[-1][0] - live[0][0]
        layers = [n for _, n, k in live if k.startswith("layers")]
        out[encoding] = (sum(n for _, n, _ in live) / span / 1024, sum(layers) / len(layers) / 1024 if layers else 0.0)
    out["stored"] = (stored["count"] / (received[0][-1][0] or 1), 0.0)
    return out


async def api_latency(base: str, seconds: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"GET /api/runs/{id}": [], "GET /api/runs": []}
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        runs = [(await c.post("/api/runs", json=LONG)).json() for _ in range(2)]
        await asyncio.sleep(1.0)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for label, path in (("GET /api/runs/{id}", f"/api/runs/{runs[0]['id']}"), ("GET /api/runs", "/api/runs")):
                t0 = time.perf_counter()
                (await c.get(path)).raise_for_status()
                out[label].append((time.perf_counter() - t0) * 1000)
        for r in runs:
            await c.post(f"/api/runs/{r['id']}/cancel")
    return out


async def main_async(args: argparse.Namespace, base: str, ws_base: str) -> None:
    if args.only_storage:
        await storage(base)
        return
    if args.only_memory:
        await stalled_viewers(base, args.server_pid, args.viewers)
        return
    lat = await first_step_latency(base, ws_base, args.submits)
    print(f"1. POST -> first step event ({args.submits} runs): median {statistics.median(lat):.0f} ms, "
          f"p90 {pct(lat, 0.9):.0f} ms, max {max(lat):.0f} ms")
    bare, _ = await watched_run(base, ws_base, 0)
    watched, latencies = await watched_run(base, ws_base, args.viewers)
    print(f"2. {args.viewers} viewers of one run: delivery p50 {pct(latencies, 0.5):.1f} ms, "
          f"p99 {pct(latencies, 0.99):.1f} ms over {len(latencies)} step deliveries; "
          f"steps/s {watched:.0f} with viewers vs {bare:.0f} without: ratio {watched / bare:.3f}")
    for depth in (20, 100):
        measured = await viewer_bandwidth(base, ws_base, depth)
        print(f"4. a viewer of a {depth}-layer run (captures every step, no rate cap, no budget; "
              f"{measured['stored'][0]:.1f} captures/s stored):")
        for encoding in ENCODINGS:
            kbps, event_kb = measured[encoding]
            print(f"   ?encoding={encoding}: {kbps:.1f} KB/s, a layers event {event_kb:.1f} KB on the wire; "
                  f"60 such viewers: {kbps * 60 * 8 / 1024:.1f} Mbit/s")
        ratio = measured["deflate"][0] / measured["json"][0]
        print(f"   deflate / json bytes per second: {ratio:.2f}")
    api = await api_latency(base, args.api_seconds)
    for label, values in api.items():
        print(f"3. {label} while two runs train: p50 {pct(values, 0.5):.1f} ms, p99 {pct(values, 0.99):.1f} ms "
              f"({len(values)} requests)")
    if not args.skip_storage:
        await storage(base)
    await stalled_viewers(base, args.server_pid, args.viewers)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def stalled_viewers(base: str, pid: int, n: int) -> None:
    """6: N sockets that send the WebSocket handshake and then never read a byte."""
    config = {"model": {"depth": 100, "width": 64}, "train": {"epochs": 3, "fresh": True},
              "telemetry": {"every_steps": 1, "budget": 0, "max_per_second": 0}}
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        run = (await c.post("/api/runs", json=config)).json()
        await finished(c, [run["id"]])
        events = (await c.get(f"/api/runs/{run['id']}/events", params={"type": "layers", "limit": 1000})).json()
        kb = sum(len(json.dumps(e)) for e in events["data"]) / 1024
    host, port = base.removeprefix("http://").split(":")
    before = rss_mb(pid)
    sockets = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall((f"GET /ws/runs/{run['id']} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: ZGVlcHNjb3BlLXN0YWxsIQ==\r\n"
                   f"Sec-WebSocket-Version: 13\r\nOrigin: {base}\r\n\r\n").encode())
        sockets.append(s)
    await asyncio.sleep(8)
    held = rss_mb(pid)
    queued = 0  # what the kernel holds for the first socket: sent by the service, not read by the client
    sockets[0].setblocking(False)
    try:
        while chunk := sockets[0].recv(1 << 20):
            queued += len(chunk)
    except BlockingIOError:
        pass
    for s in sockets:
        s.close()
    await asyncio.sleep(8)
    after = rss_mb(pid)
    print(f"6. {n} WebSockets that never read, replaying a 100-layer run ({len(events['data'])} layers events, "
          f"{kb / 1024:.1f} MB of them): service RSS {before:.0f} MB before, {held:.0f} MB while they wait "
          f"({(held - before) / n:.2f} MB a socket), {after:.0f} MB 8 s after they closed; the kernel held {queued / 2**20:.2f} MB for one socket")


async def finished(c: httpx.AsyncClient, ids: list[str], timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [(await c.get(f"/api/runs/{i}")).json() for i in ids]
        if all(r["stored_bytes"] is not None or r.get("summary", {}).get("shared_from") for r in runs) \
                or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.5)


async def storage(base: str) -> None:
    mb = 1e6
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        lessons = (await c.get("/api/presets")).json()
        runs = []
        for lesson in lessons:
            runs += (await c.post(f"/api/presets/{lesson['id']}/runs")).json()
        stored = [r for r in await finished(c, [r["id"] for r in runs]) if r["stored_bytes"] is not None]
        sizes = [r["stored_bytes"] / mb for r in stored]
        plain = [await text_bytes(c, r["id"]) / mb for r in stored]
        own = [(await c.post("/api/runs", json={**OWN, "train": {**OWN["train"], "seed": s}})).json()["id"]
               for s in range(4)]
        own_mb = statistics.mean(r["stored_bytes"] / mb for r in await finished(c, own))
        print(f"5. storage: a lesson run stores {statistics.mean(sizes):.2f} MB on average, {max(sizes):.2f} MB "
              f"at most ({len(sizes)} trainings over {len(lessons)} lessons, {sum(sizes):.1f} MB in all); an own "
              f"run (moons, depth 6, width 32, 10 epochs) {own_mb:.2f} MB. As plain JSON text, the lesson runs "
              f"would take {sum(plain):.1f} MB: stored compressed, {sum(sizes) / sum(plain):.2f} of that")
        print(f"   a class of 60 (every lesson once, shared, and one own run each; from the two above): "
              f"{sum(sizes) + 60 * own_mb:.0f} MB")
        run = (await c.post("/api/runs", json=EXTREME)).json()
        await asyncio.sleep(20)
        await c.post(f"/api/runs/{run['id']}/cancel")
        capped = (await finished(c, [run["id"]]))[0]
    uncapped = await asyncio.to_thread(weigh_uncapped, capped["summary"].get("step", 0))
    print(f"   the extreme config for 20 s (depth 20, a capture every step, no budget, no rate cap): "
          f"{capped['stored_bytes'] / mb:.1f} MB stored under DEEPSCOPE_MAX_RUN_MB "
          f"({capped['summary'].get('storage_note', 'not thinned')}); the same training to the same step "
          f"uncapped: {uncapped / mb:.1f} MB: ratio {capped['stored_bytes'] / uncapped:.2f}")


async def text_bytes(c: httpx.AsyncClient, run_id: str) -> int:
    """A run's events as the JSON text an uncompressed store would hold (what the API serves)."""
    total, after = 0, -1
    while page := (await c.get(f"/api/runs/{run_id}/events", params={"after": after, "limit": 1000})).json()["data"]:
        total += sum(len(json.dumps(e, separators=(",", ":"))) for e in page)
        after = page[-1]["seq"]
    return total


def weigh_uncapped(steps: int) -> int:
    """The extreme config's events, trained here without a cap to the step the capped run reached."""
    from deepscope.engine import train

    total = calls = 0

    def emit(event: dict) -> None:
        nonlocal total
        total += len(json.dumps(event, separators=(",", ":")))

    def should_stop() -> bool:  # asked once before every step
        nonlocal calls
        calls += 1
        return calls > steps

    train(EXTREME, emit, should_stop)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--api-seconds", type=float, default=8.0)
    parser.add_argument("--skip-storage", action="store_true", help="leave out 5 (about two minutes)")
    parser.add_argument("--only-storage", action="store_true", help="5 alone")
    parser.add_argument("--only-memory", action="store_true", help="6 alone")
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "DEEPSCOPE_DATA_DIR": tempfile.mkdtemp(), "DEEPSCOPE_WORKERS": "2"}
    t0 = time.monotonic()
    server = subprocess.Popen([sys.executable, "-m", "deepscope.app.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    try:
        healthy = None
        for _ in range(6000):
            try:
                h = httpx.get(base + "/healthz", timeout=1).json()
                healthy = healthy or time.monotonic() - t0
                if h["executor"]["ready"] == h["executor"]["workers"]:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        print(f"0. deepscope serve -> /healthz answers in {healthy:.2f} s; both workers warm after "
              f"{time.monotonic() - t0:.2f} s (runs submitted before then wait queued)")
        args.server_pid = server.pid
        asyncio.run(main_async(args, base, ws_base))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
