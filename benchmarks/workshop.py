"""A class on one box: N students on loopback, side by side for N = 10, 30, 60, on the local executor
and on Celery with 2 workers, then a mixed class:

    python benchmarks/workshop.py [--students 10 30 60] [--executor local celery] [--mixed 60] [--only-mixed]
                                  [--looks both|on|off]

Each student, at once with the others: loads what the page loads (the page, /api/options,
/api/presets), runs the same lesson (its runs are shared: one training for the class) and watches its
first run on the WebSocket to the end, then submits one run of their own (its own seed: a real
training) and watches it too. Printed per N: time to the first loss point (p50, p95) for the lesson
and for the own run, time to completion, trainings vs runs requested, events lost (a stream that
skips or repeats a seq, or ends short of the stored events), 429s, and the server's resident memory
(the service and its workers together).

The mixed class (``--mixed N``, local executor): N students at once, the lessons handed out
round-robin over all of them, each student watching every run of its lesson; once they have ended,
one own run each (moons, depth 4-9, width 32, 10 epochs, a seed per student). Printed: the first point
(a loss point or a step-0 capture, first looks included) p50, p95 and max over every run watched;
the class's wall time to its last run's end beside the physical limit (the CPU seconds of its
distinct trainings, from their summaries' ``cpu_s``, over the cores), and what was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import zlib

import httpx
import orjson
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from devtools.backends import REDIS_URL, Worker, drop_schema, flush_redis, pg_schema_url  # noqa: E402
from devtools.server import free_port  # noqa: E402

TOKEN = "class-secret"
LESSON = "zero-init"
SNAPSHOTS = ("layers", "boundary", "samples")
OWN = {"model": {"depth": 4, "width": 32}, "train": {"epochs": 3}}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
        except (OSError, StopIteration):
            pass
    return total


# One TLS context for every simulated browser: httpx makes one per client otherwise, loading the CA bundle
# (30 ms each, though every request here is plain HTTP on loopback), on the cores the class trains on.
TLS = ssl.create_default_context()


def student_client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=120, headers={"Authorization": f"Bearer {TOKEN}"}, verify=TLS)


HEAD = re.compile(rb'^\{"seq":(\d+),"type":"(\w+)"')


def read(message: str | bytes) -> dict:
    """An event as the page receives it (``?encoding=deflate``: events of 1 KB or more come deflated). A
    small one is parsed whole; of a big one (a capture, a boundary) only the head is inflated, for its
    seq and type: the page decodes the rest on the learner's machine, while these simulated browsers
    share the server's cores, where decoding every capture took a third of what the service took."""
    if isinstance(message, str):
        return orjson.loads(message)
    seq, type_ = HEAD.match(zlib.decompressobj().decompress(message, 64)).groups()
    return {"seq": int(seq), "type": type_.decode()}


def stream_url(ws_base: str, run_id: str) -> str:
    return f"{ws_base}/ws/runs/{run_id}?token={TOKEN}&encoding=deflate"


async def watch(ws_base: str, run_id: str, cookie: str, t0: float, stored: int | None = None) -> dict:
    """Stream a run to its end: time to the first step, to the end, and whether every seq came once."""
    first = None
    seqs = []
    async with websockets.connect(stream_url(ws_base, run_id), max_size=None,
                                  additional_headers={"Cookie": cookie}) as ws:
        async for message in ws:
            event = read(message)
            seqs.append(event["seq"])
            if first is None and event["type"] == "step":
                first = time.monotonic() - t0
    return {"first": first, "done": time.monotonic() - t0, "seqs": seqs}


def process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of one process (its threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the forkserver and the workers it forked)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def workers_cpu_s(pid: int) -> float:
    """CPU seconds of the processes below the service (its workers), those that are alive now."""
    total = 0.0
    for p in descendants(pid):
        try:
            total += process_cpu_s(p)
        except OSError:
            pass
    return total


async def stored_events(c: httpx.AsyncClient, run_id: str) -> list[dict]:
    out, after = [], -1
    while page := (await c.get(f"/api/runs/{run_id}/events", params={"after": after})).json()["data"]:
        out.extend(page)
        after = page[-1]["seq"]
    return out


async def submitted(r: httpx.Response, out: dict) -> list[dict]:
    """The runs a submit made (a lesson makes several), counted; none for a 429, counted too."""
    if r.status_code == 429:
        out["429"] += 1
        return []
    r.raise_for_status()
    runs = r.json() if isinstance(r.json(), list) else [r.json()]
    out["requested"] += len(runs)
    return runs


async def student(i: int, base: str, ws_base: str, out: dict) -> None:
    async with student_client(base) as c:
        for path in ("/", "/api/options", "/api/presets"):
            (await c.get(path)).raise_for_status()
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        for kind, make in (("lesson", lambda: c.post(f"/api/presets/{LESSON}/runs")),
                           ("own", lambda: c.post("/api/runs", json={**OWN, "train": {**OWN["train"], "seed": 1000 + i}}))):
            t0 = time.monotonic()
            runs = await submitted(await make(), out)
            if not runs:
                continue
            seen = await watch(ws_base, runs[0]["id"], cookie, t0)
            for _ in range(100):  # the stream can end before the store has the end (Celery persists apart)
                if (await c.get(f"/api/runs/{runs[0]['id']}")).json()["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.1)
            stored = await stored_events(c, runs[0]["id"])
            # Lost: a step, eval or status event that never came, or a seq twice or out of order. A snapshot
            # (layers, boundary, samples) superseded by a newer one may be skipped by design.
            curves = [e["seq"] for e in stored if e["type"] not in SNAPSHOTS]
            got = set(seen["seqs"])
            out["lost"] += sum(seq not in got for seq in curves)
            out["lost"] += sum(b <= a for a, b in zip(seen["seqs"], seen["seqs"][1:], strict=False))
            out["skipped"] += len(stored) - len(seen["seqs"])
            out[kind].append(seen)


async def class_of(n: int, base: str, ws_base: str, server_pid: int) -> dict:
    out = {"lesson": [], "own": [], "requested": 0, "lost": 0, "skipped": 0, "429": 0, "rss": 0.0}
    stop = asyncio.Event()

    async def sample_rss() -> None:
        while not stop.is_set():
            out["rss"] = max(out["rss"], tree_rss_mb(server_pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(student(i, base, ws_base, out) for i in range(n)))
    stop.set()
    await sampler
    return out


async def watch_first(ws_base: str, run_id: str, cookie: str, t0: float, out: dict, phase: str) -> None:
    """Stream a run to its end; the first point is its first loss point or capture."""
    first, seqs = None, []
    async with websockets.connect(stream_url(ws_base, run_id), max_size=None,
                                  additional_headers={"Cookie": cookie}) as ws:
        async for message in ws:
            event = read(message)
            seqs.append(event["seq"])
            if first is None and event["type"] in ("step", "layers"):
                first = time.monotonic() - t0
    out["first"].append(first if first is not None else float("inf"))
    out[phase].append(out["first"][-1])
    out["delivered"] += len(seqs)
    out["lost"] += sum(b <= a for a, b in zip(seqs, seqs[1:], strict=False))  # twice, or out of order
    out["unfinished"] += 0 if event.get("type") == "status" and event.get("status") not in ("queued", "running") else 1


async def mixed_student(i: int, lesson: str, base: str, ws_base: str, out: dict) -> None:
    async with student_client(base) as c:
        for path in ("/", "/api/options", "/api/presets"):
            (await c.get(path)).raise_for_status()
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        own = {"data": {"dataset": "moons"}, "model": {"depth": 4 + i % 6, "width": 32},
               "train": {"epochs": 10, "seed": 1000 + i}}
        for phase, make in (("lesson", lambda: c.post(f"/api/presets/{lesson}/runs")),
                            ("own", lambda: c.post("/api/runs", json=own))):
            t0 = time.monotonic()
            runs = await submitted(await make(), out)
            await asyncio.gather(*(watch_first(ws_base, run["id"], cookie, t0, out, phase) for run in runs))
            for run in runs:  # its end stored before the next request (the quota counts active runs)
                while (await c.get(f"/api/runs/{run['id']}")).json()["status"] in ("queued", "running"):
                    await asyncio.sleep(0.1)


def run_mixed(n: int, first_looks: bool) -> None:
    env = {**os.environ, "DEEPSCOPE_DATA_DIR": tempfile.mkdtemp(), "DEEPSCOPE_TOKEN": TOKEN,
           "DEEPSCOPE_INSTRUCTOR_TOKEN": "teacher", "DEEPSCOPE_WORKERS": "2",
           "DEEPSCOPE_FIRST_LOOKS": "true" if first_looks else "false"}
    proc, base, ws_base = start_server(env)
    try:
        lessons = [p["id"] for p in httpx.get(base + "/api/presets", headers={"Authorization": f"Bearer {TOKEN}"}).json()]
        out = {"first": [], "lesson": [], "own": [], "delivered": 0, "requested": 0, "lost": 0, "unfinished": 0, "429": 0}
        t0 = time.monotonic()

        async def everyone() -> None:
            await asyncio.gather(*(mixed_student(i, lessons[i % len(lessons)], base, ws_base, out) for i in range(n)))

        cpu_before, own_before, workers_before = process_cpu_s(proc.pid), time.process_time(), workers_cpu_s(proc.pid)
        asyncio.run(everyone())
        wall = time.monotonic() - t0
        service_cpu, students_cpu = process_cpu_s(proc.pid) - cpu_before, time.process_time() - own_before
        workers_cpu = workers_cpu_s(proc.pid) - workers_before
        runs = httpx.get(base + "/api/instructor/runs", params={"limit": 1000},
                         headers={"X-DeepScope-Instructor": "teacher"}).json()["data"]
        distinct = [r for r in runs if "shared_from" not in r["summary"]]
        cpu = sum(r["summary"].get("cpu_s") or 0 for r in distinct)
        limit = cpu / (os.cpu_count() or 1)
        first = out["first"]
        looks = httpx.get(base + "/healthz").json()["executor"].get("first_looks")
        print(f"mixed  {n:3d} first looks {'on ' if first_looks else 'off'} | first point p50 {pct(first, .5):5.2f} s p95 {pct(first, .95):5.2f} s max {max(first):5.2f} s"
              f" over {len(first)} runs watched (lesson runs p95 {pct(out['lesson'], .95):5.2f} s, own runs p95 {pct(out['own'], .95):5.2f} s) | class done {wall:5.1f} s, physical limit {limit:5.1f} s "
              f"({cpu:.0f} CPU s of {len(distinct)} distinct trainings / {os.cpu_count()} cores): ratio "
              f"{wall / limit:.2f}; on the same cores the service took {service_cpu:.0f} CPU s and the {n} simulated browsers "
              f"{students_cpu:.0f} (the service {1e3 * service_cpu / max(out['delivered'], 1):.2f} CPU ms per event delivered to a viewer, {out['delivered']} delivered), and the workers {workers_cpu - cpu:.0f} CPU s besides the trainings' own (setting runs up, first looks between runs): all of it over the cores {(workers_cpu + service_cpu + students_cpu) / (os.cpu_count() or 1):.1f} s | {len(runs)} runs, {looks} first looks | lost {out['lost']}, unfinished streams {out['unfinished']} | "
              f"429s {out['429']}",
              flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def start_server(env: dict) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deepscope.app.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            h = httpx.get(base + "/healthz", timeout=1).json()["executor"]
            if h.get("ready", 1) == h.get("workers", 1):
                return proc, base, f"ws://127.0.0.1:{port}"
        except (httpx.HTTPError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def trainings(base: str) -> int:
    runs = httpx.get(base + "/api/instructor/runs", params={"limit": 1000},
                     headers={"X-DeepScope-Instructor": "teacher"}).json()["data"]
    return sum("shared_from" not in r["summary"] for r in runs)


def run_class(executor: str, n: int) -> None:
    env = {**os.environ, "DEEPSCOPE_DATA_DIR": tempfile.mkdtemp(), "DEEPSCOPE_TOKEN": TOKEN,
           "DEEPSCOPE_INSTRUCTOR_TOKEN": "teacher", "DEEPSCOPE_WORKERS": "2"}
    workers, schema = [], None
    if executor == "celery":
        flush_redis()
        schema, url = pg_schema_url()
        env.update(DEEPSCOPE_EXECUTOR="celery", DEEPSCOPE_REDIS_URL=REDIS_URL, DEEPSCOPE_DATABASE_URL=url)
        workers = [Worker(env["DEEPSCOPE_DATA_DIR"]).wait_ready() for _ in range(2)]
    proc, base, ws_base = start_server(env)
    try:
        out = asyncio.run(class_of(n, base, ws_base, proc.pid))
        rss = out["rss"] + sum(tree_rss_mb(w.proc.pid) for w in workers)
        lesson_first = [s["first"] for s in out["lesson"] if s["first"] is not None]
        own_first = [s["first"] for s in out["own"] if s["first"] is not None]
        done = [s["done"] for s in out["own"]]
        print(f"{executor:6} {n:3d} | lesson first point p50 {pct(lesson_first, .5):5.2f} s p95 {pct(lesson_first, .95):5.2f} s"
              f" | own first point p50 {pct(own_first, .5):5.2f} s p95 {pct(own_first, .95):5.2f} s"
              f" | own done p95 {pct(done, .95):5.1f} s | trained {trainings(base):3d} of {out['requested']:3d} runs"
              f" | lost {out['lost']} (snapshots skipped {out['skipped']}) | 429s {out['429']} | RSS {rss:5.0f} MB", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for w in workers:
            w.stop()
        if schema:
            drop_schema(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, nargs="+", default=[10, 30, 60])
    parser.add_argument("--executor", nargs="+", default=["local", "celery"], choices=["local", "celery"])
    parser.add_argument("--mixed", type=int, default=60, help="students of the mixed class (0: none)")
    parser.add_argument("--only-mixed", action="store_true", help="the mixed class alone")
    parser.add_argument("--looks", choices=["both", "on", "off"], default="both",
                        help="the mixed class with first looks, without, or both side by side")
    args = parser.parse_args()
    if not args.only_mixed:
        for executor in args.executor:
            for n in args.students:
                run_class(executor, n)
    if args.mixed:
        for first_looks in (False, True):  # side by side: without, then with a waiting run's step 0
            if args.looks == "both" or (args.looks == "on") == first_looks:
                run_mixed(args.mixed, first_looks)


if __name__ == "__main__":
    main()
