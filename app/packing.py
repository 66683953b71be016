"""One zlib deflate per heavy event, shared by the store and the wire.

A layers or boundary event is stored compressed (about a fifth of its JSON; docs/workshop.md) and a
viewer with ``?encoding=deflate`` receives it compressed (app/routes/ws.py): the same bytes, so each
event is compressed once, when it is first stored or sent, and the other finds it here. Compressing at
the insert also spares the second write a run's end used to make to pack its events.
"""

from __future__ import annotations

import functools
import zlib

from deepscope.engine.events import EventType

PACKED_TYPES = (EventType.LAYERS.value, EventType.BOUNDARY.value)
LEVEL = 6


@functools.lru_cache(maxsize=256)  # the heavy events in flight: a class's 60 runs, a few each
def deflated(raw: str) -> bytes:
    return zlib.compress(raw.encode(), LEVEL)


def inflated(packed: bytes) -> str:
    return zlib.decompress(packed).decode()
