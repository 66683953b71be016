"""Runs as the service sees them: the one owner of the store, the executor and the hub.

Routes translate HTTP and call this; executors report to it through the ``EventSink`` half. For each
event the sink (1) queues the row for the batched writer, (2) keeps the run's row current (status,
progress, summary), (3) publishes to the hub. ``stream`` is the replay-then-live hand-over every
WebSocket viewer gets (docs/architecture.md, "The seam").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from deepscope.app.executors import Executor
from deepscope.app.hub import Hub
from deepscope.app.statuses import FINISHED
from deepscope.app.store import Store, now_iso
from deepscope.engine.config import RunConfig
from deepscope.engine.events import EventType, Status

REPLAY_PAGE = 1000  # events per store read while replaying: bounds what a socket holds at once


class QuotaExceeded(Exception):
    def __init__(self, message: str, retry_after: int = 10) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RunService:
    def __init__(self, store: Store, hub: Hub, executor: Executor, max_queued: int = 200,
                 max_active_per_client: int = 0) -> None:
        self.store, self.hub, self.executor = store, hub, executor
        self.max_queued = max_queued
        self.max_active_per_client = max_active_per_client
        self._live: dict[str, dict[str, Any]] = {}  # active runs' newest state, ahead of the writer
        self._lock = threading.Lock()

    # -- commands ---------------------------------------------------------------------------
    def submit(self, config: RunConfig, group: str | None = None, owner: str | None = None) -> dict[str, Any]:
        self.check_quota(1, owner)
        run = self.store.create_run(config.display_name(), config.model_dump(), group=group, owner=owner)
        self.executor.submit(run["id"], run["config"])
        return run

    def check_quota(self, n: int, owner: str | None) -> None:
        if self.store.count_active() + n > self.max_queued:
            raise QuotaExceeded(f"the server already has {self.max_queued} runs queued or running; "
                                "try again when some finish", retry_after=30)
        if self.max_active_per_client and owner is not None:
            active = self.store.count_active(owner)
            if active + n > self.max_active_per_client:
                raise QuotaExceeded(f"you have {active} runs queued or running and may have at most "
                                    f"{self.max_active_per_client}; cancel one or wait for it to finish")

    def cancel(self, run_id: str) -> bool:
        return self.executor.cancel(run_id)

    def delete(self, run_id: str) -> None:
        self.store.delete_run(run_id)

    # -- reads ------------------------------------------------------------------------------
    def get(self, run_id: str) -> dict[str, Any] | None:
        run = self.store.get_run(run_id)
        return self._overlay(run) if run else None

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        return [self._overlay(r) for r in self.store.list_runs(**filters)]

    def events(self, run_id: str, after: int = -1, limit: int = 1000,
               types: tuple[str, ...] | None = None) -> list[tuple[int, str, str]]:
        """Stored (seq, type, json) after ``after``, in seq order."""
        return self.store.events(run_id, after=after, limit=limit, types=types)

    def all_events(self, run_id: str, types: tuple[str, ...] | None = None, page: int = 5000) -> Iterator[dict]:
        """Every stored event of the given types, parsed, page by page."""
        after = -1
        while rows := self.events(run_id, after=after, limit=page, types=types):
            for _, _, raw in rows:
                yield orjson.loads(raw)
            after = rows[-1][0]

    def _overlay(self, run: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            live = self._live.get(run["id"])
            if live:
                run = {**run, **{k: v for k, v in live.items() if k != "seq"}}
        return run

    # -- the seam: replay, then live --------------------------------------------------------
    async def stream(self, run_id: str) -> AsyncIterator[str]:
        """Every event of a run as JSON text, in seq order, with no gap and no duplicate, ending after
        the terminal status (or when the viewer falls too far behind: ``ViewerOverflow``).

        Order matters: subscribe to the hub first (nothing published from now on is missed), then
        wait for the writer to commit what was published before (the store holds everything
        older), replay from the store, then forward live events whose seq is beyond the last sent.
        """
        viewer = self.hub.subscribe(run_id)
        try:
            await asyncio.to_thread(self.flush)
            last = -1
            while rows := await asyncio.to_thread(self.events, run_id, last, REPLAY_PAGE):
                for seq, type_, raw in rows:
                    yield raw
                    last = seq
                    if _ends(type_, raw):
                        return
            # Published but maybe not stored yet (another replica persists it): the executor has it.
            for seq, type_, raw in await asyncio.to_thread(self.executor.replay_after, run_id, last):
                yield raw
                last = seq
                if _ends(type_, raw):
                    return
            run = await asyncio.to_thread(self.store.get_run, run_id)
            if run is None or (run["status"] in FINISHED and run["last_seq"] <= last):
                return
            while True:
                for seq, type_, raw in await viewer.get_batch():
                    if seq <= last:
                        continue
                    yield raw
                    last = seq
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

    def publish(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        self.hub.publish_threadsafe(run_id, event["seq"], event["type"], raw)

    def flush(self) -> None:
        """Returns once every event handed to ``persist`` before the call is committed."""
        self.store.writer.flush()

    def persist(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        type_, seq = event["type"], event["seq"]
        self.store.writer.add_event(run_id, seq, type_, event.get("step"), raw)
        with self._lock:
            live = self._live.setdefault(run_id, {})
            fields = {"seq": seq, **_row_fields(event, live.get("summary", {}))}
            live.update(fields)
        self.store.writer.update_run(run_id, **fields)
        if fields.get("status") in FINISHED:
            # Durable before anyone is told: a client that sees the terminal event can read the final row.
            self.flush()
            with self._lock:
                self._live.pop(run_id, None)


class ViewerOverflow(Exception):
    """A live viewer fell so far behind that its queue overflowed; it should reconnect and replay."""


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

