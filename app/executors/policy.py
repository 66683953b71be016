"""What every executor does the same way, wherever its workers run: the events it writes for a run that
never trained or lost its worker, when a run that ignores its stop signal is killed, and what a worker
imports before it takes its first run. The local and the Celery executor call these; only how they
reach their workers differs.
"""

from __future__ import annotations

from typing import Any

from deepscope.engine.events import Status, status_event

KILL_GRACE_S = 15.0  # a run that ignores its stop signal this long after it is due is killed


def cancelled_while_queued(seq: int = 0) -> dict[str, Any]:
    """The event that ends a run cancelled before any worker started it (after its first look's, if any)."""
    return {"seq": seq, **status_event(Status.CANCELLED, "cancelled while queued", summary={})}


def worker_lost(last_seq: int, why: str, cancelled: bool = False) -> dict[str, Any]:
    """The event that ends a run whose worker is gone, after the last event it sent: failed (``why`` says
    what happened to the worker), or cancelled when a cancel had been asked for."""
    if cancelled:
        return {"seq": last_seq + 1, **status_event(Status.CANCELLED, "cancelled; its worker was stopped", summary={})}
    return {"seq": last_seq + 1, **status_event(Status.FAILED, why, summary={})}


def overdue(now: float, stop_due: float | None, started: float, time_limit_s: float) -> bool:
    """Whether a run has ignored its stop signal (a cancel at ``stop_due``, or its time limit) for longer
    than KILL_GRACE_S: its worker is then killed."""
    if stop_due is not None and now > stop_due + KILL_GRACE_S:
        return True
    return now > started + time_limit_s + KILL_GRACE_S


def warm_imports() -> None:
    """What a worker imports before its first run, so that run starts in milliseconds: torch, the engine,
    the compiled telemetry kernels, and torch._dynamo, which the first optimizer imports (1 s)."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    import deepscope.engine  # noqa: F401
    import deepscope.engine.telemetry.compiled  # noqa: F401
