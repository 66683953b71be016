"""Durable runs and events (SQLAlchemy Core): SQLite in WAL mode by default, PostgreSQL by URL.

The store keeps rows and runs transactions; what may be created, shared or mirrored is the service's
call (``quotas.py``, ``sharing.py``). Events are written in batches by ``event_log.EventWriter``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
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
from sqlalchemy.exc import SQLAlchemyError

from deepscope.app.packing import PACKED_TYPES, deflated, inflated
from deepscope.app.statuses import ACTIVE_STATUSES, INTERRUPTED
from deepscope.engine.events import Status

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
    Column("source", String(16)),  # "watched": a model trained elsewhere sends its events (deepscope.watch)
    Column("stored_bytes", Integer),  # what its events take, counted when it finishes (the storage quotas)
    Column("left_at", String(40)),  # a training's owner stopped watching it (sharing.owner_leaves)
)
ADDED_COLUMNS = {"shared_from": "VARCHAR(32)", "share_key": "VARCHAR(64)", "share_seq": "INTEGER",
                 "address": "VARCHAR(64)", "source": "VARCHAR(16)", "stored_bytes": "INTEGER",
                 "left_at": "VARCHAR(40)"}
events = Table(
    "events", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("step", Integer),
    Column("data", Text, nullable=False),
    # Heavy events are kept zlib-compressed here as they are stored, with data left empty (app/packing.py;
    # ``pack_in`` packs the events of runs stored by a DeepScope before that).
    Column("packed", LargeBinary),
)
ADDED_EVENT_COLUMNS = {"packed": {"sqlite": "BLOB", "postgresql": "BYTEA"}}
# the heavy JSON (image samples are PNGs: compressed already)
Index("events_run_type", events.c.run_id, events.c.type)


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
        "share_seq": row.share_seq, "source": row.source, "stored_bytes": row.stored_bytes,
        "left_at": row.left_at,
    }


def encoded(fields: dict[str, Any]) -> dict[str, Any]:
    """A row's fields as stored: the summary and the config are JSON text."""
    return {k: json.dumps(v) if k in ("summary", "config") and not isinstance(v, str) else v for k, v in fields.items()}


class Transaction:
    """What the service's policy reads while runs are created (quotas.ActiveCounts, sharing.Lookup)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def active_runs(self, owner: str) -> int:
        """A client's queued and running runs, shares included (to a student they are runs); a training its
        owner left is no longer theirs."""
        q = select(func.count()).select_from(runs).where(runs.c.status.in_(ACTIVE_STATUSES), runs.c.owner == owner,
                                                         runs.c.share_seq.is_(None))
        return int(self.conn.execute(q).scalar_one())

    def active_trainings(self, address: str | None = None) -> int:
        """Queued and running trainings (shares left out: they take no worker), from one address if given."""
        q = select(func.count()).select_from(runs).where(runs.c.status.in_(ACTIVE_STATUSES),
                                                         runs.c.shared_from.is_(None))
        if address is not None:
            q = q.where(runs.c.address == address)
        return int(self.conn.execute(q).scalar_one())

    def stored_bytes(self, owner: str | None = None) -> int:
        """What the finished trainings store, one owner's or everyone's (shares store nothing)."""
        q = select(func.coalesce(func.sum(runs.c.stored_bytes), 0)).where(runs.c.shared_from.is_(None))
        if owner is not None:
            q = q.where(runs.c.owner == owner)
        return int(self.conn.execute(q).scalar_one())

    def newest_training(self, share_key: str, statuses: frozenset[str]) -> dict[str, Any] | None:
        q = (select(runs).where(runs.c.share_key == share_key, runs.c.shared_from.is_(None),
                                runs.c.status.in_(sorted(statuses))).order_by(runs.c.created_at.desc()).limit(1))
        row = self.conn.execute(q).first()
        return _run_dict(row) if row is not None else None


@dataclass
class _Creation:
    """One ``create_runs`` request waiting for its turn, and what became of it."""

    ids: list[str]
    specs: list[tuple[str, dict[str, Any]]]
    group: str | None
    owner: str | None
    address: str | None
    decide: Callable[[Transaction, list[str]], list[dict[str, Any]]] | None
    error: BaseException | None = None
    done: bool = False


class Store:
    def __init__(self, url: str) -> None:
        self._create_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Creation] = []
        self.engine = make_engine(url)
        # SQLite: one writer at a time in this process, handed over by a Python lock. Two connections that
        # meet at SQLite's own write lock wait in its busy handler, which sleeps 1, 2, 5, ... up to 100 ms
        # between tries: a class pressing its lessons at once waited behind the event writer's commits up
        # to 320 ms a press (benchmarks/workshop.py, the mixed class). PostgreSQL locks rows instead.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        metadata.create_all(self.engine)
        self._add_missing_columns()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Any]:
        """A write transaction: committed on leaving, rolled back on an error."""
        with self._write_lock or contextlib.nullcontext(), self.engine.begin() as conn:
            yield conn

    def _add_missing_columns(self) -> None:
        """A database made by an older DeepScope gets the columns added since (nothing is rewritten)."""
        with self.writing() as conn:
            have = {c["name"] for c in inspect(conn).get_columns("runs")}
            for name, sql_type in ADDED_COLUMNS.items():
                if name not in have:
                    conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
            have = {c["name"] for c in inspect(conn).get_columns("events")}
            for name, sql_types in ADDED_EVENT_COLUMNS.items():
                if name not in have:
                    conn.exec_driver_sql(f"ALTER TABLE events ADD COLUMN {name} {sql_types[conn.dialect.name]}")

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> str | None:
        """None if the database answers, else why not (for /healthz)."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:  # any failure to reach it is "down", with its own words
            return f"unreachable: {str(exc).splitlines()[0][:200]}"
        return None

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, name: str, config: dict[str, Any], group: str | None = None,
                   owner: str | None = None) -> dict[str, Any]:
        return self.create_runs([(name, config)], group=group, owner=owner)[0]

    def create_runs(self, specs: list[tuple[str, dict[str, Any]]], group: str | None = None,
                    owner: str | None = None, address: str | None = None,
                    decide: Callable[[Transaction, list[str]], list[dict[str, Any]]] | None = None,
                    ) -> list[dict[str, Any]]:
        """Create queued runs, all or none. ``decide(transaction, ids)`` runs inside the creating transaction
        first: it may refuse (raise) or give each row more columns (the service's quotas and sharing), and
        no other creation runs between its reads and the insert. SQLite serialises through a lock here
        (one service process writes it); PostgreSQL through a transaction-scoped advisory lock, which
        also holds across several app replicas.

        Requests that arrive while another is being written wait, and the first of them to get the turn
        writes them all in one transaction, one after the other: each one's ``decide`` sees the rows of
        those before it, and one refused leaves the others. Sixty students pressing a lesson at once
        waited for sixty transactions in turn (benchmarks/workshop.py, the mixed class)."""
        me = _Creation([uuid.uuid4().hex[:12] for _ in specs], specs, group, owner, address, decide)
        with self._pending_lock:
            self._pending.append(me)
        with self._create_lock:
            if not me.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._create_in_turn(batch)
        if me.error is not None:
            raise me.error
        return [self.get_run(run_id) for run_id in me.ids]  # type: ignore[misc]

    def _create_in_turn(self, batch: list[_Creation]) -> None:
        """One transaction for ``batch``: a request whose ``decide`` refuses is left out; a database error
        fails the whole transaction, and every request in it."""
        try:
            with self.writing() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243)")
                for c in batch:
                    try:
                        extra = c.decide(Transaction(conn), c.ids) if c.decide else [{} for _ in c.specs]
                    except SQLAlchemyError:
                        raise
                    except Exception as exc:  # refused (a quota): it wrote nothing, the others go on
                        c.error = exc
                        continue
                    now = now_iso()
                    conn.execute(insert(runs), [encoded({
                        "id": run_id, "name": name, "group_id": c.group, "owner": c.owner, "address": c.address,
                        "status": Status.QUEUED.value, "created_at": now, "progress": 0.0, "config": config,
                        "summary": {}, "seq": -1, **more})
                        for run_id, (name, config), more in zip(c.ids, c.specs, extra, strict=True)])
        except Exception as exc:
            for c in batch:
                c.error = c.error or exc
        finally:
            for c in batch:
                c.done = True

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
        return _run_dict(row) if row else None

    def watched_running(self) -> list[dict[str, Any]]:
        """Watched runs still running: the service ends those whose training stopped sending."""
        q = select(runs).where(runs.c.source == "watched", runs.c.status.in_(ACTIVE_STATUSES))
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q)]

    def trainings_in_flight(self) -> list[dict[str, Any]]:
        """Queued and running runs trained here (not a share, which follows its training, nor a watched
        run): the service's reconciler asks the executor which of them no worker owns."""
        q = select(runs).where(runs.c.status.in_(ACTIVE_STATUSES), runs.c.shared_from.is_(None),
                               runs.c.source.is_(None) | (runs.c.source != "watched"))
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q)]

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
        """Queued and running runs of one owner (shares included), or trainings on the whole server."""
        with self.engine.connect() as conn:
            tx = Transaction(conn)
            return tx.active_runs(owner) if owner is not None else tx.active_trainings()

    def shares_of(self, run_id: str, attached_only: bool = False) -> list[dict[str, Any]]:
        q = select(runs).where(runs.c.shared_from == run_id)
        if attached_only:
            q = q.where(runs.c.share_seq.is_(None))
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q)]

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self.writing() as conn:
            self.update_in(conn, run_id, fields)

    @staticmethod
    def update_in(conn: Any, run_id: str, fields: dict[str, Any]) -> None:
        """One run's new fields, inside a transaction the caller holds."""
        conn.execute(update(runs).where(runs.c.id == run_id).values(**encoded(fields)))

    @staticmethod
    def update_followers_in(conn: Any, run_id: str, fields: dict[str, Any]) -> None:
        """The same fields for the runs attached to ``run_id`` (its shares that still watch it)."""
        if fields:
            conn.execute(update(runs).where(runs.c.shared_from == run_id, runs.c.share_seq.is_(None))
                         .values(**encoded(fields)))

    @staticmethod
    def count_stored_bytes_in(conn: Any, run_id: str) -> None:
        """Set a finished run's ``stored_bytes`` from its events, inside the transaction that stored the last."""
        weight = func.length(events.c.data) + func.coalesce(func.length(events.c.packed), 0)
        total = select(func.coalesce(func.sum(weight), 0)).where(events.c.run_id == run_id)
        conn.execute(update(runs).where(runs.c.id == run_id).values(stored_bytes=total.scalar_subquery()))

    @staticmethod
    def pack_in(conn: Any, run_id: str) -> int:
        """Compress a finished run's heavy events (a layers event to about a fifth; they are read rarely
        once the run is over, and decompressing one costs well under a millisecond). Returns how many."""
        rows = conn.execute(select(events.c.seq, events.c.data).where(
            events.c.run_id == run_id, events.c.type.in_(PACKED_TYPES), events.c.packed.is_(None))).all()
        if rows:
            conn.execute(update(events).where(events.c.run_id == bindparam("b_run"), events.c.seq == bindparam("b_seq"))
                         .values(data="", packed=bindparam("b_packed")),
                         [{"b_run": run_id, "b_seq": r.seq, "b_packed": deflated(r.data)} for r in rows])
        return len(rows)

    def finished_unpacked(self, limit: int = 200) -> list[str]:
        """Finished trainings with heavy events not compressed yet (stored by an older DeepScope): gc packs them."""
        unpacked = select(events.c.run_id).where(events.c.type.in_(PACKED_TYPES), events.c.packed.is_(None))
        q = (select(runs.c.id).where(runs.c.status.not_in(ACTIVE_STATUSES), runs.c.id.in_(unpacked.scalar_subquery()))
             .limit(limit))
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(q)]

    def pack(self, run_id: str) -> int:
        with self.writing() as conn:
            packed = self.pack_in(conn, run_id)
            self.count_stored_bytes_in(conn, run_id)
        return packed

    def finished_before(self, cutoff: str, limit: int = 500) -> list[dict[str, Any]]:
        """Runs that finished before ``cutoff`` (ISO time), oldest first: what retention deletes."""
        q = (select(runs).where(runs.c.status.not_in(ACTIVE_STATUSES), runs.c.finished_at < cutoff)
             .order_by(runs.c.finished_at).limit(limit))
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q)]

    def orphan_event_runs(self) -> list[str]:
        """Runs whose events outlived them and every share of them (a stop mid-delete): gc deletes those."""
        alive = select(runs.c.id).union(select(runs.c.shared_from).where(runs.c.shared_from.is_not(None)))
        q = select(events.c.run_id).distinct().where(events.c.run_id.not_in(alive.scalar_subquery()))
        with self.engine.connect() as conn:
            return [r.run_id for r in conn.execute(q)]

    def size_bytes(self) -> int:
        """What the database takes: its files (SQLite, the write-ahead log included) or pg_database_size."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
        path = Path(self.engine.url.database or "")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.is_file())

    def reclaim(self) -> None:
        """Give the space of deleted rows back to the disk: SQLite keeps freed pages in its file and
        PostgreSQL keeps dead rows until VACUUM, so deleting alone frees nothing."""
        with self._write_lock or contextlib.nullcontext(), \
                self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM")
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete_events(self, run_id: str) -> None:
        with self.writing() as conn:
            conn.execute(delete(events).where(events.c.run_id == run_id))

    def delete_run(self, run_id: str, keep_events: bool = False) -> None:
        with self.writing() as conn:
            if not keep_events:
                conn.execute(delete(events).where(events.c.run_id == run_id))
            conn.execute(delete(runs).where(runs.c.id == run_id))

    def mark_interrupted(self) -> list[str]:
        """Runs that were queued or running when the service stopped: they will never finish now. (A
        watched run trains elsewhere and sends again when the service is back: it is left running.)"""
        with self.writing() as conn:
            ids = [r.id for r in conn.execute(select(runs.c.id).where(runs.c.status.in_(ACTIVE_STATUSES),
                                                                      runs.c.source.is_(None)))]
            if ids:
                conn.execute(update(runs).where(runs.c.id.in_(ids)).values(
                    status=INTERRUPTED, finished_at=now_iso(),
                    error="the service stopped while this run was queued or running"))
                for run_id in ids:
                    self.count_stored_bytes_in(conn, run_id)
        return ids

    # -- events -----------------------------------------------------------------------------
    @staticmethod
    def packed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Event rows as they are stored: heavy events compressed (app/packing.py). Done before the write
        transaction, which holds SQLite's one writer meanwhile (``writing``)."""
        return [{**r, "data": "", "packed": deflated(r["data"])} if r["type"] in PACKED_TYPES else {**r, "packed": None}
                for r in rows]

    def insert_events_in(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        """Event rows, inside a transaction the caller holds; idempotent by (run_id, seq): a replayed
        stream or a second app replica writes nothing twice. Rows not yet ``packed_rows`` are packed here."""
        if rows and "packed" not in rows[0]:
            rows = self.packed_rows(rows)
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # pragma: no cover - only the two dialects above are supported
            conn.execute(insert(events), rows)
            return
        conn.execute(dialect_insert(events).on_conflict_do_nothing(index_elements=["run_id", "seq"]), rows)

    def event_seqs(self, run_id: str) -> list[int]:
        """Every stored seq of a run, in order (the index alone: no event is read)."""
        q = select(events.c.seq).where(events.c.run_id == run_id).order_by(events.c.seq)
        with self.engine.connect() as conn:
            return [r.seq for r in conn.execute(q)]

    def events(self, run_id: str, after: int = -1, limit: int = 1000,
               types: tuple[str, ...] | None = None) -> list[tuple[int, str, str]]:
        """(seq, type, json) of the events after ``after``, in seq order."""
        q = (select(events.c.seq, events.c.type, events.c.data, events.c.packed)
             .where(events.c.run_id == run_id, events.c.seq > after).order_by(events.c.seq).limit(limit))
        if types:
            q = q.where(events.c.type.in_(types))
        with self.engine.connect() as conn:
            return [(r.seq, r.type, r.data if r.packed is None else inflated(r.packed))
                    for r in conn.execute(q)]
