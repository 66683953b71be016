"""Executors run configs somewhere and report their events to a sink; they share one interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# sink(run_id, event, raw_json): called for every event of every run, from the executor's thread.
Sink = Callable[[str, dict[str, Any], str], None]


class Executor(Protocol):
    def start(self, sink: Sink) -> None: ...

    def submit(self, run_id: str, config: dict[str, Any]) -> None: ...

    def cancel(self, run_id: str) -> bool:
        """Stop a queued or running run; False if this executor does not have it."""
        ...

    def shutdown(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...
