"""The store on both SQLite (a real file, WAL) and PostgreSQL (the real server on 127.0.0.1)."""

import json

import pytest

from deepscope.app.event_log import EventWriter
from deepscope.app.store import Store


@pytest.fixture
def store(any_store):
    return any_store


def test_runs_round_trip_and_list_newest_first(store):
    a = store.create_run("a", {"x": 1}, group="g", owner="alice")
    b = store.create_run("b", {"x": 2}, group="g", owner="bob")
    assert store.get_run(a["id"])["config"] == {"x": 1}
    assert [r["id"] for r in store.list_runs()] == [b["id"], a["id"]]
    assert [r["id"] for r in store.list_runs(owner="alice")] == [a["id"]]
    assert store.count_active() == 2 and store.count_active("bob") == 1
    store.update_run(a["id"], status="completed", summary={"val_acc": 0.9})
    assert store.get_run(a["id"])["summary"] == {"val_acc": 0.9}
    assert [r["id"] for r in store.list_runs(status="completed")] == [a["id"]]


def test_events_batched_idempotent_in_order_and_deleted_with_the_run(store):
    run = store.create_run("r", {})
    writer = EventWriter(store)
    for seq in (2, 0, 1, 1, 3):  # out of order and one duplicate: stored once each, read in order
        writer.add_event(run["id"], seq, "step", seq, json.dumps({"seq": seq}))
    writer.update_run(run["id"], status="running", progress=0.5)
    assert writer.flush()
    writer.stop()
    assert [r[0] for r in store.events(run["id"])] == [0, 1, 2, 3]
    assert [r[0] for r in store.events(run["id"], after=1, limit=1)] == [2]
    assert store.get_run(run["id"])["status"] == "running"
    store.delete_run(run["id"])
    assert store.get_run(run["id"]) is None and store.events(run["id"]) == []


def test_runs_in_flight_are_marked_interrupted(store):
    queued = store.create_run("q", {})
    running = store.create_run("r", {})
    done = store.create_run("d", {})
    store.update_run(running["id"], status="running")
    store.update_run(done["id"], status="completed")
    assert sorted(store.mark_interrupted()) == sorted([queued["id"], running["id"]])
    assert store.get_run(running["id"])["status"] == "interrupted"
    assert store.get_run(done["id"])["status"] == "completed"


def test_sqlite_is_a_real_file_in_wal_mode(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()
    assert (tmp_path / "x.db").exists()


def test_creations_at_once_are_written_in_turn_each_deciding_on_those_before_it(store):
    """Sixty presses at once: requests that wait for the one being written are written together after it,
    in one transaction, each ``decide`` seeing the rows of those before it. A refused one writes nothing
    and leaves the others; every accepted one comes back with its rows."""
    import threading

    from deepscope.app.quotas import QuotaExceeded

    def decide(tx, ids):
        if tx.active_runs("alice") + len(ids) > 5:
            raise QuotaExceeded("alice may have at most 5")
        return [{} for _ in ids]

    results, gate = [], threading.Barrier(24)

    def press(i):
        gate.wait()
        try:
            results.append(("ok", store.create_runs([(f"r{i}", {"i": i})], owner="alice", decide=decide)))
        except QuotaExceeded as exc:
            results.append(("refused", str(exc)))

    threads = [threading.Thread(target=press, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    accepted = [r for kind, r in results if kind == "ok"]
    assert len(results) == 24 and len(accepted) == 5
    assert {r[0]["id"] for r in accepted} == {r["id"] for r in store.list_runs(owner="alice")}
    assert all(r[0]["status"] == "queued" and r[0]["owner"] == "alice" for r in accepted)
