"""Fan-out of live events to WebSocket viewers, one bounded queue per viewer.

A viewer that falls behind never slows training or the other viewers: its pending heavy events
(layers, boundary, samples) are coalesced, the newest of each type replacing the one not yet sent,
while step, eval and status events are all kept. A viewer whose light backlog still overflows is
dropped; its client reconnects and replays from the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from deepscope.engine.events import SNAPSHOTS

COALESCED = SNAPSHOTS
MAX_PENDING = 20000


class Viewer:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._pending: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._latest_heavy: dict[str, int] = {}
        self._wake = asyncio.Event()
        self.overflowed = False
        self.coalesced = 0
        # Off while the socket replays the store: what arrives meanwhile is the seam, and it must be whole.
        self.coalescing = False

    def put(self, seq: int, type_: str, raw: str) -> None:
        if type_ in COALESCED and self.coalescing:
            old = self._latest_heavy.get(type_)
            if old is not None and old in self._pending:
                del self._pending[old]
                self.coalesced += 1
            self._latest_heavy[type_] = seq
        self._pending[seq] = (type_, raw)
        if len(self._pending) > MAX_PENDING:
            self.overflowed = True
        self._wake.set()

    async def get_batch(self, timeout: float | None = None) -> list[tuple[int, str, str]]:
        """Wait for events (at most ``timeout`` seconds: then maybe none), then take all of them, in seq order."""
        while not self._pending:
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    return []
        batch = [(seq, t, raw) for seq, (t, raw) in self._pending.items()]
        self._pending.clear()
        self.coalescing = True
        self._latest_heavy.clear()
        return batch


class Hub:
    """Lives on the event loop's thread; other threads publish through ``publish_threadsafe``."""

    def __init__(self) -> None:
        self._viewers: dict[str, set[Viewer]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def subscribe(self, run_id: str) -> Viewer:
        viewer = Viewer(run_id)
        self._viewers.setdefault(run_id, set()).add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        viewers = self._viewers.get(viewer.run_id)
        if viewers is not None:
            viewers.discard(viewer)
            if not viewers:
                del self._viewers[viewer.run_id]

    def viewers(self, run_id: str) -> int:
        return len(self._viewers.get(run_id, ()))

    def publish(self, run_id: str, seq: int, type_: str, raw: str) -> None:
        for viewer in tuple(self._viewers.get(run_id, ())):
            viewer.put(seq, type_, raw)

    def publish_many(self, run_id: str, items: list[tuple[int, str, str]]) -> None:
        for viewer in tuple(self._viewers.get(run_id, ())):
            for seq, type_, raw in items:
                viewer.put(seq, type_, raw)

    def publish_many_threadsafe(self, run_id: str, items: list[tuple[int, str, str]]) -> None:
        """Several events of one run with one wake of the loop (each wake is a write to its self-pipe and a
        turn of the loop)."""
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.publish_many, run_id, items)
            except RuntimeError:
                pass

    def publish_threadsafe(self, run_id: str, seq: int, type_: str, raw: str) -> None:
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.publish, run_id, seq, type_, raw)
            except RuntimeError:  # the loop closed between the check and the call: nobody is watching
                pass
