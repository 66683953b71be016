"""A full disk, as the databases say it: SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's
disk_full (SQLSTATE 53100) or the system's ENOSPC. The service answers 507 while it lasts
(app/errors.py), refuses new runs, and stops the trainings in flight, whose events it holds in memory
until the disk has room again (app/event_log.py); nothing already accepted is lost.
"""

from __future__ import annotations

import errno

MARKS = ("database or disk is full", "no space left on device", "could not extend file", "disk full")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an exception, or the driver's error or cause behind it, says the disk is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) == errno.ENOSPC or getattr(exc, "sqlstate", None) == "53100" \
                or any(mark in str(exc).lower() for mark in MARKS):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


class DiskFull(RuntimeError):
    """Raised where the service refuses work because its database's disk is full (507)."""

    def __init__(self, why: str = "") -> None:
        super().__init__("the server's disk is full: no new run can be stored until an instructor frees space "
                         f"(deepscope gc, or a larger disk){'; ' + why if why else ''}")
