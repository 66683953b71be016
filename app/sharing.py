"""Shared runs (docs/workshop.md): an identical config and seed trains once; a later request gets a run
of its own that shows that training's events. Everything about sharing lives here: the key that says
two configs are one training, which runs a new one may share, what a share copies of its training and
when, whose events a share shows, and what deleting a share or its training does.

A share's row has ``shared_from`` (its training) and, once it stopped watching (cancelled while the
training went on), ``share_seq``: the last event it shows. A training's own row is its owner's run: an
owner who cancels a training that classmates watch stops watching it the same way (``share_seq`` and
``left_at`` on the training's row), and the training goes on for the others (``owner_view``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import orjson

from deepscope import __version__
from deepscope.app.statuses import ACTIVE_STATUSES, FINISHED
from deepscope.app.store import now_iso
from deepscope.engine.config import RunConfig
from deepscope.engine.events import EventType, Status, status_event

SHAREABLE = frozenset({*ACTIVE_STATUSES, Status.COMPLETED.value, Status.DIVERGED.value})  # may be watched again
MIRRORED = ("status", "started_at", "finished_at", "summary", "error", "progress")     # what a share follows


class Lookup(Protocol):
    """What sharing reads inside the creating transaction (``store.Transaction``)."""

    def newest_training(self, share_key: str, statuses: frozenset[str]) -> dict[str, Any] | None: ...


def share_key(config: RunConfig) -> str:
    """Identical trainings get one key: the config without its name, the engine's version and the device
    kind. Same key, same seed: same numbers (docs/workshop.md), so one training can serve them all."""
    body = config.model_dump(exclude={"name": True, "train": {"fresh"}})
    text = orjson.dumps({"config": body, "engine": __version__}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:40]


def keys_for(configs: list[RunConfig]) -> list[str | None]:
    return [None if c.train.fresh else share_key(c) for c in configs]


def plan(lookup: Lookup, ids: list[str], keys: list[str | None]) -> list[dict[str, Any]]:
    """The sharing columns of each new run: a share of an existing training, of a run created alongside
    (the same lesson run twice in one request), or a training of its own. Inside the creating
    transaction, so a request at the same moment cannot start the same training twice."""
    rows: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        twin = next((j for j in range(i) if key and keys[j] == key), None)
        source = lookup.newest_training(key, SHAREABLE) if key and twin is None else None
        if source is not None:
            rows.append({"share_key": key, **mirror(source)})
        elif twin is not None:
            rows.append({"share_key": key, "shared_from": ids[twin], "status": Status.QUEUED.value})
        else:
            rows.append({"share_key": key})
    return rows


def mirror(source: dict[str, Any]) -> dict[str, Any]:
    """What a share copies of its training when it starts watching, or when the training has finished."""
    return {"shared_from": source["id"], "status": source["status"], "started_at": source["started_at"],
            "finished_at": source["finished_at"], "progress": source["progress"], "error": source["error"],
            "summary": {**source["summary"], "shared_from": source["id"]}}


def followed(run_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Of a training's new state, what its attached shares copy (the event writer stores it in the same
    transaction as the training's own row)."""
    out = {k: v for k, v in fields.items() if k in MIRRORED}
    if "summary" in out:
        summary = out["summary"] if isinstance(out["summary"], dict) else json.loads(out["summary"])
        out["summary"] = {**summary, "shared_from": run_id}
    return out


def catch_up(store: Any, share_id: str, source_id: str) -> None:
    """A training that finished between the lookup and the insert: copy its final state now (the writer's
    mirroring covers every later change)."""
    source = store.get_run(source_id)
    if source and source["status"] in FINISHED:
        store.update_run(share_id, **mirror(source))


def events_of(run: dict[str, Any] | None, run_id: str) -> tuple[str, int | None]:
    """Whose events a run shows, and the last seq it shows (a share, or an owner, that stopped watching
    stops where it was)."""
    if run is None:
        return run_id, None
    return run["shared_from"] or run_id, run["share_seq"]


def owner_left(run: dict[str, Any]) -> bool:
    """A training whose owner stopped watching it while classmates' runs still did."""
    return not run["shared_from"] and run["share_seq"] is not None


def owner_view(run: dict[str, Any]) -> dict[str, Any]:
    """The training's row as its owner sees it after leaving: cancelled where they left."""
    return {**run, "status": Status.CANCELLED.value, "finished_at": run["left_at"],
            "error": "cancelled: you stopped watching; the training goes on for the runs that share it"}


def ended_at(seq: int) -> tuple[int, str, str]:
    """The status event that ends a share that stopped watching after ``seq``."""
    event = {"seq": seq + 1, **status_event(Status.CANCELLED, "cancelled: this run stopped watching the "
                                                               "training it shared")}
    return seq + 1, EventType.STATUS.value, orjson.dumps(event).decode()


def live_key(run: dict[str, Any]) -> tuple[str, bool]:
    """Whose live state a run shows (its training's, while attached), and whether it is an attached share."""
    attached = bool(run["shared_from"]) and run["share_seq"] is None
    return (run["shared_from"] if attached else run["id"]), attached


def stop_watching(store: Any, share: dict[str, Any]) -> None:
    """Cancel a share: it stops at the event its training had reached, and the training goes on."""
    source = store.get_run(share["shared_from"])
    store.update_run(share["id"], status=Status.CANCELLED.value, finished_at=now_iso(), error="cancelled",
                     share_seq=source["last_seq"] if source else -1)


def owner_leaves(store: Any, training: dict[str, Any], last_seq: int) -> None:
    """Cancel a training for its owner only: their run stops at ``last_seq``, the classmates' go on."""
    store.update_run(training["id"], share_seq=last_seq, left_at=now_iso())


def unwatched(store: Any, training_id: str) -> bool:
    """A training nobody watches any more: its owner left (or deleted their run) and its last attached
    share stopped. (The executor's cancel of a training that has ended does nothing.)"""
    training = store.get_run(training_id)
    if training is not None and not owner_left(training):
        return False
    return not store.shares_of(training_id, attached_only=True)


def others_watching(store: Any, training: dict[str, Any]) -> int:
    """How many other clients' runs watch a training (its owner's own shares do not hold it up)."""
    return sum(s["owner"] != training.get("owner") for s in store.shares_of(training["id"], attached_only=True))


def forget(store: Any, run: dict[str, Any]) -> None:
    """Delete a run. A training that other runs share keeps its events for them; the last share of a
    deleted training takes the events with it."""
    if run["shared_from"]:
        store.delete_run(run["id"], keep_events=True)
        source = run["shared_from"]
        if store.get_run(source) is None and not store.shares_of(source):
            store.delete_events(source)
        return
    store.delete_run(run["id"], keep_events=bool(store.shares_of(run["id"])))
