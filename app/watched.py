"""Watched runs on the service's side: a model trained elsewhere (``deepscope.watch``) creates a run and
appends its events. The run is a run like any other (listed, streamed, replayed, compared, exported as
CSV and a report); only its events come from outside, validated by ``ingest.py``.

- Only the client that created a watched run may append to it (the server-issued identity; in workshop
  mode the class token too, as for every route).
- What a watched run's heavy events (captures, boundaries, samples) store is capped at
  DEEPSCOPE_MAX_RUN_MB, as a trained run's is: the create answer says the cap (``max_stored_bytes``),
  ``deepscope.watch`` thins its captures to fit (engine/storage.py), and an append past it is a 413.
- Appends are idempotent by seq: a batch sent again after a lost answer stores nothing twice. The next
  new event must follow the last stored one: a gap is refused, and says which seq is expected.
- A watched run whose training stops sending (killed, or its machine gone) for WATCH_TIMEOUT_S ends as
  ``interrupted``; a service restart leaves watched runs running, since they send again when it is back.
- A run written to a file without a server (``deepscope.watch`` falls back to one) is loaded by
  ``import_file``: ``deepscope import FILE``, and ``deepscope serve`` loads new files it finds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson

from deepscope.app import ingest
from deepscope.app.statuses import FINISHED, INTERRUPTED
from deepscope.app.store import now_iso
from deepscope.engine.events import EventType, Status, status_event
from deepscope.engine.storage import SHARES

WATCH_TIMEOUT_S = 60.0   # no append (a heartbeat is an empty one) this long: the training is gone
HEAVY = frozenset(SHARES)  # the kinds under the cap: the engine's storage lanes
SOURCE = "watched"


class IngestRefused(Exception):
    """An append the service will not take: ``status`` (the HTTP answer), ``detail`` (what and why)."""

    def __init__(self, status: int, detail: Any, retry_after: float | None = None) -> None:
        super().__init__(str(detail))
        self.status, self.detail, self.retry_after = status, detail, retry_after


class WatchedRuns:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.rate = ingest.RateLimiter()
        self._lock = threading.RLock()
        self._last_seen: dict[str, float] = {}
        self.max_stored_bytes: int | None = None  # DEEPSCOPE_MAX_RUN_MB (app/main.py); None: no cap
        self._heavy_bytes: dict[str, int] = {}  # what each watched run's heavy events weigh, as appended

    def create(self, spec: ingest.WatchedCreate, owner: str | None, address: str | None) -> dict[str, Any]:
        def decide(tx: Any, ids: list[str]) -> list[dict[str, Any]]:
            self.service.quotas.check(tx, owner, address, runs=1, trainings=0)
            return [{"source": SOURCE, "status": Status.RUNNING.value, "started_at": now_iso()}]

        (run,) = self.service.store.create_runs([(spec.name, spec.config.model_dump())], group=spec.group,
                                                owner=owner, address=address, decide=decide)
        self._seen(run["id"])
        return run

    def append(self, run_id: str, payload: Any, client: str | None, size: int) -> dict[str, Any]:
        run = self.service.get(run_id)
        if run is None:
            raise IngestRefused(404, f"no run with id {run_id[:40]!r}")
        if run.get("source") != SOURCE:
            raise IngestRefused(409, f"run {run_id} is trained by this server; only a watched run takes events")
        if client is None or run["owner"] != client:
            raise IngestRefused(403, f"run {run_id} belongs to another client; only the client that created it "
                                     "may append to it")
        wait = self.rate.allow(client, size)
        if wait:
            raise IngestRefused(429, "too many events from this client: slow down", retry_after=wait)
        try:
            events = ingest.validated(payload)
        except (ingest.ValidationError, ValueError) as exc:
            raise IngestRefused(422, _field_errors(exc)) from None
        with self._lock:  # one append of a run at a time: the seq check and the writes go together
            return self._store(run_id, events)

    def _store(self, run_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        run = self.service.get(run_id)
        last = self.service.last_seq(run_id)
        fresh = [e for e in events if e["seq"] > last]
        if fresh and run["status"] in FINISHED:
            raise IngestRefused(409, f"run {run_id} has ended ({run['status']}); it takes no more events")
        for expected, event in enumerate(fresh, start=last + 1):
            if event["seq"] != expected:
                raise IngestRefused(409, f"events: seq {event['seq']} does not follow the last stored event: "
                                         f"seq {expected} is next")
        raws = [orjson.dumps(event).decode() for event in fresh]
        heavy = self._heavy_bytes.get(run_id, 0) + sum(len(raw) for event, raw in zip(fresh, raws, strict=True)
                                                         if event["type"] in HEAVY)
        if self.max_stored_bytes is not None and heavy > self.max_stored_bytes:
            raise IngestRefused(413, f"run {run_id} would store {heavy / 1e6:.1f} MB of captures, boundaries and samples, past this "
                                     f"server's cap of {self.max_stored_bytes / 1e6:.3g} MB a run (DEEPSCOPE_MAX_RUN_MB); "
                                     "deepscope.watch thins its captures to fit")
        self._heavy_bytes[run_id] = heavy
        for event, raw in zip(fresh, raws, strict=True):
            self.service.on_event(run_id, event, raw)
        self._seen(run_id)
        return {"accepted": len(fresh), "last_seq": last + len(fresh)}

    def _seen(self, run_id: str) -> None:
        with self._lock:
            self._last_seen[run_id] = time.monotonic()

    def reap(self) -> list[str]:
        """End the watched runs whose training stopped sending: ``interrupted``, after their last event."""
        now, ended = time.monotonic(), []
        for run in self.service.store.watched_running():
            seen = self._last_seen.setdefault(run["id"], now)  # a service that just started gives them time
            if now - seen < WATCH_TIMEOUT_S:
                continue
            seq = self.service.last_seq(run["id"]) + 1
            event = {"seq": seq, **status_event(INTERRUPTED, f"the watched training stopped sending for "
                                                             f"{WATCH_TIMEOUT_S:g} s (stopped or killed)", summary={})}
            self.service.on_event(run["id"], event, orjson.dumps(event).decode())
            self._last_seen.pop(run["id"], None)
            ended.append(run["id"])
        return ended

    def import_file(self, path: Path, owner: str | None = None) -> dict[str, Any]:
        """A watched run written to a file (one event a line) as a run of this service. A run whose file
        has no terminal status (its training was killed) ends as ``interrupted``."""
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        if not lines or lines[0].get("deepscope") != "watched run":
            raise ValueError(f"{path}: not a watched run (its first line is not deepscope.watch's header)")
        header, lines = lines[0], lines[1:]
        spec = ingest.WatchedCreate(name=str(header.get("name") or path.stem)[:80], config=header.get("config"))
        run = self.create(spec, owner, None)
        if not lines:
            self._end(run["id"], "the file holds no event")
            return self.service.get(run["id"])
        for start in range(0, len(lines), ingest.MAX_EVENTS):
            self._store(run["id"], ingest.validated({"events": lines[start:start + ingest.MAX_EVENTS]}))
        if not (lines[-1].get("type") == EventType.STATUS and lines[-1].get("status") in FINISHED):
            self._end(run["id"], "the file ends before its run did (its training stopped or was killed)")
        self.service.flush()
        return self.service.get(run["id"])

    def _end(self, run_id: str, why: str) -> None:
        event = {"seq": self.service.last_seq(run_id) + 1, **status_event(INTERRUPTED, why, summary={})}
        self.service.on_event(run_id, event, orjson.dumps(event).decode())


def finished_file(path: Path) -> bool:
    """Whether a watched run's file ends with its run's terminal status."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 65536))
            last = [line for line in f.read().splitlines() if line.strip()][-1]
        event = orjson.loads(last)
    except (OSError, IndexError, orjson.JSONDecodeError):
        return False
    return event.get("type") == EventType.STATUS and event.get("status") in FINISHED


def _field_errors(exc: Exception) -> Any:
    if isinstance(exc, ingest.ValidationError):
        return [{"field": ".".join(str(p) for p in e["loc"]), "msg": f"{'.'.join(str(p) for p in e['loc'])}: "
                 f"{e['msg']}"[:300], "type": e["type"]} for e in exc.errors()[:20]]
    return str(exc)
