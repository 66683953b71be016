"""The event log: how the service writes events and run updates to the store.

Events arrive far faster than one transaction each could take, so ``EventWriter`` batches them on its
own thread; ``flush()`` is a barrier that returns once everything enqueued before it is committed,
which is what lets a WebSocket replay the store and then go live with no gap. ``EventLog`` is what the
service relies on: tests and other stores may stand in for the writer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import InterfaceError, OperationalError

from deepscope.app.disk import is_disk_full
from deepscope.app.statuses import FINISHED
from deepscope.app.store import Store

log = logging.getLogger("deepscope.store")
# A run's new fields -> what the runs following it copy, in the same transaction (``sharing.followed``)
Followers = Callable[[str, dict[str, Any]], dict[str, Any]]


class EventLog(Protocol):
    def add_event(self, run_id: str, seq: int, type_: str, step: int | None, data: str) -> None: ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def when_stored(self, callback: Callable[[], object]) -> None: ...

    def stop(self) -> None: ...


class EventWriter:
    """Batches event rows and run updates into one transaction every ``interval`` seconds at most."""

    def __init__(self, store: Store, followers: Followers | None = None, interval: float = 0.05,
                 max_batch: int = 2000, spill_dir: Path | None = None) -> None:
        self.store, self.followers = store, followers
        self.spill_dir = spill_dir
        self.failing: str | None = None  # why the last commit failed, while it does
        self.disk_full = False  # the last commit failed because the disk is full (app/disk.py)
        self.on_disk_full: Callable[[], None] | None = None  # told once each time the disk fills
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
        self.when_stored(done.set)
        return done.wait(timeout)

    def when_stored(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on the writer's thread) once everything enqueued before is committed: the
        barrier without a thread waiting on it (a class opening 150 streams at once had the service's
        threads all waiting on barriers, and a new socket's first read queued behind them)."""
        self._queue.put(("barrier", callback))

    def stop(self) -> None:
        if not self._stopping:
            self.flush()
            self._stopping = True  # a commit still waiting for the database spills instead
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
                b()
            if stop:
                return

    def _commit(self, batch_events: list[dict[str, Any]], batch_runs: dict[str, dict[str, Any]]) -> None:
        """Commit the batch. While the database is out of reach it waits and tries again, holding the batch
        (and the barriers behind it, so ``flush`` says False and nobody acknowledges events not stored);
        stopping while it is still down writes the batch to the spill file, read back at the next start."""
        if not batch_events and not batch_runs:
            return
        packed = None
        attempt = 0
        while True:
            try:
                if packed is None:  # compressed before the writer's lock is taken
                    packed = self.store.packed_rows(batch_events)
                with self.store.writing() as conn:
                    self._write(conn, packed, batch_runs)
                if self.failing:
                    log.warning("the database answers again: stored the %d events held", len(batch_events))
                self.failing, self.disk_full = None, False
                return
            except (OperationalError, InterfaceError) as exc:  # locked, unreachable or full: it comes back
                self.failing = str(exc).splitlines()[0][:200]
                if is_disk_full(exc) and not self.disk_full:
                    self.disk_full = True
                    log.error("the database's disk is full: holding %d events until it has room", len(batch_events))
                    if self.on_disk_full is not None:  # on a thread of its own: what it ends is written here
                        threading.Thread(target=self.on_disk_full, name="deepscope-disk-full", daemon=True).start()
                elif attempt == 0:
                    log.warning("the database is out of reach (%s): holding %d events", self.failing,
                                len(batch_events))
            except Exception:  # anything else would fail again the same way: say so, do not hang
                if attempt >= 4:
                    log.exception("could not store %d events", len(batch_events))
                    return
            if self._stopping and attempt >= 4:
                self._spill(batch_events, batch_runs)
                return
            attempt += 1
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))

    def _write(self, conn: Any, batch_events: list[dict[str, Any]], batch_runs: dict[str, dict[str, Any]]) -> None:
        if batch_events:
            self.store.insert_events_in(conn, batch_events)
        for run_id, fields in batch_runs.items():
            if "status" in fields and self.followers:  # the runs that share this one follow it
                self.store.update_followers_in(conn, run_id, self.followers(run_id, fields))
            self.store.update_in(conn, run_id, fields)
            if fields.get("status") in FINISHED:  # its last event is in: store it compactly, and count it
                self.store.pack_in(conn, run_id)
                self.store.count_stored_bytes_in(conn, run_id)

    def _spill(self, batch_events: list[dict[str, Any]], batch_runs: dict[str, dict[str, Any]]) -> None:
        if self.spill_dir is None:
            log.error("the database is still out of reach: %d events lost (no spill directory)", len(batch_events))
            return
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"{time.time_ns()}.json"
        path.write_bytes(orjson.dumps({"events": batch_events, "runs": batch_runs}, default=str))
        log.warning("the database is still out of reach: %d events kept in %s for the next start",
                    len(batch_events), path)

    def load_spilled(self) -> int:
        """Store what an earlier stop spilled (idempotent: events by (run_id, seq)); returns the events stored."""
        if self.spill_dir is None or not self.spill_dir.exists():
            return 0
        stored = 0
        for path in sorted(self.spill_dir.glob("*.json")):
            try:
                batch = orjson.loads(path.read_bytes())
            except FileNotFoundError:  # another replica sharing the data dir took it
                continue
            with self.store.writing() as conn:
                self._write(conn, batch["events"], batch["runs"])
            path.unlink()
            stored += len(batch["events"])
        return stored
