"""The default executor: a few worker processes started once and kept warm, a fair queue in front
(round-robin across owners: ``fair_queue.py``).

Workers fork from a forkserver that has already imported torch and the engine, so a submitted run
reaches its first step in milliseconds. One supervisor thread reads every worker's pipe, hands
events to the sink, dispatches queued runs to idle workers, enforces the wall-clock limit and
replaces a worker that dies; the run it was training is marked failed.

A run that has to wait gets a first look (``engine.loop.first_look``): a busy worker computes its step
0 between two steps of its own run, one look at a time, so a class that fills the queue sees every
network at once; the run's training later goes on from that look's events. ``place`` says where a
waiting run is in the queue and about when it starts.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import orjson

from deepscope.app.executors import EventSink, policy
from deepscope.app.executors.fair_queue import FairQueue

log = logging.getLogger("deepscope.local")
CANCEL_CLEAR, CANCEL_SET = 0, 1  # the shared flag a worker polls every step
LOOKS_AHEAD = 2  # first looks sent to one worker at a time


@dataclass
class _Slot:
    index: int
    process: Any
    conn: Any
    flag: Any
    ready: bool = False
    run_id: str | None = None
    looking: list[str] = field(default_factory=list)  # queued runs whose first looks this worker computes
    last_seq: int = -1
    run_started: float = 0.0
    stop_due: float | None = None
    started: float = field(default_factory=time.monotonic)


class LocalExecutor:
    interrupts_on_restart = True

    def __init__(self, workers: int, data_dir: Path, time_limit_s: float,
                 memory_limit_mb: float | None = None, stored_limit_mb: float | None = None,
                 first_looks: bool = True) -> None:
        self.n_workers = workers
        self.data_dir = str(data_dir)
        self.time_limit_s = time_limit_s
        self.memory_limit_mb = memory_limit_mb
        self.stored_limit_mb = stored_limit_mb
        self.first_looks = first_looks
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["deepscope.app.executors.local_worker"])
        self._queue = FairQueue()
        self._slots: list[_Slot] = []
        self._lock = threading.RLock()
        self._sink: EventSink | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self.replaced = 0
        # A waiting run's first look: the seq its training goes on from, and whether it showed all of step 0
        self._next_seq: dict[str, int] = {}
        self._looked_at: set[str] = set()
        self._shown: set[str] = set()
        self._cancel_after_look: set[str] = set()
        self._durations: list[float] = []  # the last runs' wall seconds, for a waiting run's start estimate
        self.looked = 0

    # -- interface --------------------------------------------------------------------------
    def start(self, sink: EventSink) -> None:
        """Returns at once: the workers start on the supervisor's thread (the forkserver imports torch,
        seconds on a busy machine), so the page answers first; runs submitted meanwhile wait queued."""
        self._sink = sink
        self._thread = threading.Thread(target=self._start_then_supervise, name="deepscope-local-executor",
                                        daemon=True)
        self._thread.start()

    def _start_then_supervise(self) -> None:
        for i in range(self.n_workers):
            while True:
                try:
                    slot = self._spawn(i)
                    break
                except Exception:  # a worker that cannot start must not take the service down: retry
                    log.exception("could not start worker %d; trying again in 5 s", i)
                    if self._stopping:
                        return
                    time.sleep(5)
            with self._lock:
                if self._stopping:
                    slot.process.kill()
                    return
                self._slots.append(slot)
        self._supervise()

    def submit(self, run_id: str, config: dict[str, Any], owner: str | None = None) -> str | None:
        with self._lock:
            self._queue.put(owner, run_id, config)
            self._dispatch()
        return None

    def cancel(self, run_id: str) -> bool:
        with self._lock:
            if self._queue.remove(run_id):
                if any(run_id in slot.looking for slot in self._slots):
                    self._cancel_after_look.add(run_id)  # its status must come after the look's events
                else:
                    self._end_queued(run_id)
                return True
            for slot in self._slots:
                if slot.run_id == run_id:
                    slot.flag.value = CANCEL_SET
                    slot.stop_due = slot.stop_due or time.monotonic()
                    return True
        return False

    def place(self, run_id: str) -> dict[str, Any] | None:
        """Where a waiting run is: its place in the queue (1 is next), of how many, and about how many
        seconds until it starts (the last runs' average length, the workers sharing the queue)."""
        with self._lock:
            order = [r for r, _ in self._queue.order()]
            if run_id not in order:
                return None
            place = order.index(run_id) + 1
            mean = sum(self._durations) / len(self._durations) if self._durations else None
            starts = None if mean is None else round(mean * (place - 1) // max(1, self.n_workers) + mean / 2, 1)
            return {"place": place, "of": len(order), "starts_in_s": starts}

    def replay_after(self, run_id: str, seq: int) -> list[tuple[int, str, str]]:
        return []  # the store's flush barrier already covers everything published

    def unowned(self, run_ids: list[str]) -> set[str] | None:
        return set()  # its workers are this process's children: what they hold ends with it, and a restart interrupts it

    def end_unowned(self, run_id: str, event: dict[str, Any]) -> None:
        self._emit(run_id, event)

    def shutdown(self) -> None:
        self._stopping = True
        self._wake_w.send(b"")
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            for slot in self._slots:
                try:
                    slot.conn.send(None)
                except OSError:
                    pass
            for slot in self._slots:
                slot.process.join(timeout=2)
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join(timeout=2)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"executor": "local", "workers": self.n_workers,
                    "ready": sum(s.ready for s in self._slots), "busy": sum(s.run_id is not None for s in self._slots),
                    "queued": len(self._queue), "replaced": self.replaced, "first_looks": self.looked}

    def workers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"name": f"local-{s.index}", "queues": ["runs"], "busy": s.run_id, "ready": s.ready,
                     "pid": s.process.pid} for s in self._slots]

    def worker_pid(self, run_id: str) -> int | None:
        with self._lock:
            return next((s.process.pid for s in self._slots if s.run_id == run_id), None)

    # -- inside -----------------------------------------------------------------------------
    def _spawn(self, index: int) -> _Slot:
        from deepscope.app.executors.local_worker import worker_main

        parent, child = self._ctx.Pipe()
        flag = self._ctx.Value("i", CANCEL_CLEAR, lock=False)
        process = self._ctx.Process(target=worker_main, args=(child, flag, self.data_dir),
                                    name=f"deepscope-worker-{index}", daemon=True)
        process.start()
        child.close()
        return _Slot(index, process, parent, flag)

    def _dispatch(self) -> None:
        """Idle workers take the next runs; busy ones compute the first look of the next run without one."""
        looking = {run_id for slot in self._slots for run_id in slot.looking}
        for slot in self._slots:
            if not self._queue:
                break
            if slot.ready and slot.run_id is None and not slot.looking:
                run_id = self._queue.order()[0][0]
                if run_id in looking:  # its first look is being computed: it starts once that is sent
                    break
                run_id, config = self._queue.pop()
                seq, shown = self._forget_look(run_id)
                slot.flag.value = CANCEL_CLEAR
                slot.run_id, slot.last_seq, slot.stop_due = run_id, seq - 1, None
                slot.run_started = time.monotonic()
                self._send(slot, ("run", run_id, config, self.time_limit_s, self.memory_limit_mb,
                                  self.stored_limit_mb, seq, shown))
        if not self.first_looks:
            return
        waiting = [(r, c) for r, c in self._queue.order() if r not in self._looked_at and r not in looking]
        for slot in self._slots:
            if not waiting:
                return
            # two at a time: the worker computes the second right after the first, not a step later
            while waiting and slot.ready and slot.run_id is not None and len(slot.looking) < LOOKS_AHEAD:
                run_id, config = waiting.pop(0)
                slot.looking.append(run_id)
                self._send(slot, ("look", run_id, config))

    @staticmethod
    def _send(slot: _Slot, msg: tuple) -> None:
        try:
            slot.conn.send(msg)
        except OSError:  # died just now: the supervisor replaces it (and fails its run)
            pass

    def _forget_look(self, run_id: str) -> tuple[int, bool]:
        """Where a run that leaves the queue goes on from: after its first look's events, if it had one."""
        self._looked_at.discard(run_id)
        shown = run_id in self._shown
        self._shown.discard(run_id)
        return self._next_seq.pop(run_id, 0), shown

    def _end_queued(self, run_id: str) -> None:
        seq, _ = self._forget_look(run_id)
        self._emit(run_id, policy.cancelled_while_queued(seq))

    def _emit(self, run_id: str, event: dict[str, Any]) -> None:
        assert self._sink is not None
        self._sink.on_event(run_id, event, orjson.dumps(event).decode())

    def _supervise(self) -> None:
        while not self._stopping:
            with self._lock:
                waitables = {s.conn: s for s in self._slots} | {s.process.sentinel: s for s in self._slots}
            try:
                ready = wait([*waitables, self._wake_r], timeout=0.5)
            except OSError:
                ready = []
            for obj in ready:
                if obj is self._wake_r:
                    self._wake_r.recv_bytes()
                    continue
                slot = waitables[obj]
                if obj is slot.conn:
                    self._drain(slot)
                elif not slot.process.is_alive():
                    self._drain(slot)
                    self._replace(slot, f"the worker process died (exit code {slot.process.exitcode})")
            self._watchdog()

    def _drain(self, slot: _Slot) -> None:
        while True:
            try:
                if not slot.conn.poll():
                    return
                msg = slot.conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "events":  # a run's, in a batch (local_worker._Batches)
                _, run_id, raws = msg
                batch = [(orjson.loads(raw) if head is None else {"seq": head[0], "type": head[1], "step": head[2]},
                          raw.decode()) for raw, head in raws]
                if run_id == slot.run_id:
                    slot.last_seq = batch[-1][0]["seq"]
                else:  # a first look's
                    with self._lock:
                        self._next_seq[run_id] = batch[-1][0]["seq"] + 1
                assert self._sink is not None
                try:
                    self._sink.on_events(run_id, batch)
                except Exception:  # the sink must not take the supervisor down
                    log.exception("sink failed on an event of run %s", run_id)
            elif kind == "looked":
                with self._lock:
                    self._record_look(slot, msg[1], msg[3])
                    self._dispatch()
            elif kind == "done":
                with self._lock:
                    self._durations = [*self._durations[-19:], time.monotonic() - slot.run_started]
                    slot.run_id = None
                    self._dispatch()
            elif kind == "ready":
                with self._lock:
                    slot.ready = True
                    self._dispatch()

    def _record_look(self, slot: _Slot, run_id: str, whole: bool) -> None:
        if run_id in slot.looking:
            slot.looking.remove(run_id)
        self.looked += 1
        if run_id in self._cancel_after_look:
            self._cancel_after_look.discard(run_id)
            self._end_queued(run_id)
            return
        self._looked_at.add(run_id)
        if whole:
            self._shown.add(run_id)

    def _replace(self, slot: _Slot, why: str) -> None:
        with self._lock:
            if slot not in self._slots or self._stopping:
                return
            if slot.run_id is not None:
                self._emit(slot.run_id, policy.worker_lost(slot.last_seq, f"{why} while training; a new worker "
                                                                           "took its place"))
            for run_id in list(slot.looking):  # the looks it computed are cut short: their runs train without
                self._record_look(slot, run_id, whole=False)
            slot.conn.close()
            slot.process.join(timeout=1)
            self._slots[slot.index] = self._spawn(slot.index)
            self.replaced += 1
            log.warning("replaced worker %d: %s", slot.index, why)

    def _watchdog(self) -> None:
        now = time.monotonic()
        with self._lock:
            for slot in list(self._slots):
                if slot.run_id is None:
                    continue
                # the worker's own check normally ends a cancelled or overdue run within a step
                if policy.overdue(now, slot.stop_due, slot.run_started, self.time_limit_s) and slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join(timeout=2)
                    self._replace(slot, "the run did not stop within "
                                        f"{policy.KILL_GRACE_S:g} s of its cancel or time limit, so its worker was killed")
