"""A queue served round-robin across owners: one student with ten runs queued does not make a
classmate's first run wait behind all ten. Within one owner, first in, first out."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any


class FairQueue:
    def __init__(self) -> None:
        # owner -> their waiting runs; the order of owners is the rotation (served owner goes last)
        self._by_owner: OrderedDict[str | None, deque[tuple[str, Any]]] = OrderedDict()

    def put(self, owner: str | None, run_id: str, item: Any) -> None:
        self._by_owner.setdefault(owner, deque()).append((run_id, item))

    def pop(self) -> tuple[str, Any]:
        """The next run: the first of the owner whose turn it is. IndexError when empty."""
        owner, runs = next(iter(self._by_owner.items()))
        entry = runs.popleft()
        del self._by_owner[owner]
        if runs:
            self._by_owner[owner] = runs  # back of the rotation
        return entry

    def remove(self, run_id: str) -> bool:
        for owner, runs in self._by_owner.items():
            for entry in runs:
                if entry[0] == run_id:
                    runs.remove(entry)
                    if not runs:
                        del self._by_owner[owner]
                    return True
        return False

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._by_owner.values())

    def __bool__(self) -> bool:
        return bool(self._by_owner)
