"""Executors run configs somewhere and report their events back; they share one interface."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

KILL_GRACE_S = 15.0  # a run that ignores its stop signal this long after it is due is killed


class EventSink(Protocol):
    """The service: ``on_event`` = ``persist`` then ``publish``; ``flush`` returns once everything
    persisted before it is committed."""

    def on_event(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def persist(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def publish(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def flush(self) -> None: ...


class Executor(Protocol):
    # Runs die with the service (the local workers are its children): in-flight runs are interrupted
    # at the next start. False where runs live on elsewhere (celery workers).
    interrupts_on_restart: bool

    def start(self, sink: EventSink) -> None: ...

    def submit(self, run_id: str, config: dict[str, Any]) -> None: ...

    def cancel(self, run_id: str) -> bool:
        """Stop a queued or running run; False if this executor does not have it."""
        ...

    def replay_after(self, run_id: str, seq: int) -> list[tuple[int, str, str]]:
        """Events after ``seq`` that are published but may not be stored yet (the WebSocket seam)."""
        ...

    def shutdown(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def stop_check(cancelled: Callable[[], bool], time_limit_s: float) -> Callable[[], bool | str]:
    """The ``should_stop`` a worker hands the engine: a cancel, or the run's wall-clock limit, with why."""
    deadline = time.monotonic() + time_limit_s

    def should_stop() -> bool | str:
        if cancelled():
            return True
        if time.monotonic() > deadline:
            return f"stopped: the run reached the wall-clock limit of {time_limit_s:g} s"
        return False

    return should_stop
