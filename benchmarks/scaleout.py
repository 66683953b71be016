"""Scale-out figures against the real Redis and PostgreSQL, measured side by side in one run:

    python benchmarks/scaleout.py [--runs 12]

1. Runs per minute with one Celery worker, then two (each `deepscope worker --concurrency 1`), for the
   same batch of short runs, through one app (`deepscope serve`, celery executor, PostgreSQL store).
2. Events per second one app instance relays (persists through the consumer group and publishes):
   synthetic step events written straight into the streams of queued runs, as fast as Redis takes them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import httpx
import orjson
import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from deepscope.app.executors import redis_keys as K  # noqa: E402
from devtools.backends import REDIS_URL, Worker, drop_schema, flush_redis, pg_schema_url  # noqa: E402
from devtools.server import free_port  # noqa: E402

RUN = {"model": {"depth": 10, "width": 64}, "train": {"epochs": 30, "fresh": True}}  # about 1.5 s of training each


def serve(db_url: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DEEPSCOPE_EXECUTOR": "celery", "DEEPSCOPE_REDIS_URL": REDIS_URL,
           "DEEPSCOPE_DATABASE_URL": db_url, "DEEPSCOPE_DATA_DIR": data_dir, "DEEPSCOPE_MAX_QUEUED": "100000"}
    proc = subprocess.Popen([sys.executable, "-m", "deepscope.app.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("app did not start")


def runs_per_minute(base: str, n: int) -> float:
    with httpx.Client(base_url=base, timeout=30) as c:
        t0 = time.monotonic()
        ids = [c.post("/api/runs", json=RUN).json()["id"] for _ in range(n)]
        pending = set(ids)
        while pending:  # one light poll a quarter second: the client shares the cores it measures
            for run in c.get("/api/runs", params={"limit": n + 5}).json()["data"]:
                if run["status"] not in ("queued", "running"):
                    pending.discard(run["id"])
            time.sleep(0.25)
        return n / (time.monotonic() - t0) * 60


def relay_rate(base: str, n_runs: int = 4, per_run: int = 5000) -> tuple[float, float]:
    r = redis.Redis.from_url(REDIS_URL)
    with httpx.Client(base_url=base, timeout=30) as c:
        ids = [c.post("/api/runs", json=RUN).json()["id"] for _ in range(n_runs)]
        before = c.get("/healthz").json()["executor"]
        t0 = time.monotonic()
        for run_id in ids:
            pipe = r.pipeline(transaction=False)
            for seq in range(per_run):
                event = {"seq": seq, "type": "step", "step": seq, "epoch": 0, "loss": 1.0 / (seq + 1),
                         "acc": 0.5, "progress": seq / per_run, "t": 0.0, "ts": time.time()}
                pipe.xadd(K.stream(run_id), {b"e": orjson.dumps(event)})
            pipe.execute()
        total = n_runs * per_run
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = c.get("/healthz").json()["executor"]
            if now["persisted"] - before["persisted"] >= total and now["published"] - before["published"] >= total:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the app relayed {now['persisted'] - before['persisted']} of {total} events in 120 s")
        elapsed = time.monotonic() - t0
        for run_id in ids:
            r.srem(K.ACTIVE, run_id)
        return total / elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    flush_redis()
    schema, db_url = pg_schema_url()
    data = tempfile.mkdtemp()
    app, base = serve(db_url, data)
    workers: list[Worker] = []
    try:
        rates = {}
        for n in (1, 2):
            while len(workers) < n:
                workers.append(Worker(data).wait_ready())
            runs_per_minute(base, 2)  # warm: first task in a fresh child imports what it needs
            rates[n] = runs_per_minute(base, args.runs)
            print(f"1. {n} worker(s): {rates[n]:.0f} runs/min ({args.runs} runs of {RUN})", flush=True)
        print(f"   two workers / one: {rates[2] / rates[1]:.2f}x (the app, Redis and PostgreSQL share the same "
              f"{os.cpu_count()} cores)")
        for w in workers:
            w.stop()
        workers.clear()
        rate, elapsed = relay_rate(base)
        print(f"2. one app instance relays {rate:.0f} events/s (20000 step events persisted and published "
              f"in {elapsed:.1f} s)")
    finally:
        for w in workers:
            w.stop()
        app.terminate()
        app.wait(timeout=30)
        drop_schema(schema)
        flush_redis()


if __name__ == "__main__":
    main()
