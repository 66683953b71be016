"""Storage with a bound: a run's heavy events under its cap (engine/storage.py), what finished runs store,
the storage quotas, retention and ``deepscope gc`` (app/housekeeping.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from deepscope.app import housekeeping
from deepscope.app.cli import main as cli_main
from deepscope.app.event_log import EventWriter
from deepscope.app.settings import Settings
from deepscope.app.store import Store
from deepscope.engine.storage import Lane, StorageCap
from devtools.server import LiveServer, wait_for

EXTREME = {"telemetry": {"every_steps": 1, "budget": 0, "max_per_second": 0}, "train": {"epochs": 8}}
HEAVY = ("layers", "boundary", "samples")


def weigh(events: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e["type"]] = out.get(e["type"], 0) + len(orjson.dumps(e))
    return out


def test_a_capped_run_stays_under_its_cap_and_spreads_what_it_keeps(run_engine):
    free, free_events = run_engine(EXTREME)
    cap = 400_000
    capped, events = run_engine(EXTREME, max_stored_bytes=cap)
    assert free["status"] == capped["status"] == "completed"
    assert sum(weigh(free_events).values()) > 3 * cap  # the cap binds: without it the run stores far more
    assert sum(weigh(events).values()) <= cap
    steps = [e["step"] for e in events if e["type"] == "layers"]
    total = max(e["step"] for e in free_events if e["type"] == "layers") + 1
    assert steps[0] == 0 and steps[-1] == total - 1  # where it started and where it ended
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) <= 2.5 * (total / len(steps))  # spread over the run, not all at its start
    assert len(steps) >= 10
    summary = capped["summary"]
    assert summary["storage_thinned"]["layers"] > 0 and "storage cap (0 MB)" not in summary["storage_note"]
    assert f"kept {len(steps)} of" in summary["storage_note"]
    assert "storage_note" not in free["summary"]


def test_a_run_under_its_cap_is_not_thinned(run_engine):
    free, free_events = run_engine({"train": {"epochs": 2}})
    capped, events = run_engine({"train": {"epochs": 2}}, max_stored_bytes=16_000_000)
    assert [e["step"] for e in events if e["type"] in HEAVY] == [e["step"] for e in free_events if e["type"] in HEAVY]
    assert "storage_note" not in capped["summary"]


@pytest.mark.parametrize("total", [None, 10_000])
def test_a_lane_never_passes_its_budget(total):
    lane = Lane(50_000, total)
    for step in range(10_000):
        if lane.allows(step):
            lane.stored(1_000 + step % 7)  # events of about one size
    assert lane.bytes <= 50_000 and lane.kept >= 40
    assert lane.thinned == 10_000 - lane.kept


def test_no_cap_thins_nothing():
    cap = StorageCap(None, 100)
    assert all(cap["layers"].allows(s) for s in range(100)) and cap.report() == {}


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'deepscope.db'}")
    yield s
    s.close()


def finish(store: Store, run_id: str, nbytes: int, status: str = "completed", type_: str = "step") -> None:
    writer = EventWriter(store)
    for seq in range(4):
        writer.add_event(run_id, seq, type_, seq, "x" * (nbytes // 4))
    writer.update_run(run_id, status=status, finished_at=datetime.now(UTC).isoformat())
    writer.stop()


def test_a_finished_run_counts_what_its_events_store(any_store):
    store = any_store
    run = store.create_run("r", {}, owner="alice")
    assert store.get_run(run["id"])["stored_bytes"] is None
    finish(store, run["id"], 40_000)
    assert store.get_run(run["id"])["stored_bytes"] == 40_000


def test_retention_deletes_only_runs_finished_before_it_and_gc_gives_the_space_back(store, tmp_path):
    old, young, running = (store.create_run(n, {}) for n in ("old", "young", "running"))
    finish(store, old["id"], 4_000_000)
    finish(store, young["id"], 40_000)
    store.update_run(running["id"], status="running")
    in_ten_days = datetime.now(UTC) + timedelta(days=10)
    store.update_run(young["id"], finished_at=(in_ten_days - timedelta(days=1)).isoformat())
    before = store.size_bytes()
    done = housekeeping.gc(store, retention_days=5, now=in_ten_days)
    assert done["expired_runs"] == 1 and store.get_run(old["id"]) is None
    assert store.get_run(young["id"]) and store.get_run(running["id"])
    assert store.events(old["id"]) == [] and len(store.events(young["id"])) == 4
    assert done["bytes_before"] == before and done["bytes_after"] < before - 3_000_000  # VACUUM gave it back


def test_gc_deletes_events_their_runs_left_behind(any_store):
    store = any_store
    run = store.create_run("r", {})
    finish(store, run["id"], 4_000)
    store.delete_run(run["id"], keep_events=True)  # as a stop between the two deletes would leave it
    assert store.events(run["id"])
    assert housekeeping.gc(store, retention_days=0)["orphaned_event_runs"] == 1
    assert store.events(run["id"]) == []


def test_retention_keeps_a_deleted_trainings_events_for_its_younger_share(store):
    training = store.create_run("t", {})
    finish(store, training["id"], 4_000)
    share = store.create_run("s", {})
    store.update_run(share["id"], shared_from=training["id"], status="completed",
                     finished_at=(datetime.now(UTC) + timedelta(days=9)).isoformat())
    housekeeping.gc(store, retention_days=5, now=datetime.now(UTC) + timedelta(days=10))
    assert store.get_run(training["id"]) is None and len(store.events(training["id"])) == 4


def test_deepscope_gc_says_what_it_did(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPSCOPE_DATA_DIR", str(tmp_path))
    from deepscope.app.settings import get_settings

    get_settings.cache_clear()
    try:
        store = Store(f"sqlite:///{tmp_path / 'deepscope.db'}")
        run = store.create_run("r", {})
        finish(store, run["id"], 400_000)
        store.update_run(run["id"], finished_at="2020-01-01T00:00:00+00:00")
        store.close()
        assert cli_main(["gc", "--older-than-days", "30"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "deleted 1 runs finished more than 30 days ago" in out and "MB after" in out
    assert cli_main(["gc", "--older-than-days", "-1"]) == 2
    assert "--older-than-days must be 0 or more" in capsys.readouterr().err


def test_the_storage_quotas_refuse_new_trainings_with_429_naming_the_setting(tmp_path):
    settings = Settings(data_dir=tmp_path, token="class", storage_quota_client_mb=0.02, storage_quota_mb=1000,
                        workers=1)
    small = {"model": {"depth": 2, "width": 8}, "train": {"epochs": 1, "fresh": True}}
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30,
                                                       headers={"Authorization": "Bearer class"}) as c:
        first = c.post("/api/runs", json=small).json()
        assert wait_for(c, first["id"])["status"] == "completed"
        deadline = time.monotonic() + 10  # counted once the writer stored its last event
        while (done := c.get(f"/api/runs/{first['id']}").json())["stored_bytes"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done["stored_bytes"] > 20_000
        refused = c.post("/api/runs", json=small)
        assert refused.status_code == 429 and "storage_quota_client_mb" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "60"
        c.delete(f"/api/runs/{first['id']}")
        assert c.post("/api/runs", json=small).status_code == 201  # deleting gives the quota back


def test_a_finished_runs_heavy_events_are_stored_compressed_and_read_back_as_they_were(any_store, run_engine):
    store = any_store
    _, emitted = run_engine({"train": {"epochs": 2}})
    run = store.create_run("r", {})
    writer = EventWriter(store)
    raw = {e["seq"]: orjson.dumps(e).decode() for e in emitted}
    for e in emitted:
        writer.add_event(run["id"], e["seq"], e["type"], e.get("step"), raw[e["seq"]])
    writer.update_run(run["id"], status="completed")
    writer.stop()
    assert {seq: data for seq, _, data in store.events(run["id"], limit=10_000)} == raw
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT type, length(data), length(packed) FROM events WHERE run_id = "
                                    f"'{run['id']}'").all()
    assert {t for t, size, packed in rows if packed} == {"layers", "boundary"}
    assert all(size == 0 for t, size, packed in rows if packed)
    plain = sum(len(v) for v in raw.values())
    stored = store.get_run(run["id"])["stored_bytes"]
    assert stored == sum(size + (packed or 0) for _, size, packed in rows) and stored < plain / 2.5


def test_gc_compresses_the_finished_runs_an_older_version_stored_as_text(any_store, run_engine):
    store = any_store
    _, emitted = run_engine({"train": {"epochs": 1}})
    run = store.create_run("r", {})
    from sqlalchemy import insert

    from deepscope.app.store import events

    with store.engine.begin() as conn:  # written as DeepScope 0.3 did: text only
        conn.execute(insert(events), [{"run_id": run["id"], "seq": e["seq"], "type": e["type"], "step": e.get("step"),
                                       "data": orjson.dumps(e).decode()} for e in emitted])
    store.update_run(run["id"], status="completed")
    before = store.events(run["id"], limit=10_000)
    assert store.finished_unpacked() == [run["id"]]
    assert housekeeping.gc(store, retention_days=0)["packed_runs"] == 1
    assert store.finished_unpacked() == [] and store.events(run["id"], limit=10_000) == before


def test_a_database_from_before_the_packed_column_gets_it(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (run_id VARCHAR(32) NOT NULL, seq INTEGER NOT NULL, type VARCHAR(16) "
                   "NOT NULL, step INTEGER, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))")
        db.execute("INSERT INTO events VALUES ('old', 0, 'step', 0, '{\"seq\": 0}')")
    store = Store(f"sqlite:///{path}")
    try:
        assert store.events("old") == [(0, "step", '{"seq": 0}')]
    finally:
        store.close()
