"""Schemas by role: what routes answer. Never an engine object or a database row."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from deepscope.app.statuses import RunStatus


class RunPublic(BaseModel):
    id: str
    name: str
    group: str | None
    owner: str | None = None
    status: RunStatus
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: float = Field(ge=0, le=1)
    config: dict[str, Any]
    summary: dict[str, Any]
    error: str | None
    source: str | None = None  # "watched": a model trained elsewhere sends its events (deepscope.watch)
    stored_bytes: int | None = None  # what its events take in the store, counted when it finishes
    # a waiting run: its place in the queue (1: next), of how many, and about when it starts
    queue: dict[str, Any] | None = None
    # a watched run, as created: what its heavy events may store (DEEPSCOPE_MAX_RUN_MB); deepscope.watch
    # thins its captures to fit, and appends past it are refused
    max_stored_bytes: int | None = None


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class EventsPublic(BaseModel):
    data: list[dict[str, Any]]
    count: int
    # seq ranges [first, last] this page skips: events an outage lost (empty with ?type=)
    missing: list[tuple[int, int]] = []


class Problem(BaseModel):
    detail: Any


def public(run: dict[str, Any]) -> RunPublic:
    return RunPublic(**{k: v for k, v in run.items() if k in RunPublic.model_fields})
