"""No run stays queued or running in the database when nothing holds it.

A Redis restarted without persistence forgets every run it held: the queue, the set of active runs, the
claims. Workers that trained on through the outage register their runs again as soon as they can write
(app/executors/outbox.py); what nobody registers again within GRACE_S is lost, and the database would
show it queued or running forever, counted against its owner's quota. Every few seconds the reconciler
asks the executor which in-flight rows it holds nothing of, and where one stays unowned for GRACE_S:

- a run that never started (queued, no event stored) is queued again: nothing of it was lost;
- a run that had started is ended, failed, after its last stored event, saying why; a worker that still
  holds it and comes back later finds it cancelled and stops.

The reaper (app/executors/celery_executor.py) covers the other case: a run Redis still knows whose
worker stopped beating. With several replicas one answers each round (a Redis lock).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from deepscope.app.executors import policy
from deepscope.engine.events import Status

if TYPE_CHECKING:
    from deepscope.app.service import RunService

log = logging.getLogger("deepscope.reconciler")

GRACE_S = 20.0   # a worker's outbox retries every 0.5 s: a live run is registered again well inside this
EVERY_S = 5.0    # between rounds (app/main.py)
LOST = ("lost: no worker holds this run any more (its queue's Redis restarted, or its worker stopped while "
        "Redis was away), so it cannot finish; submit it again")


class Reconciler:
    def __init__(self, service: RunService) -> None:
        self.service = service
        self._unowned_since: dict[str, float] = {}

    def once(self, now: float | None = None) -> dict[str, list[str]]:
        """One round: the runs it queued again and the runs it ended."""
        done: dict[str, list[str]] = {"requeued": [], "ended": []}
        ask = getattr(self.service.executor, "unowned", None)  # an executor of a test may not answer
        if ask is None:
            return done
        rows = self.service.store.trainings_in_flight()
        unowned = ask([r["id"] for r in rows]) if rows else set()
        if unowned is None:  # another replica answers this round, or Redis is away
            return done
        now = time.monotonic() if now is None else now
        self._unowned_since = {run_id: self._unowned_since.get(run_id, now) for run_id in unowned}
        for row in rows:
            since = self._unowned_since.get(row["id"])
            if since is None or now - since < GRACE_S:
                continue
            del self._unowned_since[row["id"]]
            self._settle(row, done)
        return done

    def _settle(self, row: dict[str, Any], done: dict[str, list[str]]) -> None:
        row = self.service.store.get_run(row["id"]) or {}
        if row.get("status") not in (Status.QUEUED, Status.RUNNING):
            return  # it ended while this round asked (its last events were being stored)
        run_id, last = row["id"], self.service.last_seq(row["id"])
        if row["status"] == Status.QUEUED and last < 0:
            self.service.executor.submit(run_id, row["config"], row["owner"])
            log.warning("run %s: queued again (its queue forgot it)", run_id)
            done["requeued"].append(run_id)
            return
        self.service.executor.end_unowned(run_id, policy.worker_lost(last, LOST))
        log.warning("run %s: ended, no worker holds it", run_id)
        done["ended"].append(run_id)
