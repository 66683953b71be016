"""Executors run configs somewhere and report their events back; they share one interface."""

from __future__ import annotations

from typing import Any, Protocol


class EventSink(Protocol):
    """The service: ``on_event`` = ``persist`` then ``publish``."""

    def on_event(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def persist(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...

    def publish(self, run_id: str, event: dict[str, Any], raw: str) -> None: ...


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
