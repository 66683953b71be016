"""The service's run statuses: the engine's (``deepscope.engine.events``) plus ``interrupted``, which
only the service can know: a run that was queued or running when the service stopped."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from deepscope.engine.events import ACTIVE, Status
from deepscope.engine.events import FINISHED as ENGINE_FINISHED

INTERRUPTED = "interrupted"
STATUSES: tuple[str, ...] = (*(s.value for s in Status), INTERRUPTED)
FINISHED: frozenset[str] = frozenset({*(s.value for s in ENGINE_FINISHED), INTERRUPTED})
ACTIVE_STATUSES: frozenset[str] = frozenset(s.value for s in ACTIVE)

RunStatus = Literal[STATUSES]  # type: ignore[valid-type]


class CloseCode(IntEnum):
    """How ``/ws/runs/{id}`` ends (served with the statuses in ``/api/options``, so the page reads them)."""

    ENDED = 1000           # every event of the run was sent
    TOO_FAR_BEHIND = 1013  # the viewer fell so far behind that it should reconnect and replay
    BAD_REQUEST = 4400     # a query parameter is invalid; the reason names it
    FORBIDDEN = 4403       # no token, a foreign origin, or no identity
    NOT_FOUND = 4404       # no such run (or another student's)


MAX_REASON_BYTES = 123  # a close frame holds 125 bytes, two of them the code


def close_reason(text: str) -> str:
    """A close reason that fits its frame (a longer one broke the close, and the viewer saw 1006)."""
    return text.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore")
