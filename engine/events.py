"""Run statuses and event types: their one home (docs/events.md describes every field).

Everything else derives from these: the app's status column and ``Literal`` types (which add the
service's own ``interrupted``), the hub's coalescing, ``/api/options`` and through it the page.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Status(StrEnum):
    QUEUED = "queued"        # waiting for a worker (set by the service; a first look says it too)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"        # an exception: a bug, a missing file, a worker that died
    CANCELLED = "cancelled"  # should_stop() said so: a user, or the wall-clock limit
    DIVERGED = "diverged"    # a NaN or inf loss: a result to show, not an error


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.DIVERGED})
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})


class EventType(StrEnum):
    STATUS = "status"
    STEP = "step"
    EVAL = "eval"
    LAYERS = "layers"
    BOUNDARY = "boundary"
    SAMPLES = "samples"
    FINDINGS = "findings"  # what the doctor sees so far (engine/doctor): sent when it changes


# Snapshots of a state: a newer one supersedes an older one, so a viewer that falls behind may skip
# to the newest. The others form curves, and every one of them counts.
SNAPSHOTS = frozenset({EventType.LAYERS, EventType.BOUNDARY, EventType.SAMPLES, EventType.FINDINGS})
SCALARS = frozenset({EventType.STEP, EventType.EVAL})


def status_event(status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": EventType.STATUS.value, "status": str(status), "message": message, **extra}


def is_finished_status(event: dict[str, Any], finished: frozenset[str] = FINISHED) -> bool:
    return event.get("type") == EventType.STATUS and event.get("status") in finished
