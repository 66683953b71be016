"""Faults injected into a PostgreSQL of the test's own (devtools/own_backends.py), stopped mid-run:
nothing the service accepted is lost, the service says it is unavailable (503, never 500), and it
answers again when the database does."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from deepscope.app.settings import Settings
from devtools.own_backends import OwnPostgres
from devtools.server import LiveServer, wait_for

LONG = {"name": "through an outage", "train": {"epochs": 60, "fresh": True}, "telemetry": {"captures": 100}}


@pytest.fixture
def postgres():
    with OwnPostgres() as pg:
        yield pg


def contiguous(client: httpx.Client, run_id: str) -> list[dict]:
    events, after = [], -1
    while page := client.get(f"/api/runs/{run_id}/events", params={"after": after, "limit": 1000}).json()["data"]:
        events += page
        after = page[-1]["seq"]
    return events


def test_a_database_outage_mid_run_loses_nothing_and_answers_503(tmp_path, postgres):
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres.url, workers=1)
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        run = c.post("/api/runs", json=LONG).json()
        wait_for(c, run["id"], statuses={"running"})
        time.sleep(1.5)
        postgres.stop()
        try:
            health = c.get("/healthz")
            assert health.status_code == 503 and health.json()["database"].startswith("unreachable")
            assert health.headers["retry-after"]
            assert c.get("/livez").status_code == 200  # the process is alive: nothing to restart
            for answer in (c.get("/api/runs"), c.get(f"/api/runs/{run['id']}/events"),
                           c.post("/api/runs", json={"train": {"epochs": 1}})):
                assert answer.status_code == 503 and "unreachable" in answer.json()["detail"], answer.text
                assert answer.headers["retry-after"] == "5"
            time.sleep(4)  # the run trains on, its events held by the writer
        finally:
            postgres.start()
        done = wait_for(c, run["id"], timeout=120)
        assert done["status"] == "completed"
        deadline = time.monotonic() + 30  # the writer stores what it held once the database is back
        while (events := contiguous(c, run["id"]))[-1]["type"] != "status" and time.monotonic() < deadline:
            time.sleep(0.2)
        done = c.get(f"/api/runs/{run['id']}").json()
        assert [e["seq"] for e in events] == list(range(len(events)))  # no hole where the database was away
        assert events[-1]["type"] == "status" and events[-1]["status"] == "completed"
        assert done["status"] == "completed" and done["summary"]["val_acc"] is not None
        assert c.get("/healthz").status_code == 200


def test_stopping_while_the_database_is_away_keeps_the_events_for_the_next_start(tmp_path, postgres):
    """The writer cannot store what it holds: on stop it spills them to the data dir, and the next start
    stores them."""
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres.url, workers=1)
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        run = c.post("/api/runs", json=LONG).json()
        wait_for(c, run["id"], statuses={"running"})
        time.sleep(1.0)
        postgres.stop()
        time.sleep(2.0)  # events arrive that nothing can store
    spilled = list((tmp_path / "data" / "spill").glob("*.json"))
    assert spilled, "nothing was spilled"
    postgres.start()
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert not list((tmp_path / "data" / "spill").glob("*.json"))
        events = contiguous(c, run["id"])
        assert [e["seq"] for e in events] == list(range(len(events))) and len(events) > 5
        # the run trained on while the service stopped: completed if its last event was kept, else interrupted
        finished = events[-1]["type"] == "status" and events[-1]["status"] == "completed"
        assert c.get(f"/api/runs/{run['id']}").json()["status"] == ("completed" if finished else "interrupted")


def test_a_submit_while_redis_is_away_is_a_503_and_leaves_no_run_queued(tmp_path):
    """Scale-out: the row is written before Redis is reached. With Redis away the answer is 503, and the
    row ends failed, saying so, instead of waiting queued forever against the student's quota."""
    from devtools.backends import drop_schema, pg_schema_url
    from devtools.own_backends import OwnRedis

    schema, url = pg_schema_url()
    try:
        with OwnRedis() as redis_server:
            settings = Settings(data_dir=tmp_path / "data", database_url=url, executor="celery",
                                redis_url=redis_server.url, token="class")
            with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30,
                                                               headers={"Authorization": "Bearer class"}) as c:
                redis_server.stop()
                answer = c.post("/api/runs", json={"train": {"epochs": 1}})
                assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
                runs = c.get("/api/runs").json()["data"]
                assert [r["status"] for r in runs] == ["failed"] and "could not be queued" in runs[0]["error"]
                assert server.service.count_active(server.service.store.get_run(runs[0]["id"])["owner"]) == 0
    finally:
        drop_schema(schema)


def test_a_redis_restart_without_persistence_leaves_no_run_stuck(tmp_path, monkeypatch):
    """Scale-out, a Redis of the test's own restarted empty while one run trains and one waits: the
    training goes on (its worker holds its events through the outage and registers the run again), the
    waiting run is queued again or started by the worker that held it, both complete once, and what was
    lost with Redis (events it held that were not stored yet) is named in the replay, not hidden."""
    from deepscope.app import reconciler
    from devtools.backends import Worker, drop_schema, pg_schema_url
    from devtools.own_backends import OwnRedis

    monkeypatch.setattr(reconciler, "GRACE_S", 3.0)
    monkeypatch.setattr(reconciler, "EVERY_S", 1.0)
    schema, url = pg_schema_url()
    try:
        with OwnRedis() as redis_server:
            worker = Worker(tmp_path / "data", redis_url=redis_server.url).wait_ready()
            try:
                settings = Settings(data_dir=tmp_path / "data", database_url=url, executor="celery",
                                    redis_url=redis_server.url, replica_id="fault-app")
                with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as c:
                    training = c.post("/api/runs", json={**LONG, "train": {"epochs": 40, "fresh": True}}).json()
                    wait_for(c, training["id"], statuses=("running",), timeout=60)
                    waiting = c.post("/api/runs", json={"name": "waits", "train": {"epochs": 2, "fresh": True}}).json()
                    time.sleep(1.0)
                    redis_server.stop()
                    time.sleep(4.0)
                    redis_server.start()
                    for run in (training, waiting):
                        end = wait_for(c, run["id"], timeout=120)
                        assert end["status"] == "completed", (run["name"], end.get("error"), "".join(worker.log[-30:]))
                        events = contiguous(c, run["id"])
                        assert events[-1]["type"] == "status" and events[-1]["status"] == "completed"
                        assert sum(e["type"] == "status" and e["status"] == "running" for e in events) == 1
                        seqs = [e["seq"] for e in events]
                        said = server.service.missing(run["id"])
                        held = set(seqs)
                        assert [s for lo, hi in said for s in range(lo, hi + 1)] == \
                            [s for s in range(seqs[-1]) if s not in held]
            finally:
                worker.stop()
    finally:
        drop_schema(schema)


class _ForgetfulExecutor:
    """An executor whose queue forgot every run (a Redis restarted empty), recording what it is asked."""

    interrupts_on_restart = False

    def __init__(self, service_events):
        self.submitted, self.ended, self.on_event = [], [], service_events

    def replay_after(self, run_id, seq):
        return []

    def unowned(self, run_ids):
        return set(run_ids)

    def submit(self, run_id, config, owner=None):
        self.submitted.append(run_id)

    def end_unowned(self, run_id, event):
        self.ended.append(event)
        self.on_event(run_id, event, orjson.dumps(event).decode())


def test_the_reconciler_requeues_what_never_started_and_ends_what_no_worker_holds(tmp_path):
    """After GRACE_S unowned, a queued run without events is queued again; a started run ends failed, after
    its last stored event; a run that is owned again within the grace, or a share, is left alone."""
    from deepscope.app.hub import Hub
    from deepscope.app.reconciler import GRACE_S
    from deepscope.app.service import RunService
    from deepscope.app.store import Store

    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    service = RunService(store, Hub(), None)
    executor = service.executor = _ForgetfulExecutor(service.on_event)
    waiting, started = store.create_run("waiting", {})["id"], store.create_run("started", {})["id"]
    running = {"seq": 0, "type": "status", "status": "running", "message": "training", "summary": {}}
    service.on_event(started, running, orjson.dumps(running).decode())
    service.flush()
    assert service.reconciler.once(now=100.0) == {"requeued": [], "ended": []}  # first seen unowned: the grace starts
    assert service.reconciler.once(now=100.0 + GRACE_S / 2) == {"requeued": [], "ended": []}
    assert service.reconciler.once(now=100.0 + GRACE_S) == {"requeued": [waiting], "ended": [started]}
    assert executor.submitted == [waiting]
    service.flush()
    ended = store.get_run(started)
    assert ended["status"] == "failed" and "no worker holds this run" in ended["error"] and ended["last_seq"] == 1
    executor.unowned = lambda ids: set()  # owned again: the clock for the queued one starts afresh
    assert service.reconciler.once(now=200.0) == {"requeued": [], "ended": []}
    service.close()
    store.close()


def test_a_full_disk_answers_507_stops_the_trainings_and_loses_nothing_accepted(tmp_path):
    """SQLite on a full disk (its page count capped, as a full disk makes it fail: SQLITE_FULL): a submit is
    a 507 naming the cause, the training in flight stops, and the events it sent wait in the service;
    once the disk has room every one of them is stored, ending with the run's stop."""
    from sqlalchemy import event, text

    with LiveServer(Settings(data_dir=tmp_path / "data", workers=1)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as c:
        engine = server.service.store.engine
        run = c.post("/api/runs", json={"name": "fills the disk", "train": {"epochs": 400, "fresh": True}}).json()
        wait_for(c, run["id"], statuses=("running",), timeout=60)
        waiting = c.post("/api/runs", json={"name": "queued behind it", "train": {"epochs": 400, "fresh": True}}).json()
        with engine.connect() as conn:
            pages = conn.execute(text("PRAGMA page_count")).scalar()
        room = {"pages": pages + 2}  # what is on disk now, and hardly more

        @event.listens_for(engine, "connect")
        def cap(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA max_page_count = {room['pages']}")

        engine.dispose()  # every connection from now on has the cap
        deadline = time.monotonic() + 60
        while not server.service.log.disk_full:
            assert time.monotonic() < deadline, "the writer never found the disk full"
            time.sleep(0.2)
        refused = c.post("/api/runs", json={"name": "no room"})
        assert refused.status_code == 507 and "disk is full" in refused.json()["detail"], refused.text
        time.sleep(2)  # the training stops; its last events wait in the writer
        room["pages"] = 10**9
        engine.dispose()  # room again
        ended = wait_for(c, run["id"], timeout=60)
        assert ended["status"] == "cancelled", ended
        assert wait_for(c, waiting["id"], timeout=60)["status"] == "cancelled"  # stopped before it started
        events = contiguous(c, run["id"])
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "status" and events[-1]["status"] == "cancelled"
        assert c.post("/api/runs", json={"name": "room again", "train": {"epochs": 1}}).status_code == 201


def test_a_full_disk_is_recognised_in_each_form_the_databases_give_it():
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from deepscope.app.disk import is_disk_full

    class PgError(Exception):
        sqlstate = "53100"

    sqlite_full = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(sqlite_full)
    assert is_disk_full(OperationalError("INSERT ...", {}, PgError("could not write block")))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")))
    assert not is_disk_full(None)
