"""Runs as the service sees them: submit, cancel, delete, and the sink every executor reports to.

The sink runs on the executor's thread. For each event it (1) queues the row for the batched
writer, (2) keeps the run's row current (status, progress, summary), (3) publishes to the hub.
"""

from __future__ import annotations

import threading
from typing import Any

from app.executors import Executor
from app.hub import Hub
from app.store import ACTIVE, TERMINAL, Store, now_iso
from engine.config import RunConfig


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

    def get(self, run_id: str) -> dict[str, Any] | None:
        run = self.store.get_run(run_id)
        return self._overlay(run) if run else None

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        return [self._overlay(r) for r in self.store.list_runs(**filters)]

    def _overlay(self, run: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            live = self._live.get(run["id"])
            if live:
                run = {**run, **{k: v for k, v in live.items() if k != "seq"}}
        return run

    # -- the sink ---------------------------------------------------------------------------
    def on_event(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        """Store then publish: the local executor's sink. The celery executor calls the two halves from
        different readers (a consumer group persists; every replica publishes to its own viewers)."""
        self.persist(run_id, event, raw)
        self.publish(run_id, event, raw)

    def publish(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        self.hub.publish_threadsafe(run_id, event["seq"], event["type"], raw)

    def persist(self, run_id: str, event: dict[str, Any], raw: str) -> None:
        type_, seq = event["type"], event["seq"]
        self.store.writer.add_event(run_id, seq, type_, event.get("step"), raw)
        fields: dict[str, Any] = {"seq": seq}
        with self._lock:
            live = self._live.setdefault(run_id, {})
            if type_ == "status":
                status = event["status"]
                fields["status"] = status
                if status == "running":
                    fields["started_at"] = now_iso()
                elif status in TERMINAL:
                    fields["finished_at"] = now_iso()
                    fields["summary"] = {**live.get("summary", {}), **(event.get("summary") or {})}
                    if status == "completed":
                        fields["progress"] = 1.0
                    if status in ("failed", "cancelled"):
                        fields["error"] = event.get("message")
            elif type_ == "step":
                fields["progress"] = event.get("progress", 0.0)
                fields["summary"] = {**live.get("summary", {}), "train_loss_batch": event["loss"]}
            elif type_ == "eval":
                metrics = {k: event[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
                fields["summary"] = {**live.get("summary", {}), **metrics, "epoch": event["epoch"]}
            live.update(fields)
        self.store.writer.update_run(run_id, **fields)
        if fields.get("status") in TERMINAL:
            # Durable before anyone is told: a client that sees the terminal event can read the final row.
            self.store.writer.flush()
            with self._lock:
                self._live.pop(run_id, None)

    def is_active(self, run: dict[str, Any]) -> bool:
        return run["status"] in ACTIVE
