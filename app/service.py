"""Runs as the service sees them: the one owner of the store, the executor and the hub.

Routes translate HTTP and call this; executors report to it through the ``EventSink`` half. For each
event the sink (1) queues the row for the event log, (2) keeps the run's row current (status,
progress, summary), (3) publishes to the hub. ``stream`` is the replay-then-live hand-over every
WebSocket viewer gets (docs/architecture.md, "The seam"). What may be created is ``quotas.py``'s call,
and what is shared ``sharing.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from sqlalchemy.exc import OperationalError

from deepscope.app import sharing
from deepscope.app.disk import DiskFull
from deepscope.app.event_log import EventLog, EventWriter
from deepscope.app.executors import Executor
from deepscope.app.hub import Hub
from deepscope.app.quotas import Quotas
from deepscope.app.reconciler import Reconciler
from deepscope.app.statuses import FINISHED
from deepscope.app.store import Store, Transaction, now_iso
from deepscope.app.watched import WatchedRuns
from deepscope.engine.config import RunConfig
from deepscope.engine.events import EventType, Status

log = logging.getLogger("deepscope.service")

# A replay reads the store a page at a time, and the next page only when the socket has sent the last
# (each send waits while the client does not read): a page is what one socket holds at once. At most
# REPLAY_PAGE events and about REPLAY_BYTES of them: 64 layers events of a 100-layer net were 7 MB a
# socket, and 100 sockets that never read held 800 MB (now 0.9 to 4.8 MB each: the page, a frame and the
# allocator's slack, given back when they close: app/heap.py). The next page's length follows the sizes seen.
REPLAY_PAGE = 64
REPLAY_BYTES = 256 * 1024
# At most one live snapshot of a type per this many seconds per viewer: a 20-layer layers event is about
# 23 KB of JSON, so two a second keep a viewer under 50 KB/s (benchmarks/service.py measures it).
SNAPSHOT_INTERVAL_S = {EventType.LAYERS.value: 0.5, EventType.BOUNDARY.value: 0.5, EventType.SAMPLES.value: 1.0}


class RunService:
    """``quotas``: how many runs may be active (none: no limit). ``log``: where events and row updates
    are written (by default a batched ``EventWriter`` on the store, stopped by ``close``)."""

    def __init__(self, store: Store, hub: Hub, executor: Executor, quotas: Quotas | None = None,
                 log: EventLog | None = None) -> None:
        self.store, self.hub, self.executor = store, hub, executor
        self.quotas = quotas or Quotas()
        self.log = log or EventWriter(store, followers=sharing.followed)
        self._live: dict[str, dict[str, Any]] = {}  # active runs' newest state, ahead of the writer
        self._lock = threading.Lock()
        self.watched = WatchedRuns(self)
        self.reconciler = Reconciler(self)
        if hasattr(self.log, "on_disk_full"):
            self.log.on_disk_full = self._disk_filled

    def close(self) -> None:
        self.log.stop()

    # -- commands ---------------------------------------------------------------------------
    def submit(self, config: RunConfig, group: str | None = None, owner: str | None = None,
               address: str | None = None) -> dict[str, Any]:
        return self.submit_many([config], group=group, owner=owner, address=address)[0]

    def submit_many(self, configs: list[RunConfig], group: str | None = None,
                    owner: str | None = None, address: str | None = None) -> list[dict[str, Any]]:
        """Create the runs, all or none, within the quotas (checked in the creating transaction), then train
        each one, or, where an identical training exists or runs already, share it (docs/workshop.md).
        ``QuotaExceeded`` says which limit a request would pass."""
        if getattr(self.log, "disk_full", False):
            raise DiskFull()  # its row could not be stored, nor its events
        keys = sharing.keys_for(configs)

        def decide(tx: Transaction, ids: list[str]) -> list[dict[str, Any]]:
            plan = sharing.plan(tx, ids, keys)
            self.quotas.check(tx, owner, address, runs=len(configs),
                              trainings=sum(not row.get("shared_from") for row in plan))
            return plan

        # (a full disk met here is an OperationalError, which app/errors.py answers with the same 507)
        runs = self.store.create_runs([(c.display_name(), c.model_dump()) for c in configs], group=group,
                                      owner=owner, address=address, decide=decide)
        for i, run in enumerate(runs):
            if run["shared_from"] is None:
                try:
                    notice = self.executor.submit(run["id"], run["config"], owner)
                except Exception as exc:  # Redis away: no row may wait queued forever, nor hold a quota
                    self._not_queued(runs[i:], exc)
                    raise
                if notice:  # shown until the run starts (the first event rewrites the summary)
                    self.store.update_run(run["id"], summary={"notice": notice})
            else:
                sharing.catch_up(self.store, run["id"], run["shared_from"])
        return [self.get(run["id"]) or run for run in runs]

    def _disk_filled(self) -> None:
        """The database's disk is full (the event writer found out): the trainings in flight stop, since
        their events could not be stored; what they sent waits in the writer until the disk has room."""
        try:
            in_flight = self.store.trainings_in_flight()
        except OperationalError:
            return
        for run in in_flight:
            self.executor.cancel(run["id"])
        log.error("the disk is full: stopped %d trainings in flight", len(in_flight))

    def _not_queued(self, runs: list[dict[str, Any]], exc: Exception) -> None:
        """The runs of a request the executor could not take, and the shares of them: failed, saying so."""
        failed = {r["id"] for r in runs if r["shared_from"] is None}
        why = f"could not be queued ({type(exc).__name__}: the service could not reach its queue); submit it again"
        for run in runs:
            if run["id"] in failed or run["shared_from"] in failed:
                self.store.update_run(run["id"], status=Status.FAILED.value, finished_at=now_iso(), error=why)

    def last_seq(self, run_id: str) -> int:
        """The seq of a run's newest event (-1 before the first), the writer's queue included."""
        with self._lock:
            live = self._live.get(run_id)
            if live and "seq" in live:
                return live["seq"]
        run = self.store.get_run(run_id)
        return run["last_seq"] if run else -1

    def count_active(self, owner: str | None) -> int:
        return self.store.count_active(owner) if owner else 0

    def workers(self) -> list[dict[str, Any]]:
        return self.executor.workers()

    def cancel(self, run_id: str, force: bool = False) -> bool:
        """Stop a queued or running run. A share stops only itself (it ends at the event it had reached),
        and so does the owner of a training that classmates' runs share: the training goes on for them,
        until the last of them stops too. ``force`` (the instructor) stops the training for everyone."""
        run = self.store.get_run(run_id)
        if run and run["shared_from"]:
            sharing.stop_watching(self.store, run)
            if sharing.unwatched(self.store, run["shared_from"]):
                self.executor.cancel(run["shared_from"])
            return True
        if run and not force and sharing.others_watching(self.store, run):
            self.flush()  # so that every event up to where the owner leaves is stored
            sharing.owner_leaves(self.store, run, self.store.get_run(run_id)["last_seq"])
            return True
        return self.executor.cancel(run_id)

    def delete(self, run_id: str) -> None:
        """Forget a run (a training that others share keeps its events for them: ``sharing.forget``)."""
        run = self.store.get_run(run_id)
        if run is not None:
            sharing.forget(self.store, run)

    # -- reads ------------------------------------------------------------------------------
    def get(self, run_id: str) -> dict[str, Any] | None:
        run = self.store.get_run(run_id)
        if run is None:
            return None
        run = self._overlay(run)
        place = getattr(self.executor, "place", None)  # an executor of a test may not say
        if run["status"] == Status.QUEUED and not run["shared_from"] and place is not None:
            run["queue"] = place(run_id)
        return run

    def _events_of(self, run_id: str) -> tuple[str, int | None]:
        return sharing.events_of(self.store.get_run(run_id), run_id)

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        return [self._overlay(r) for r in self.store.list_runs(**filters)]

    def events(self, run_id: str, after: int = -1, limit: int = 1000,
               types: tuple[str, ...] | None = None) -> list[tuple[int, str, str]]:
        """Stored (seq, type, json) after ``after``, in seq order (a share's are its training's)."""
        source, until = self._events_of(run_id)
        rows = self.store.events(source, after=after, limit=limit, types=types)
        if until is not None:
            rows = [r for r in rows if r[0] <= until]
            if (types is None or EventType.STATUS in types) and after <= until and len(rows) < limit:
                rows.append(sharing.ended_at(until))
        return rows

    def missing(self, run_id: str) -> list[tuple[int, int]]:
        """The seq ranges a run's stored events skip (an outage lost them): the replay, the CSV and the
        report say so rather than hide the hole."""
        source, until = self._events_of(run_id)
        seqs = [s for s in self.store.event_seqs(source) if until is None or s <= until]
        return gaps(seqs, -1)

    def all_events(self, run_id: str, types: tuple[str, ...] | None = None, page: int = 1000) -> Iterator[dict]:
        """Every stored event of the given types, parsed, page by page."""
        after = -1
        while rows := self.events(run_id, after=after, limit=page, types=types):
            for _, _, raw in rows:
                yield orjson.loads(raw)
            after = rows[-1][0]

    def _overlay(self, run: dict[str, Any]) -> dict[str, Any]:
        """The row, with the newest state the writer has not stored yet (a share: its training's progress)."""
        if sharing.owner_left(run):
            return sharing.owner_view(run)
        key, attached = sharing.live_key(run)
        with self._lock:
            if run["status"] in FINISHED:
                # Stored as finished: final. (With several replicas, another one may have stored the end,
                # and this replica's live state would otherwise go stale at "running".)
                if not attached:
                    self._live.pop(key, None)
                live = None
            else:
                live = self._live.get(key)
            if live:
                run = {**run, **{k: v for k, v in live.items() if k in ("status", "progress", "started_at")
                                 or not attached and k != "seq"}}
        if run["shared_from"]:
            run["summary"] = {**run["summary"], "shared_from": run["shared_from"]}
        return run

    # -- the seam: replay, then live --------------------------------------------------------
    async def stream(self, run_id: str) -> AsyncIterator[str]:
        """Every event of a run as JSON text, in seq order, with no gap and no duplicate, ending after
        the terminal status (or when the viewer falls too far behind: ``ViewerOverflow``).

        Order matters: subscribe to the hub first (nothing published from now on is missed), then
        wait for the writer to commit what was published before (the store holds everything
        older), replay from the store, then forward live events whose seq is beyond the last sent.
        """
        source, until = await asyncio.to_thread(self._events_of, run_id)
        if until is not None:  # a cancelled share: what it had reached, then its end
            for _, _, raw in await asyncio.to_thread(self.events, run_id, -1, until + 2):
                yield raw
            return
        run_id = source  # a share streams its training's events, live or replayed
        viewer = self.hub.subscribe(run_id)
        try:
            await self.flushed()
            last, page = -1, 4  # the first page short: a run of heavy events is found out cheaply
            while rows := await asyncio.to_thread(self.events, run_id, last, page):
                size = sum(len(raw) for _, _, raw in rows)
                page = max(1, min(REPLAY_PAGE, REPLAY_BYTES * len(rows) // max(size, 1)))
                for seq, type_, raw in rows:
                    yield raw
                    last = seq
                    if _ends(type_, raw):
                        return
                del rows  # the page is sent: nothing of it stays while the socket waits for the next
            # Published but maybe not stored yet (another replica persists it): the executor has it.
            for seq, type_, raw in await asyncio.to_thread(self.executor.replay_after, run_id, last):
                yield raw
                last = seq
                if _ends(type_, raw):
                    return
            run = await asyncio.to_thread(self.store.get_run, run_id)
            if run is None or (run["status"] in FINISHED and run["last_seq"] <= last):
                return
            paced = _SnapshotPacing(last)
            while True:
                for _seq, type_, raw in paced.release(await viewer.get_batch(paced.wait())):
                    yield raw
                    if _ends(type_, raw):
                        return
                if viewer.overflowed:
                    raise ViewerOverflow(run_id)
        finally:
            self.hub.unsubscribe(viewer)

    # -- the sink ---------------------------------------------------------------------------
    def on_event(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        """Store then publish: the local executor's sink. The celery executor calls the two halves from
        different readers (a consumer group persists; every replica publishes to its own viewers)."""
        self.persist(run_id, event, raw)
        self.publish(run_id, event, raw)

    def on_events(self, run_id: str, batch: list[tuple[dict[str, Any], str]]) -> None:
        """``on_event`` for several events of one run, handed to the page's loop at once."""
        for event, raw in batch:
            self.persist(run_id, event, raw)
        self.hub.publish_many_threadsafe(run_id, [(event["seq"], event["type"], raw) for event, raw in batch])

    def publish(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        self.hub.publish_threadsafe(run_id, event["seq"], event["type"], raw)

    def flush(self, timeout: float = 10.0) -> bool:
        """Returns once every event handed to ``persist`` before the call is committed: True, or False if
        that did not happen within ``timeout`` (the database is out of reach)."""
        return self.log.flush(timeout)

    async def flushed(self, timeout: float = 10.0) -> bool:
        """``flush`` for the event loop: awaits the writer's barrier without holding a thread."""
        loop = asyncio.get_running_loop()
        stored = loop.create_future()

        def done() -> None:
            try:
                loop.call_soon_threadsafe(lambda: stored.done() or stored.set_result(True))
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

        self.log.when_stored(done)
        try:
            return await asyncio.wait_for(stored, timeout)
        except TimeoutError:
            return False

    def persist(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        type_, seq = event["type"], event["seq"]
        self.log.add_event(run_id, seq, type_, event.get("step"), raw)
        with self._lock:
            live = self._live.setdefault(run_id, {})
            fields = {"seq": seq, **_row_fields(event, live.get("summary", {}))}
            ends = fields.get("status") in FINISHED
            # Durable before anyone is told: a client that reads a finished run can read all its events.
            live.update({k: v for k, v in fields.items() if k != "status"} if ends else fields)
        self.log.update_run(run_id, **fields)
        if ends:
            stored = self.flush()
            with self._lock:
                if stored:
                    self._live.pop(run_id, None)
                else:  # the database is out of reach: the live state is what the service knows
                    self._live.setdefault(run_id, {}).update(fields)


class _SnapshotPacing:
    """Live snapshots (layers, boundary, samples) at the rate a page shows them, for a classroom's Wi-Fi:
    at most one of a type per SNAPSHOT_INTERVAL_S. One that comes sooner waits, and the events behind it
    wait with it (so the stream stays in seq order, delayed by at most the interval); a waiting snapshot
    that a newer one of its type supersedes is skipped, as a viewer that falls behind skips it."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.pending: list[tuple[int, str, str]] = []
        self.sent_at: dict[str, float] = {}

    def release(self, batch: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        for item in batch:
            if item[0] > self.last and (not self.pending or item[0] > self.pending[-1][0]):
                self.pending.append(item)
        now, out, i = time.monotonic(), [], 0
        while i < len(self.pending):
            seq, type_, raw = self.pending[i]
            if type_ in SNAPSHOT_INTERVAL_S:
                if any(t == type_ for _, t, _ in self.pending[i + 1:]):
                    i += 1  # superseded by a newer one already waiting
                    continue
                if now - self.sent_at.get(type_, -1e9) < SNAPSHOT_INTERVAL_S[type_]:
                    break
                self.sent_at[type_] = now
            out.append(self.pending[i])
            self.last = seq
            i += 1
        self.pending = self.pending[i:]
        return out

    def wait(self) -> float | None:
        """How long the next read may wait: until the first waiting snapshot is due (None: no limit)."""
        if not self.pending:
            return None
        type_ = self.pending[0][1]
        return max(0.0, self.sent_at.get(type_, 0.0) + SNAPSHOT_INTERVAL_S.get(type_, 0.0) - time.monotonic())


class ViewerOverflow(Exception):
    """A live viewer fell so far behind that its queue overflowed; it should reconnect and replay."""


def gaps(seqs: list[int], after: int) -> list[tuple[int, int]]:
    """The (first, last) seq ranges missing from ``seqs`` (sorted), counting from after + 1."""
    out, expected = [], after + 1
    for seq in seqs:
        if seq > expected:
            out.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    return out


def say_gaps(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def _ends(type_: str, raw: str) -> bool:
    return type_ == EventType.STATUS and orjson.loads(raw).get("status") in FINISHED


def _row_fields(event: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """What one event changes in its run's row."""
    type_ = event["type"]
    if type_ == EventType.STATUS:
        status = event["status"]
        fields: dict[str, Any] = {"status": status}
        if status == Status.RUNNING:
            fields["started_at"] = now_iso()
        elif status in FINISHED:
            fields["finished_at"] = now_iso()
            fields["summary"] = {**summary, **(event.get("summary") or {})}
            if status == Status.COMPLETED:
                fields["progress"] = 1.0
            if status in (Status.FAILED, Status.CANCELLED):
                fields["error"] = event.get("message")
        return fields
    if type_ == EventType.STEP:
        return {"progress": event.get("progress", 0.0), "summary": {**summary, "train_loss_batch": event["loss"]}}
    if type_ == EventType.EVAL:
        metrics = {k: event[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
        return {"summary": {**summary, **metrics, "epoch": event["epoch"]}}
    return {}

