"""Scale-out executor: runs go to Celery workers over Redis; events come back on one Redis Stream per run.

The service side runs three threads:
- the persister reads every active run's stream through the consumer group ``persist`` and stores
  each event, acknowledging it only once it is committed: with several replicas each event is
  handled by one of them, and after a restart a replica first re-reads what it had not acknowledged;
- the live reader reads the same streams without a group and publishes to this replica's viewers;
- the reaper (one replica at a time, by a Redis lock) fails runs whose worker stopped beating, and
  kills (revoke, terminate) runs that ignore a cancel or their time limit.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import orjson
import redis

from deepscope.app.executors import EventSink, policy
from deepscope.app.executors import redis_keys as K
from deepscope.app.executors.celery_app import QUEUES, make_celery
from deepscope.app.executors.fair_queue import FairQueue, RedisLists
from deepscope.app.settings import Settings
from deepscope.engine.events import is_finished_status

log = logging.getLogger("deepscope.celery")
# A persister asks Redis at least every 200 ms (its blocking read): one silent for this long has stopped
LIVE_IDLE_MS = 2000


def _run_id(stream: bytes | str) -> str:
    name = stream.decode() if isinstance(stream, bytes) else stream
    return name.rsplit(":", 1)[-1]


class CeleryExecutor:
    interrupts_on_restart = False  # runs live on in the workers while the service restarts

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url, "the celery executor needs DEEPSCOPE_REDIS_URL"
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.celery = make_celery(settings.redis_url)
        self.consumer = settings.replica_id or socket.gethostname()
        self.time_limit_s = settings.run_time_limit_s
        self._sink: EventSink | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.persisted = 0
        self.published = 0

    # -- interface --------------------------------------------------------------------------
    def start(self, sink: EventSink) -> None:
        self._sink = sink
        self.redis.ping()  # fail at start-up, with Redis's own message, rather than on the first submit
        for target, name in ((self._persist_loop, "persister"), (self._live_loop, "live-reader"),
                             (self._reap_loop, "reaper")):
            t = threading.Thread(target=target, name=f"deepscope-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, run_id: str, config: dict[str, Any], owner: str | None = None) -> str | None:
        stream = K.stream(run_id)
        try:
            self.redis.xgroup_create(stream, K.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.redis.sadd(K.ACTIVE, run_id)
        queue = "gpu" if config.get("train", {}).get("device") == "cuda" else "runs"
        # Into the fair queue (in Redis, so it survives a restart); the dispatcher feeds Celery from it.
        self._fair(queue).put(owner, run_id, config)
        self._dispatch(queue)
        if queue == "gpu" and not self._consumers("gpu"):
            return ("waiting for a GPU worker: none is connected to the gpu queue (start one on a GPU machine "
                    "with: deepscope worker --queues gpu)")
        return None

    def _consumers(self, queue: str) -> list[str]:
        """Workers that take ``queue`` now (asks them: about half a second)."""
        try:
            replies = self.celery.control.inspect(timeout=0.5).active_queues() or {}
        except Exception:  # no answer is no worker
            return []
        return [w for w, queues in replies.items() if any(q.get("name") == queue for q in queues)]

    def _fair(self, queue: str) -> FairQueue:
        return FairQueue(RedisLists(self.redis), queue)

    def _dispatch(self, queue: str) -> None:
        """Move runs from the fair queue into Celery's, round-robin across owners, while Celery's queue
        is short: a student with ten runs waiting gets one in turn, like everyone else. One replica at a
        time (a Redis lock)."""
        if not self.redis.set(K.dispatch_lock(queue), self.consumer, nx=True, px=2000):
            return
        try:
            fair = self._fair(queue)
            while self.redis.llen(queue) < K.DISPATCH_AHEAD and fair:
                run_id, config = fair.pop()
                self.celery.send_task("deepscope.train_run", task_id=run_id, queue=queue, args=[
                    run_id, config, self.time_limit_s, self.settings.max_run_memory_mb, self.settings.max_run_mb])
        except IndexError:
            pass
        finally:
            self.redis.delete(K.dispatch_lock(queue))

    def cancel(self, run_id: str) -> bool:
        if self.redis.set(K.claim(run_id), f"cancelled|{time.time()}", nx=True, ex=K.FLAG_TTL_S):
            # Still queued: no worker will start it now. Its one event says so.
            self.celery.control.revoke(run_id)
            self._append(run_id, policy.cancelled_while_queued())
            return True
        self.redis.set(K.cancel(run_id), str(time.time()), ex=K.FLAG_TTL_S)
        return True

    def place(self, run_id: str) -> dict[str, Any] | None:
        """Where a waiting run is: behind the runs already handed to Celery, then in the fair queue's
        order. (No start estimate: the workers are elsewhere, and how many there are changes.)"""
        for queue in QUEUES:
            order = [r for r, _ in self._fair(queue).order()]
            if run_id in order:
                ahead = self.redis.llen(queue)
                return {"place": ahead + order.index(run_id) + 1, "of": ahead + len(order), "starts_in_s": None}
        return None

    def replay_after(self, run_id: str, seq: int) -> list[tuple[int, str, str]]:
        out: list[tuple[int, str, str]] = []
        top = "+"
        while True:
            page = self.redis.xrevrange(K.stream(run_id), max=top, min="-", count=200)
            for _, fields in page:
                raw = fields[b"e"]
                event = orjson.loads(raw)
                if event["seq"] <= seq:
                    return sorted(out)
                out.append((event["seq"], event["type"], raw.decode()))
            if len(page) < 200:
                return sorted(out)
            top = f"({page[-1][0].decode()}"

    def shutdown(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.redis.close()

    def stats(self) -> dict[str, Any]:
        try:
            queued = {q: self.redis.llen(q) for q in ("runs", "gpu")}
            active = self.redis.scard(K.ACTIVE)
        except redis.RedisError as exc:
            return {"executor": "celery", "redis": f"unreachable: {exc}"}
        return {"executor": "celery", "replica": self.consumer, "queued": queued, "active_runs": active,
                "persisted": self.persisted, "published": self.published}

    def workers(self) -> list[dict[str, Any]]:
        """Asks the connected Celery workers (about a second): each one's queues and the runs it trains."""
        try:
            inspect = self.celery.control.inspect(timeout=1.0)
            queues, active = inspect.active_queues() or {}, inspect.active() or {}
        except Exception:  # no answer is no worker
            return []
        return [{"name": name, "queues": sorted(q.get("name") for q in qs),
                 "busy": next((t.get("id") for t in active.get(name, [])), None), "ready": True}
                for name, qs in sorted(queues.items())]

    # -- helpers ----------------------------------------------------------------------------
    def _append(self, run_id: str, event: dict[str, Any]) -> None:
        self.redis.xadd(K.stream(run_id), {b"e": orjson.dumps(event)}, maxlen=K.STREAM_MAXLEN, approximate=True)

    def _active_streams(self) -> list[str]:
        return [K.stream(r.decode()) for r in self.redis.smembers(K.ACTIVE)]

    def _loop(self, body, name: str) -> None:
        while not self._stop.is_set():
            try:
                body()
            except redis.RedisError as exc:  # Redis restarting: keep trying, never take the service down
                log.warning("%s: %s; retrying", name, exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("%s failed; retrying", name)
                self._stop.wait(1.0)

    # -- the persister ----------------------------------------------------------------------
    def _persist_loop(self) -> None:
        state = {"backlog_done": False, "last_claim": 0.0}
        self._loop(lambda: self._persist_once(state), "persister")

    def _persist_once(self, state: dict[str, Any]) -> None:
        streams = self._active_streams()
        if not streams:
            self._stop.wait(0.2)
            return
        for s in streams:
            try:
                self.redis.xgroup_create(s, K.GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        if not state["backlog_done"]:
            # First what this replica read but never acknowledged before it stopped.
            pending = self.redis.xreadgroup(K.GROUP, self.consumer, {s: "0" for s in streams}, count=1000)
            self._store(pending)
            state["backlog_done"] = True
        if time.monotonic() - state["last_claim"] > 5:
            state["last_claim"] = time.monotonic()
            for s in streams:  # what a vanished replica read and never acknowledged
                _, claimed, *_ = self.redis.xautoclaim(s, K.GROUP, self.consumer, min_idle_time=30_000,
                                                       start_id="0-0", count=1000)
                if claimed:
                    self._store([(s.encode(), claimed)])
        batch = self.redis.xreadgroup(K.GROUP, self.consumer, {s: ">" for s in streams}, count=500, block=200)
        self._store(batch)

    def _store(self, batch: Any) -> None:
        if not batch:
            return
        assert self._sink is not None
        finished = []
        for stream, entries in batch:
            run_id = _run_id(stream)
            ids = []
            for entry_id, fields in entries:
                if not fields:  # trimmed away before it was read: stored already by whoever read it
                    ids.append(entry_id)
                    continue
                raw = fields[b"e"]
                event = orjson.loads(raw)
                self._sink.persist(run_id, event, raw.decode())
                ids.append(entry_id)
                self.persisted += 1
                if is_finished_status(event):
                    finished.append(run_id)
            # Acknowledge only what is committed: a crash before this line means a re-read, not a loss.
            # While the database is out of reach, the entries wait unacknowledged in Redis (and this
            # persister with them); live viewers go on through the live reader.
            while not self._sink.flush(5.0):
                log.warning("the store is behind (the database is out of reach): %d entries of %s wait in Redis",
                            len(ids), run_id)
                if self._stop.is_set():
                    return
            if ids:
                self.redis.xack(stream, K.GROUP, *ids)
        for run_id in finished:
            self._claim_leftovers(K.stream(run_id))
            self.redis.srem(K.ACTIVE, run_id)
            self.redis.expire(K.stream(run_id), K.STREAM_TTL_S)

    def _claim_leftovers(self, stream: str) -> None:
        """A run has ended: what a replica that stopped read of it and never acknowledged is claimed now and
        stored, since the run leaves the active set after this and the periodic claim would never see its
        stream again. A consumer that answered Redis within LIVE_IDLE_MS is alive and stores its own."""
        for consumer in self.redis.xinfo_consumers(stream, K.GROUP):
            name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
            if name == self.consumer or not consumer["pending"] or consumer["idle"] < LIVE_IDLE_MS:
                continue
            held = self.redis.xpending_range(stream, K.GROUP, min="-", max="+", count=10_000, consumername=name)
            claimed = self.redis.xclaim(stream, K.GROUP, self.consumer, min_idle_time=0,
                                        message_ids=[h["message_id"] for h in held]) if held else []
            if claimed:
                log.warning("%s: %d entries %s read and never stored, stored now", stream, len(claimed), name)
                self._store([(stream.encode(), claimed)])

    # -- the live reader --------------------------------------------------------------------
    def _live_loop(self) -> None:
        cursors: dict[str, str] = {}
        self._loop(lambda: self._live_once(cursors), "live reader")

    def _live_once(self, cursors: dict[str, str]) -> None:
        streams = self._active_streams()
        for s in streams:
            # From the start: events added before this reader noticed the stream still reach viewers
            # who subscribed early (a viewer drops what it already has by seq).
            cursors.setdefault(s, "0-0")
        for s in list(cursors):
            if s not in streams:
                del cursors[s]
        if not cursors:
            self._stop.wait(0.2)
            return
        assert self._sink is not None
        for stream, entries in self.redis.xread(dict(cursors), count=500, block=200) or []:
            name = stream.decode()
            for entry_id, fields in entries:
                cursors[name] = entry_id.decode()
                raw = fields[b"e"]
                self._sink.publish(_run_id(name), orjson.loads(raw), raw.decode())
                self.published += 1

    # -- the reconciler's questions (app/service.py) ---------------------------------------------
    def unowned(self, run_ids: list[str]) -> set[str] | None:
        """Which of these runs (queued or running in the database) Redis knows nothing of: no worker and
        no queue holds them, as after a Redis restart without persistence (a worker that trained on
        through it registers its run again as soon as it can write). None: another replica answers
        this round, or Redis is away."""
        try:
            if not self.redis.set(K.RECONCILE_LOCK, self.consumer, nx=True, ex=4):
                return None
            pipe = self.redis.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.sismember(K.ACTIVE, run_id)
                pipe.exists(K.heartbeat(run_id))
                pipe.xrevrange(K.stream(run_id), count=1)
            answers = pipe.execute()
        except redis.RedisError:
            return None
        unowned = set()
        for k, run_id in enumerate(run_ids):
            active, beating, newest = answers[3 * k:3 * k + 3]
            # held: registered, trained by a live worker, or its end written and waiting to be stored
            ending = bool(newest) and is_finished_status(orjson.loads(newest[0][1][b"e"]))
            if not (active or beating or ending):
                unowned.add(run_id)
        return unowned

    def end_unowned(self, run_id: str, event: dict[str, Any]) -> None:
        """End a run no worker owns with ``event``, through its stream (every replica's viewers are told,
        the persister stores it); a worker that still holds it and comes back stops."""
        self.redis.set(K.cancel(run_id), str(time.time()), ex=K.FLAG_TTL_S)
        self.redis.sadd(K.ACTIVE, run_id)
        self._append(run_id, event)

    # -- the reaper -------------------------------------------------------------------------
    def _reap_loop(self) -> None:
        def once() -> None:
            for queue in QUEUES:
                self._dispatch(queue)
            if self.redis.set(K.REAPER_LOCK, self.consumer, nx=True, ex=5):
                self._reap()
            self._stop.wait(0.25)

        self._loop(once, "reaper")

    def _reap(self) -> None:
        now = time.time()
        for raw_id in self.redis.smembers(K.ACTIVE):
            run_id = raw_id.decode()
            claim = self.redis.get(K.claim(run_id))
            if claim is None or claim.startswith(b"cancelled|"):
                continue  # still queued, or cancelled before it started
            last = self.redis.xrevrange(K.stream(run_id), count=1)
            last_event = orjson.loads(last[0][1][b"e"]) if last else None
            if last_event and is_finished_status(last_event):
                continue
            cancel_at = self.redis.get(K.cancel(run_id))
            started = float(claim.split(b"|")[-1]) if b"|" in claim else now
            if self.redis.exists(K.heartbeat(run_id)):
                if policy.overdue(now, float(cancel_at) if cancel_at else None, started, self.time_limit_s):
                    # it ignores its stop signal: kill the child process that runs it
                    self.celery.control.revoke(run_id, terminate=True, signal="SIGKILL")
                continue
            # No heartbeat: the worker is gone. Say so in the run's own stream, after its last event.
            event = policy.worker_lost(last_event["seq"] if last_event else -1, "the worker running this run "
                                       f"stopped answering (no heartbeat for {K.HEARTBEAT_TTL_S} s)",
                                       cancelled=bool(cancel_at))
            self.redis.set(K.cancel(run_id), str(now), ex=K.FLAG_TTL_S)  # a zombie that wakes up stops
            self._append(run_id, event)
            log.warning("run %s: %s", run_id, event["message"])
