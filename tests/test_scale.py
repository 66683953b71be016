"""Scale-out against the real Redis and PostgreSQL: Celery workers, Redis Streams, a consumer group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import redis
from websockets.sync.client import connect

from deepscope.app.executors import redis_keys as K
from deepscope.app.executors.celery_executor import LIVE_IDLE_MS
from deepscope.app.settings import Settings
from devtools.backends import REDIS_URL, Worker, drop_schema, flush_redis, pg_schema_url
from devtools.server import LiveServer, wait_for

pytestmark = pytest.mark.scale
QUICK = {"model": {"depth": 3, "width": 16}, "train": {"epochs": 3, "fresh": True}}
LONG = {"model": {"depth": 4, "width": 32}, "train": {"epochs": 400, "fresh": True}}


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    flush_redis()
    schema, url = pg_schema_url()
    data = tmp_path_factory.mktemp("data")
    workers = [Worker(data) for _ in range(2)]
    for w in workers:
        w.wait_ready()
    yield {"db": url, "data": data, "workers": workers}
    for w in workers:
        w.stop()
    drop_schema(schema)


def settings(backends, replica_id="test-app", **more) -> Settings:
    return Settings(executor="celery", redis_url=REDIS_URL, database_url=backends["db"], data_dir=backends["data"],
                    replica_id=replica_id, **more)


def stored(client, run_id) -> list[dict]:
    return client.get(f"/api/runs/{run_id}/events").json()["data"]


def assert_whole(events: list[dict]) -> None:
    assert [e["seq"] for e in events] == list(range(len(events))), "a gap or a duplicate"
    assert sum(e["type"] == "status" and e["status"] == "running" for e in events) <= 1, "started twice"


def test_two_workers_six_runs_all_complete_and_stream(backends):
    with LiveServer(settings(backends, instructor_token="teacher")) as live, \
            httpx.Client(base_url=live.url, timeout=30) as c:
        runs = [c.post("/api/runs", json=QUICK).json() for _ in range(6)]
        streamed = {}
        for run in runs:
            with connect(f"{live.ws_url}/ws/runs/{run['id']}", open_timeout=10) as ws:
                events = []
                while not (events and events[-1]["type"] == "status" and events[-1]["status"] != "running"):
                    events.append(json.loads(ws.recv(timeout=60)))
                streamed[run["id"]] = events
        for run in runs:
            done = wait_for(c, run["id"], timeout=60)
            assert done["status"] == "completed", done
            events = stored(c, run["id"])
            assert_whole(events)
            assert streamed[run["id"]][-1]["status"] == "completed"
            assert {e["seq"] for e in streamed[run["id"]]} <= {e["seq"] for e in events}
        r = redis.Redis.from_url(REDIS_URL)
        assert not r.smembers(K.ACTIVE)  # every stream was persisted to the end
        # Both workers took part, and the instructor sees both connected, taking the runs queue.
        hosts = {r.get(K.claim(run["id"])).split(b"|")[0] for run in runs}
        assert len(hosts) == 2, hosts
        workers = c.get("/api/instructor/workers", headers={"X-DeepScope-Instructor": "teacher"}).json()["data"]
        assert len(workers) == 2 and all("runs" in w["queues"] for w in workers), workers


def test_cancel_queued_and_running(backends):
    with LiveServer(settings(backends)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        a, b, q = (c.post("/api/runs", json=LONG).json() for _ in range(3))
        wait_for(c, a["id"], statuses=("running",))
        wait_for(c, b["id"], statuses=("running",))
        assert c.get(f"/api/runs/{q['id']}").json()["status"] == "queued"
        for run in (q, a, b):
            assert c.post(f"/api/runs/{run['id']}/cancel").status_code == 202
        for run in (q, a, b):
            assert wait_for(c, run["id"], timeout=30)["status"] == "cancelled"
            assert_whole(stored(c, run["id"]))
        assert [e["status"] for e in stored(c, q["id"])] == ["cancelled"]


def test_cuda_runs_go_to_the_gpu_queue(backends):
    r = redis.Redis.from_url(REDIS_URL)
    with LiveServer(settings(backends)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        run = c.post("/api/runs", json={**QUICK, "train": {"device": "cuda", "epochs": 1}}).json()
        time.sleep(1.0)
        queued = c.get(f"/api/runs/{run['id']}").json()
        assert r.llen("gpu") == 1 and queued["status"] == "queued"
        assert "no" in queued["summary"]["notice"] and "--queues gpu" in queued["summary"]["notice"]
        assert c.post(f"/api/runs/{run['id']}/cancel").status_code == 202  # no GPU worker here: cancel it
        assert wait_for(c, run["id"])["status"] == "cancelled"
    r.delete("gpu")


def test_killed_worker_fails_its_run_in_bounded_time_and_never_runs_it_twice(backends):
    r = redis.Redis.from_url(REDIS_URL)
    with LiveServer(settings(backends)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        run = c.post("/api/runs", json=LONG).json()
        wait_for(c, run["id"], statuses=("running",))
        pid = int(r.get(K.heartbeat(run["id"])).decode().rsplit(":", 1)[-1].split("|")[0])
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        failed = wait_for(c, run["id"], timeout=K.HEARTBEAT_TTL_S + 15)
        assert failed["status"] == "failed" and "heartbeat" in failed["error"]
        assert time.monotonic() - killed < K.HEARTBEAT_TTL_S + 10
        time.sleep(3)  # long enough for a redelivery to have started it again, if there were one
        events = stored(c, run["id"])
        assert_whole(events)
        assert events[-1]["status"] == "failed"
        after = c.post("/api/runs", json=QUICK).json()
        assert wait_for(c, after["id"], timeout=60)["status"] == "completed"


def test_app_restart_mid_run_loses_no_event(backends):
    s = settings(backends)
    run_cfg = {"model": {"depth": 4, "width": 32}, "train": {"epochs": 150}}
    with LiveServer(s) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        run = c.post("/api/runs", json=run_cfg).json()
        wait_for(c, run["id"], statuses=("running",))
        time.sleep(0.5)
    time.sleep(1.5)  # the run goes on training with no app reading its stream
    with LiveServer(s) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        done = wait_for(c, run["id"], timeout=90)
        assert done["status"] == "completed"
        events = stored(c, run["id"])
        assert_whole(events)
        assert events[-1]["status"] == "completed"
        with connect(f"{live.ws_url}/ws/runs/{run['id']}") as ws:
            replay = []
            while not replay or replay[-1]["type"] != "status" or replay[-1]["status"] == "running":
                replay.append(json.loads(ws.recv(timeout=30)))
        assert [e["seq"] for e in replay] == [e["seq"] for e in events]


def test_two_replicas_store_every_event_once(backends):
    a = settings(backends)
    b = settings(backends, replica_id="test-app-2")
    with LiveServer(a) as one, LiveServer(b) as two, httpx.Client(base_url=one.url, timeout=30) as c1, \
            httpx.Client(base_url=two.url, timeout=30) as c2:
        runs = [c1.post("/api/runs", json=QUICK).json() for _ in range(3)]
        for run in runs:
            wait_for(c2, run["id"], timeout=60)
        for run in runs:
            events = stored(c2, run["id"])
            assert_whole(events)
            assert events[-1]["status"] == "completed"
        stats = [one.service.executor.stats()["persisted"], two.service.executor.stats()["persisted"]]
        total = sum(len(stored(c1, run["id"])) for run in runs)
        assert sum(stats) == total, (stats, total)  # each event handled by one replica


def test_one_config_gives_one_result_through_the_cli_the_local_worker_and_celery(backends, tmp_path):
    # The same torch thread setup everywhere (engine/threads.py): the same numbers, to the last digit.
    config = {"data": {"dataset": "digits"}, "model": {"depth": 4, "width": 32, "batchnorm": True, "dropout": 0.2},
              "train": {"epochs": 2, "seed": 7, "fresh": True}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    cli = subprocess.run([sys.executable, "-m", "deepscope.app.cli", "run", str(path)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "DEEPSCOPE_DATA_DIR": str(tmp_path)})
    assert cli.returncode == 0, cli.stderr[-2000:]
    results = {"cli": json.loads(cli.stdout)["summary"]}
    with LiveServer(Settings(data_dir=tmp_path, workers=1)) as local, httpx.Client(base_url=local.url) as c:
        results["local"] = wait_for(c, c.post("/api/runs", json=config).json()["id"])["summary"]
    with LiveServer(settings(backends)) as celery, httpx.Client(base_url=celery.url, timeout=30) as c:
        results["celery"] = wait_for(c, c.post("/api/runs", json=config).json()["id"], timeout=120)["summary"]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert len({tuple(r[k] for k in keys) for r in results.values()}) == 1, results


def test_entries_a_dead_replica_read_are_stored_when_the_run_ends(backends):
    """A replica that dies holding unacknowledged entries of a run that then ends: the replica that stores
    the end claims them at once (the periodic claim needs the run active and 30 s idle) and stores them,
    so the replay has no hole."""
    r = redis.Redis.from_url(REDIS_URL)
    with LiveServer(settings(backends)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        # long enough that the "dead" consumer is silent past LIVE_IDLE_MS when the run ends (150 epochs, about
        # 2 s here, sometimes ended just before: the replica storing the end then took it for alive)
        run = c.post("/api/runs", json=LONG).json()
        wait_for(c, run["id"], statuses=("running",))
        stolen = []
        while not stolen:  # the "dead" replica reads a few entries and never acknowledges them
            got = r.xreadgroup(K.GROUP, "a-replica-that-died", {K.stream(run["id"]): ">"}, count=5, block=1000)
            stolen = [json.loads(fields[b"e"])["seq"] for _, entries in got or [] for _, fields in entries]
        time.sleep(LIVE_IDLE_MS / 1000 + 0.5)
        assert c.get(f"/api/runs/{run['id']}").json()["status"] == "running", "the run ended before the premise held"
        assert wait_for(c, run["id"], timeout=90)["status"] == "completed"
        events = stored(c, run["id"])
        assert_whole(events)
        assert set(stolen) <= {e["seq"] for e in events} and events[-1]["status"] == "completed"
        assert not r.xpending(K.stream(run["id"]), K.GROUP)["pending"]
