"""Keeping the store's size bounded: retention deletes finished runs past ``retention_days``, and ``gc``
also deletes events that outlived their runs, compresses the finished runs an older DeepScope stored
uncompressed, and gives the freed space back to the disk (the store's ``reclaim``). The service runs retention hourly; ``deepscope gc`` runs all of it (docs/workshop.md).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from deepscope.app import sharing
from deepscope.app.store import Store

log = logging.getLogger("deepscope")
EVERY_S = 3600.0  # how often the service applies retention


def expire(store: Store, retention_days: float, now: datetime | None = None) -> int:
    """Delete the runs that finished more than ``retention_days`` ago (0: none); returns how many. A
    training that younger shares still show keeps its events for them (``sharing.forget``)."""
    if retention_days <= 0:
        return 0
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).isoformat(timespec="milliseconds")
    deleted = 0
    while batch := store.finished_before(cutoff):
        for run in batch:
            sharing.forget(store, run)
        deleted += len(batch)
    return deleted


def gc(store: Store, retention_days: float, now: datetime | None = None) -> dict[str, Any]:
    """Retention, then the orphaned events, then the space back; what it did, with the size before and after."""
    before = store.size_bytes()
    expired = expire(store, retention_days, now)
    orphans = store.orphan_event_runs()
    for run_id in orphans:
        store.delete_events(run_id)
    packed = 0
    while batch := store.finished_unpacked():
        packed += len(batch)
        for run_id in batch:
            store.pack(run_id)
    store.reclaim()
    return {"expired_runs": expired, "orphaned_event_runs": len(orphans), "packed_runs": packed,
            "bytes_before": before, "bytes_after": store.size_bytes()}
