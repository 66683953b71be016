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
from typing import Any, Protocol

from deepscope.app.store import Store

log = logging.getLogger("deepscope.store")
# A run's new fields -> what the runs following it copy, in the same transaction (``sharing.followed``)
Followers = Callable[[str, dict[str, Any]], dict[str, Any]]


class EventLog(Protocol):
    def add_event(self, run_id: str, seq: int, type_: str, step: int | None, data: str) -> None: ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def stop(self) -> None: ...


class EventWriter:
    """Batches event rows and run updates into one transaction every ``interval`` seconds at most."""

    def __init__(self, store: Store, followers: Followers | None = None, interval: float = 0.05,
                 max_batch: int = 2000) -> None:
        self.store, self.followers = store, followers
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
                        self.store.insert_events_in(conn, batch_events)
                    for run_id, fields in batch_runs.items():
                        if "status" in fields and self.followers:  # the runs that share this one follow it
                            self.store.update_followers_in(conn, run_id, self.followers(run_id, fields))
                        self.store.update_in(conn, run_id, fields)
                return
            except Exception:  # a locked or briefly unreachable database: retry, never drop events
                if attempt == 4:
                    log.exception("could not store %d events", len(batch_events))
                    return
                time.sleep(0.2 * (attempt + 1))
