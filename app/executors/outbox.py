"""A Celery worker's events on their way to the run's Redis Stream: in order, and held through an outage.

Training never waits on Redis. An event that cannot be written stays here with the ones after it, and
they all go out, in order, once Redis answers again (tried at most every RETRY_S). A Redis restarted
without persistence has also forgotten the run, so the first write after an outage registers it again
(as the worker's heartbeat does while the run trains, app/executors/celery_app.py): the service's
readers find its stream, and its reconciler sees an owner.

What waits is bounded (MAX_BYTES): past it the run is stopped, saying why, and its last events wait
for Redis at the end, up to CLOSE_WAIT_S. A run whose events never get out is ended by the service's
reconciler, which finds it owned by no worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import orjson
import redis

from deepscope.app.executors import redis_keys as K

log = logging.getLogger("deepscope.worker")

RETRY_S = 0.5            # between attempts while Redis is away
MAX_BYTES = 64 * 2**20   # held events: a dense run writes about 0.2 MB a second, so minutes of outage
CLOSE_WAIT_S = 120.0     # how long a finished run's last events wait for Redis


class Outbox:
    def __init__(self, r: redis.Redis, run_id: str) -> None:
        self.r, self.run_id = r, run_id
        self.stream = K.stream(run_id)
        self._pending: deque[bytes] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._next_try = 0.0
        self.down_since: float | None = None  # when the first write failed (None: Redis answers)

    def put(self, event: dict[str, Any]) -> None:
        raw = orjson.dumps(event)
        with self._lock:
            self._pending.append(raw)
            self._bytes += len(raw)
            self._send()

    def drain(self) -> bool:
        """Write what waits, if Redis answers (the heartbeat calls it, so a quiet run catches up too)."""
        with self._lock:
            return self._send()

    @property
    def full(self) -> bool:
        return self._bytes > MAX_BYTES

    def stop_reason(self) -> str | None:
        """Why the run must stop, for its should_stop: too much waits for a Redis that does not answer."""
        if not self.full:
            return None
        away = time.monotonic() - (self.down_since or time.monotonic())
        return f"stopped: its events could not reach Redis for {away:.0f} s ({MAX_BYTES // 2**20} MB waiting)"

    def close(self, wait_s: float = CLOSE_WAIT_S) -> bool:
        """After training: wait (up to ``wait_s``) for the last events to get out. False: they did not."""
        deadline = time.monotonic() + wait_s
        while not self.drain():
            if time.monotonic() > deadline:
                log.error("run %s: %d events never reached Redis", self.run_id, len(self._pending))
                return False
            time.sleep(RETRY_S)
        return True

    def _send(self) -> bool:
        if not self._pending:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        try:
            pipe = self.r.pipeline(transaction=False)
            if self.down_since is not None:  # Redis may have restarted empty: the service's readers must
                pipe.sadd(K.ACTIVE, self.run_id)  # find the stream again (the heartbeat does it too, while it beats)
            for raw in self._pending:
                pipe.xadd(self.stream, {b"e": raw}, maxlen=K.STREAM_MAXLEN, approximate=True)
            pipe.execute()
        except redis.RedisError as exc:
            # A write cut off half-way may have landed some events: written again, they are stored once
            # (the store is idempotent by seq).
            if self.down_since is None:
                self.down_since = now
                log.warning("run %s: Redis does not answer (%s); its events wait in the worker", self.run_id, exc)
            self._next_try = now + RETRY_S
            return False
        if self.down_since is not None:
            log.warning("run %s: Redis is back after %.1f s; %d waiting events sent", self.run_id,
                        now - self.down_since, len(self._pending))
            self.down_since = None
        self._pending.clear()
        self._bytes = 0
        return True
