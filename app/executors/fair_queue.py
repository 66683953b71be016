"""A queue served round-robin across owners: one student with ten runs queued does not make a
classmate's first run wait behind all ten. Within one owner, first in, first out.

The rule is written once, over named lists: in memory for the local executor, in Redis for the Celery
executor (so the queue survives a restart and every replica shares it). An owner joins the back of
the rotation when their first run arrives; after each turn they go to the back if they have more.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, Protocol

import orjson

from deepscope.app.executors import redis_keys as K


class Lists(Protocol):
    """Named FIFO lists of items."""

    def push(self, name: str, item: Any) -> None: ...

    def pop(self, name: str) -> Any | None: ...

    def items(self, name: str) -> list[Any]: ...

    def remove(self, name: str, item: Any) -> None: ...

    def length(self, name: str) -> int: ...


class MemoryLists:
    def __init__(self) -> None:
        self._lists: dict[str, deque] = defaultdict(deque)

    def push(self, name: str, item: Any) -> None:
        self._lists[name].append(item)

    def pop(self, name: str) -> Any | None:
        q = self._lists.get(name)
        return q.popleft() if q else None

    def items(self, name: str) -> list[Any]:
        return list(self._lists.get(name, ()))

    def remove(self, name: str, item: Any) -> None:
        self._lists[name].remove(item)

    def length(self, name: str) -> int:
        return len(self._lists.get(name, ()))


class RedisLists:
    """Lists in Redis; items are stored as JSON."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def push(self, name: str, item: Any) -> None:
        self.redis.rpush(name, orjson.dumps(item))

    def pop(self, name: str) -> Any | None:
        raw = self.redis.lpop(name)
        return None if raw is None else orjson.loads(raw)

    def items(self, name: str) -> list[Any]:
        return [orjson.loads(raw) for raw in self.redis.lrange(name, 0, -1)]

    def remove(self, name: str, item: Any) -> None:
        self.redis.lrem(name, 1, orjson.dumps(item))

    def length(self, name: str) -> int:
        return int(self.redis.llen(name))


class FairQueue:
    """Runs waiting for ``queue``, served round-robin across owners (None is an owner too)."""

    def __init__(self, lists: Lists | None = None, queue: str = "runs") -> None:
        self.lists = lists or MemoryLists()
        self._owners = K.fair_owners(queue)
        self._runs = lambda owner: K.fair_runs(queue, owner)

    def put(self, owner: str | None, run_id: str, item: Any) -> None:
        who = owner or "-"
        self.lists.push(self._runs(who), [run_id, item])
        if who not in self.lists.items(self._owners):
            self.lists.push(self._owners, who)

    def pop(self) -> tuple[str, Any]:
        """The next run: the first of the owner whose turn it is. IndexError when empty."""
        while (who := self.lists.pop(self._owners)) is not None:
            entry = self.lists.pop(self._runs(who))
            if self.lists.length(self._runs(who)) and who not in self.lists.items(self._owners):
                self.lists.push(self._owners, who)  # back of the rotation
            if entry is not None:
                return entry[0], entry[1]
        raise IndexError("the queue is empty")

    def order(self) -> list[tuple[str, Any]]:
        """Every waiting run, in the order ``pop`` will give them (the rotation played out)."""
        queues = {who: list(self.lists.items(self._runs(who))) for who in self.lists.items(self._owners)}
        out: list[tuple[str, Any]] = []
        while any(queues.values()):
            for who in list(queues):
                if queues[who]:
                    entry = queues[who].pop(0)
                    out.append((entry[0], entry[1]))
        return out

    def remove(self, run_id: str) -> bool:
        for who in self.lists.items(self._owners):
            for entry in self.lists.items(self._runs(who)):
                if entry[0] == run_id:
                    self.lists.remove(self._runs(who), entry)
                    if not self.lists.length(self._runs(who)):
                        self.lists.remove(self._owners, who)
                    return True
        return False

    def __len__(self) -> int:
        return sum(self.lists.length(self._runs(who)) for who in self.lists.items(self._owners))

    def __bool__(self) -> bool:
        return bool(self.lists.length(self._owners))
