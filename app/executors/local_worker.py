"""The body of a local worker process. Imported by the forkserver before any worker forks, so torch,
its optimizer machinery, the engine and its compiled kernels are loaded once and every worker starts
warm (``policy.warm_imports``)."""

from __future__ import annotations

import os

from deepscope.engine.threads import freeze_imports, keep_freed_memory, one_torch_thread, set_thread_env

set_thread_env()

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from deepscope.app.executors import megabytes, stop_check  # noqa: E402
from deepscope.app.executors.local import CANCEL_SET  # noqa: E402
from deepscope.app.executors.policy import warm_imports  # noqa: E402
from deepscope.engine import train  # noqa: E402
from deepscope.engine.events import SNAPSHOTS  # noqa: E402
from deepscope.engine.loop import first_look  # noqa: E402

warm_imports()
WORKER_NICENESS = 5  # training takes what the service leaves; the cores stay as busy
# A run's events travel in batches: one pipe message, one wake of the supervisor and one hand-over to
# the page's loop for several events (a mixed class of 60 took 22-23 CPU s of the service with one message
# an event, 15 in batches: docs/architecture.md). An
# event waits at most BATCH_S for others; a status and step 0's events go at once (a student's first
# point), and so does whatever waits when a step starts later than that.
BATCH_S = 0.025
BATCH_EVENTS = 64


class _Batches:
    """The events of one run at a time, sent as ('events', run_id, [(raw, head), ...]). A snapshot's head is
    its (seq, type, step), all the service reads of it: parsing a 30-layer capture back from its JSON took
    the service's supervisor 0.1 ms, 9,000 times in a mixed class. Other events' head is None."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.lock = threading.RLock()  # the telemetry thread of a GPU run emits too
        self.run_id: str | None = None
        self.raws: list[tuple[bytes, tuple[int, str, int | None] | None]] = []
        self.since = 0.0

    def add(self, run_id: str, event: dict[str, Any]) -> None:
        raw = orjson.dumps(event)
        head = (event["seq"], event["type"], event.get("step")) if event["type"] in SNAPSHOTS else None
        with self.lock:
            if self.raws and run_id != self.run_id:
                self.flush()
            if not self.raws:
                self.run_id, self.since = run_id, time.monotonic()
            self.raws.append((raw, head))
            if (event["type"] == "status" or event.get("step") == 0 or len(self.raws) >= BATCH_EVENTS
                    or time.monotonic() - self.since >= BATCH_S):
                self.flush()

    def flush_if_due(self) -> None:
        with self.lock:
            if self.raws and time.monotonic() - self.since >= BATCH_S:
                self.flush()

    def flush(self) -> None:
        with self.lock:
            if self.raws:
                raws, self.raws = self.raws, []
                self._send(("events", self.run_id, raws))

    def send(self, msg: tuple) -> None:
        """Any other message, after the events before it."""
        with self.lock:
            self.flush()
            self._send(msg)


def worker_main(conn: Any, cancel_flag: Any, data_dir: str) -> None:
    """Serve ``conn`` until it sends None. ('run', run_id, config, time_limit_s, memory_limit_mb,
    stored_limit_mb, resume_seq, first_step_shown) trains a run; ('look', run_id, config) sends a queued
    run's first look, answered ('looked', run_id, events, whole), between the steps of the run in
    training, or at once when there is none."""
    one_torch_thread()
    keep_freed_memory()
    freeze_imports()
    try:  # the service on the same cores answers first: a request, a stream, a first look's events
        os.nice(WORKER_NICENESS)
    except OSError:
        pass
    stopping = False
    batches = _Batches(conn.send)
    send = batches.send

    def emitter(run_id: str) -> Any:
        return lambda event: batches.add(run_id, event)

    def look(run_id: str, config: dict[str, Any]) -> None:
        events, whole = first_look(config, emitter(run_id), data_dir=Path(data_dir))
        send(("looked", run_id, events, whole))

    def looks_between_steps() -> None:
        nonlocal stopping
        while not stopping and conn.poll():
            msg = conn.recv()
            if msg is None:  # the service stops: end the run in training as it would have ended
                stopping = True
            else:
                look(*msg[1:])

    send(("ready", os.getpid()))
    while not stopping:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the service went away: so does this worker
            return
        if msg is None:
            return
        if msg[0] == "look":
            look(*msg[1:])
            continue
        _, run_id, config, time_limit, memory_limit, stored_limit, resume_seq, first_step_shown = msg
        limits = stop_check(lambda: cancel_flag.value == CANCEL_SET, time_limit, memory_limit)

        def should_stop(limits: Any = limits) -> bool | str:
            try:
                batches.flush_if_due()
                looks_between_steps()
            except (EOFError, OSError):
                return True
            return limits()

        train(config, emitter(run_id), should_stop, data_dir=Path(data_dir), max_stored_bytes=megabytes(stored_limit),
              resume_seq=resume_seq, first_step_shown=first_step_shown)
        send(("done", run_id))
