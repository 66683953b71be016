"""How many runs may be queued or running at once: on the whole server, per client and per network
address; and how much the finished ones may store, per client and on the whole server (docs/workshop.md). Checked inside the transaction that creates the runs, so two requests at
once cannot both pass a check that only one of them fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ActiveCounts(Protocol):
    """What the check reads, inside the creating transaction (``store.Transaction``)."""

    def active_runs(self, owner: str) -> int: ...

    def active_trainings(self, address: str | None = None) -> int: ...

    def stored_bytes(self, owner: str | None = None) -> int: ...


class QuotaExceeded(Exception):
    """Creating the runs would pass a limit; the message says which and what to do, ``retry_after`` when."""

    def __init__(self, message: str, retry_after: int = 10) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Quotas:
    """0 means no limit. ``server`` counts trainings (a shared run takes no worker); ``per_client`` counts
    a client's runs, shares included (to a student they are runs); ``per_address`` counts trainings
    started from one address. The storage quotas (bytes) count what finished trainings store; a share
    stores nothing, so only a request that starts a training is refused for storage."""

    server: int = 0
    per_client: int = 0
    per_address: int = 0
    stored_per_client: int = 0
    stored_server: int = 0

    def check(self, counts: ActiveCounts, owner: str | None, address: str | None, runs: int, trainings: int) -> None:
        if self.server:
            active = counts.active_trainings()
            if active + runs > self.server:
                raise QuotaExceeded(f"the server already has {self.server} runs queued or running; "
                                    "try again when some finish", retry_after=30)
        if self.per_client and owner is not None:
            mine = counts.active_runs(owner)
            if mine + runs > self.per_client:
                raise QuotaExceeded(f"you have {mine} runs queued or running and may have at most "
                                    f"{self.per_client}; cancel one or wait for it to finish")
        if self.per_address and address is not None and trainings:
            here = counts.active_trainings(address)
            if here + trainings > self.per_address:
                raise QuotaExceeded(f"{here} runs from your network address are queued or running, and this "
                                    f"server takes at most {self.per_address} from one address; try again when "
                                    "some finish", retry_after=30)
        if trainings:
            self._check_storage(counts, owner)

    def _check_storage(self, counts: ActiveCounts, owner: str | None) -> None:
        if self.stored_per_client and owner is not None:
            mine = counts.stored_bytes(owner)
            if mine >= self.stored_per_client:
                raise QuotaExceeded(f"your runs store {mb(mine)} and you may store {mb(self.stored_per_client)} "
                                    "(storage_quota_client_mb): delete some of your runs to start more", 60)
        if self.stored_server:
            total = counts.stored_bytes()
            if total >= self.stored_server:
                raise QuotaExceeded(f"this server's runs store {mb(total)} of the {mb(self.stored_server)} it "
                                    "keeps (storage_quota_mb): ask the instructor to delete runs or run "
                                    "`deepscope gc`", 300)


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
