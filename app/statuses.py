"""The service's run statuses: the engine's (``deepscope.engine.events``) plus ``interrupted``, which
only the service can know: a run that was queued or running when the service stopped."""

from __future__ import annotations

from typing import Literal

from deepscope.engine.events import ACTIVE, TERMINAL, Status

INTERRUPTED = "interrupted"
STATUSES: tuple[str, ...] = (*(s.value for s in Status), INTERRUPTED)
FINISHED: frozenset[str] = frozenset({*(s.value for s in TERMINAL), INTERRUPTED})
ACTIVE_STATUSES: frozenset[str] = frozenset(s.value for s in ACTIVE)

RunStatus = Literal[STATUSES]  # type: ignore[valid-type]
