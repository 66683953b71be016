"""Durable runs and events (SQLAlchemy Core): SQLite in WAL mode by default, PostgreSQL by URL.

Events arrive far faster than one transaction each could take, so ``EventWriter`` batches them on
its own thread; ``flush()`` is a barrier that returns once everything enqueued before it is
committed, which is what lets a WebSocket replay the store and then go live with no gap.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine

from deepscope.app.statuses import ACTIVE_STATUSES, INTERRUPTED
from deepscope.engine.events import Status

SHAREABLE = (*sorted(ACTIVE_STATUSES), Status.COMPLETED.value, Status.DIVERGED.value)  # trainings another request may watch
MIRRORED = ("status", "started_at", "finished_at", "summary", "error", "progress")

metadata = MetaData()
runs = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(80), nullable=False),
    Column("group_id", String(64), index=True),
    Column("owner", String(64), index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", String(40), nullable=False),
    Column("started_at", String(40)),
    Column("finished_at", String(40)),
    Column("progress", Float, nullable=False, default=0.0),
    Column("config", Text, nullable=False),
    Column("summary", Text, nullable=False, default="{}"),
    Column("error", Text),
    Column("seq", Integer, nullable=False, default=-1),  # the last event's seq
    # Shared runs (docs/workshop.md): a run with shared_from trains nothing; it shows the events of that
    # run. share_key identifies identical trainings; share_seq ends a share that was cancelled at that seq.
    Column("shared_from", String(32), index=True),
    Column("share_key", String(64), index=True),
    Column("share_seq", Integer),
    Column("address", String(64), index=True),  # where the request came from: a per-address cap
)
ADDED_COLUMNS = {"shared_from": "VARCHAR(32)", "share_key": "VARCHAR(64)", "share_seq": "INTEGER",
                 "address": "VARCHAR(64)"}
events = Table(
    "events", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("step", Integer),
    Column("data", Text, nullable=False),
)
Index("events_run_type", events.c.run_id, events.c.type)


def mirror(source: dict[str, Any]) -> dict[str, Any]:
    """What a share copies of its training when it starts watching, or when the training finishes."""
    return {"shared_from": source["id"], "status": source["status"], "started_at": source["started_at"],
            "finished_at": source["finished_at"], "progress": source["progress"], "error": source["error"],
            "summary": json.dumps({**source["summary"], "shared_from": source["id"]})}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # WAL: readers never wait for the event writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=10)


def _run_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "group": row.group_id, "owner": row.owner, "status": row.status,
        "created_at": row.created_at, "started_at": row.started_at, "finished_at": row.finished_at,
        "progress": row.progress, "config": json.loads(row.config), "summary": json.loads(row.summary),
        "error": row.error, "last_seq": row.seq, "shared_from": row.shared_from, "share_key": row.share_key,
        "share_seq": row.share_seq,
    }


class QuotaError(Exception):
    """Creating the runs would pass a limit: ``scope`` is "server" or "client"."""

    def __init__(self, scope: str, active: int, limit: int) -> None:
        super().__init__(f"{scope} quota: {active} active, limit {limit}")
        self.scope, self.active, self.limit = scope, active, limit


class Store:
    def __init__(self, url: str) -> None:
        self._create_lock = threading.Lock()
        self.engine = make_engine(url)
        metadata.create_all(self.engine)
        self._add_missing_columns()
        self.writer = EventWriter(self)

    def _add_missing_columns(self) -> None:
        """A database made by an older DeepScope gets the columns added since (nothing is rewritten)."""
        with self.engine.begin() as conn:
            have = {c["name"] for c in inspect(conn).get_columns("runs")}
            for name, sql_type in ADDED_COLUMNS.items():
                if name not in have:
                    conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, name: str, config: dict[str, Any], group: str | None = None,
                   owner: str | None = None) -> dict[str, Any]:
        return self.create_runs([(name, config)], group=group, owner=owner)[0]

    def create_runs(self, specs: list[tuple[str, dict[str, Any]]], group: str | None = None,
                    owner: str | None = None, max_active: int = 0, max_active_per_owner: int = 0,
                    share_keys: list[str | None] | None = None, address: str | None = None,
                    max_active_per_address: int = 0) -> list[dict[str, Any]]:
        """Create queued runs, all or none, after checking the quotas in the same transaction: two requests
        at once cannot both pass a check that only one of them fits (``QuotaError`` says which limit).
        A run with a share key whose training exists (or is being created alongside) shares it: its row
        gets ``shared_from`` and a copy of that training's state; a request at the same moment cannot
        start the same training twice.

        SQLite serialises through a lock here (one service process writes it); PostgreSQL through a
        transaction-scoped advisory lock, which also holds across several app replicas."""
        ids = [uuid.uuid4().hex[:12] for _ in specs]
        with self._create_lock, self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243)")
            keys = share_keys or [None] * len(specs)
            extra: list[dict[str, Any]] = []
            for i, key in enumerate(keys):
                twin = next((j for j in range(i) if key and keys[j] == key), None)  # the same run twice
                row = self._shareable(conn, key) if key and twin is None else None
                source = _run_dict(row) if row is not None else None
                if source is not None:
                    extra.append({"share_key": key, **mirror(source)})
                elif twin is not None:
                    extra.append({"share_key": key, "shared_from": ids[twin], "status": Status.QUEUED.value})
                else:
                    extra.append({"share_key": key})
            if max_active:
                active = self._count_active(conn, None)
                if active + len(specs) > max_active:
                    raise QuotaError("server", active, max_active)
            if max_active_per_owner and owner is not None:
                mine = self._count_active(conn, owner)
                if mine + len(specs) > max_active_per_owner:
                    raise QuotaError("client", mine, max_active_per_owner)
            trainings = sum(1 for e in extra if not e.get("shared_from"))
            if max_active_per_address and address is not None and trainings:
                here = self._count_active(conn, None, address)
                if here + trainings > max_active_per_address:
                    raise QuotaError("address", here, max_active_per_address)
            now = now_iso()
            conn.execute(insert(runs), [
                {"id": run_id, "name": name, "group_id": group, "owner": owner, "address": address,
                 "status": Status.QUEUED.value,
                 "created_at": now, "progress": 0.0, "config": json.dumps(config), "summary": "{}", "seq": -1,
                 **extra[i]}
                for i, (run_id, (name, config)) in enumerate(zip(ids, specs, strict=True))])
        return [self.get_run(run_id) for run_id in ids]  # type: ignore[misc]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        return _run_dict(row) if row else None

    def list_runs(self, status: str | None = None, group: str | None = None, owner: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        q = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        if status:
            q = q.where(runs.c.status == status)
        if group:
            q = q.where(runs.c.group_id == group)
        if owner:
            q = q.where(runs.c.owner == owner)
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q)]

    def count_active(self, owner: str | None = None) -> int:
        with self.engine.connect() as conn:
            return self._count_active(conn, owner)

    @staticmethod
    def _count_active(conn: Any, owner: str | None, address: str | None = None) -> int:
        """Active runs of one owner (shares included: to a student they are runs), or trainings on the whole
        server or from one address (shares left out: they take no worker)."""
        q = select(func.count()).select_from(runs).where(runs.c.status.in_(ACTIVE_STATUSES))
        if owner is not None:
            q = q.where(runs.c.owner == owner)
        else:
            q = q.where(runs.c.shared_from.is_(None))
            if address is not None:
                q = q.where(runs.c.address == address)
        return int(conn.execute(q).scalar_one())

    @staticmethod
    def _shareable(conn: Any, key: str) -> Any:
        """The newest run that trains (or trained) this exact config and can be watched again."""
        q = (select(runs).where(runs.c.share_key == key, runs.c.shared_from.is_(None),
                                runs.c.status.in_(SHAREABLE)).order_by(runs.c.created_at.desc()).limit(1))
        return conn.execute(q).first()

    def shares_of(self, run_id: str, attached_only: bool = False) -> list[dict[str, Any]]:
        q = select(runs).where(runs.c.shared_from == run_id)
        if attached_only:
            q = q.where(runs.c.share_seq.is_(None))
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q)]

    def delete_events(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(events).where(events.c.run_id == run_id))

    @staticmethod
    def mirror_to_shares(conn: Any, run_id: str, fields: dict[str, Any]) -> None:
        """Mirror a run's new state onto the attached runs that share it (the writer calls this in the
        transaction that stores the run's own new state)."""
        mirrored = {k: v for k, v in fields.items() if k in MIRRORED}
        if "summary" in mirrored:
            summary = mirrored["summary"] if isinstance(mirrored["summary"], dict) else json.loads(mirrored["summary"])
            mirrored["summary"] = json.dumps({**summary, "shared_from": run_id})
        if mirrored:
            conn.execute(update(runs).where(runs.c.shared_from == run_id, runs.c.share_seq.is_(None))
                         .values(**mirrored))

    def update_run(self, run_id: str, **fields: Any) -> None:
        for key in ("summary", "config"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**fields))

    def delete_run(self, run_id: str, keep_events: bool = False) -> None:
        with self.engine.begin() as conn:
            if not keep_events:
                conn.execute(delete(events).where(events.c.run_id == run_id))
            conn.execute(delete(runs).where(runs.c.id == run_id))

    def mark_interrupted(self) -> list[str]:
        """Runs that were queued or running when the service stopped: they will never finish now."""
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(select(runs.c.id).where(runs.c.status.in_(ACTIVE_STATUSES)))]
            if ids:
                conn.execute(update(runs).where(runs.c.id.in_(ids)).values(
                    status=INTERRUPTED, finished_at=now_iso(),
                    error="the service stopped while this run was queued or running"))
        return ids

    # -- events -----------------------------------------------------------------------------
    def insert_ignoring_duplicates(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        # Idempotent by (run_id, seq): a replayed stream or a second app replica writes nothing twice.
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # pragma: no cover - only the two dialects above are supported
            conn.execute(insert(events), rows)
            return
        conn.execute(dialect_insert(events).on_conflict_do_nothing(index_elements=["run_id", "seq"]), rows)

    def events(self, run_id: str, after: int = -1, limit: int = 1000,
               types: tuple[str, ...] | None = None) -> list[tuple[int, str, str]]:
        """(seq, type, json) of the events after ``after``, in seq order."""
        q = (select(events.c.seq, events.c.type, events.c.data)
             .where(events.c.run_id == run_id, events.c.seq > after).order_by(events.c.seq).limit(limit))
        if types:
            q = q.where(events.c.type.in_(types))
        with self.engine.connect() as conn:
            return [(r.seq, r.type, r.data) for r in conn.execute(q)]


class EventWriter:
    """Batches event rows and run updates into one transaction every ``interval`` seconds at most."""

    def __init__(self, store: Store, interval: float = 0.05, max_batch: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="deepscope-event-writer", daemon=True)
        self._stopping = False
        self._thread.start()

    def add_event(self, run_id: str, seq: int, type_: str, step: int | None, data: str) -> None:
        self._queue.put(("event", {"run_id": run_id, "seq": seq, "type": type_, "step": step, "data": data}))

    def update_run(self, run_id: str, **fields: Any) -> None:
        self._queue.put(("run", (run_id, fields)))

    def flush(self, timeout: float = 10.0) -> bool:
        done = threading.Event()
        self._queue.put(("barrier", done))
        return done.wait(timeout)

    def stop(self) -> None:
        if not self._stopping:
            self.flush()
            self._stopping = True
            self._queue.put(("stop", None))
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            kind, item = self._queue.get()
            batch_events, batch_runs, barriers, stop = [], {}, [], False
            deadline = time.monotonic() + self.interval
            while True:
                if kind == "event":
                    batch_events.append(item)
                elif kind == "run":
                    batch_runs.setdefault(item[0], {}).update(item[1])
                elif kind == "barrier":
                    barriers.append(item)
                else:
                    stop = True
                if barriers or stop or len(batch_events) >= self.max_batch:
                    break
                try:
                    kind, item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            self._commit(batch_events, batch_runs)
            for b in barriers:
                b.set()
            if stop:
                return

    def _commit(self, batch_events: list[dict[str, Any]], batch_runs: dict[str, dict[str, Any]]) -> None:
        if not batch_events and not batch_runs:
            return
        for attempt in range(5):
            try:
                with self.store.engine.begin() as conn:
                    if batch_events:
                        self.store.insert_ignoring_duplicates(conn, batch_events)
                    for run_id, fields in batch_runs.items():
                        if "status" in fields:  # the runs that share this one follow its status
                            self.store.mirror_to_shares(conn, run_id, fields)
                        if "summary" in fields and not isinstance(fields["summary"], str):
                            fields["summary"] = json.dumps(fields["summary"])
                        conn.execute(update(runs).where(runs.c.id == run_id).values(**fields))
                return
            except Exception:  # a locked or briefly unreachable database: retry, never drop events
                if attempt == 4:
                    import logging
                    logging.getLogger("deepscope.store").exception("could not store %d events", len(batch_events))
                    return
                time.sleep(0.2 * (attempt + 1))
