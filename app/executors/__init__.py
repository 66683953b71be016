"""Executors run configs somewhere and report their events back; they share one interface."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol


class EventSink(Protocol):
    """The service: ``on_event`` = ``persist`` then ``publish`` (``on_events``: of several); ``flush`` returns True once everything
    persisted before it is committed, False if that did not happen within ``timeout``."""

    def on_event(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def on_events(self, run_id: str, batch: list[tuple[dict[str, Any], str]]) -> None:
        """Several events of one run, in order (a local worker sends its events in batches). Of a snapshot
        (layers, boundary, samples, findings) the dict holds only its seq, type and step; ``raw`` has all."""

    def persist(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def publish(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...


class Executor(Protocol):
    # Runs die with the service (the local workers are its children): in-flight runs are interrupted
    # at the next start. False where runs live on elsewhere (celery workers).
    interrupts_on_restart: bool

    def start(self, sink: EventSink) -> None: ...

    def submit(self, run_id: str, config: dict[str, Any], owner: str | None = None) -> str | None:
        """Queue a run; runs of different owners are served round-robin (a class shares the workers fairly).
        Returns a notice for the run's owner when it may wait long (no worker takes its queue), else None."""
        ...

    def cancel(self, run_id: str) -> bool:
        """Stop a queued or running run; False if this executor does not have it."""
        ...

    def replay_after(self, run_id: str, seq: int) -> list[tuple[int, str, str]]:
        """Events after ``seq`` that are published but may not be stored yet (the WebSocket seam)."""
        ...

    def place(self, run_id: str) -> dict[str, Any] | None:
        """A waiting run's ``place`` in the queue (1: next), ``of`` how many, and ``starts_in_s`` (an
        estimate, or None); None if it is not waiting here."""
        ...

    def unowned(self, run_ids: list[str]) -> set[str] | None:
        """Which of these runs, queued or running in the database, no worker or queue of this executor
        holds (the service's reconciler ends or re-queues them); None: not this round."""
        ...

    def end_unowned(self, run_id: str, event: dict[str, Any]) -> None:
        """End a run that no worker owns with ``event`` (its terminal status), telling its viewers."""
        ...

    def shutdown(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def workers(self) -> list[dict[str, Any]]:
        """The workers connected now: ``name``, the ``queues`` they take, and ``busy`` (a run id or None)."""
        ...


class MemoryLimitExceeded(RuntimeError):
    """A run grew past DEEPSCOPE_MAX_RUN_MEMORY_MB while training; it ends as failed with this message."""


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def megabytes(mb: float | None) -> int | None:
    """A run's storage cap in bytes (DEEPSCOPE_MAX_RUN_MB, decimal megabytes as disks count them)."""
    return int(mb * 1e6) if mb else None


def stop_check(cancelled: Callable[[], bool], time_limit_s: float,
               memory_limit_mb: float | None = None) -> Callable[[], bool | str]:
    """The ``should_stop`` a worker hands the engine: a cancel, or the run's wall-clock limit, with why.
    Over ``memory_limit_mb`` of resident memory it raises ``MemoryLimitExceeded``, which the engine
    reports as a failed run (read twice a second: a step costs no system call)."""
    deadline = time.monotonic() + time_limit_s
    next_memory_check = 0.0

    def should_stop() -> bool | str:
        nonlocal next_memory_check
        if cancelled():
            return True
        now = time.monotonic()
        if now > deadline:
            return f"stopped: the run reached the wall-clock limit of {time_limit_s:g} s"
        if memory_limit_mb and now >= next_memory_check:
            next_memory_check = now + 0.5
            used = rss_mb()
            if used > memory_limit_mb:
                raise MemoryLimitExceeded(f"the run used {used:.0f} MB, over this server's limit of "
                                          f"{memory_limit_mb:.0f} MB per run (DEEPSCOPE_MAX_RUN_MEMORY_MB)")
        return False

    return should_stop
