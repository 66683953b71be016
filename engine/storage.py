"""A run's storage cap: what its heavy events (layer captures, decision boundaries, image samples) may
store, in bytes. A run that would pass its cap does not fail: each kind of heavy event thins itself
evenly over the steps left, so the run stays watched from its first step to its last, only less
densely, and its summary says what was left out (``report``).

Each kind gets a share of the cap (``SHARES``); the small events (loss points, epochs, statuses,
findings) are bounded by count elsewhere and take the rest. The service sets the cap
(``DEEPSCOPE_MAX_RUN_MB``, docs/workshop.md); a run trained in a notebook has none.
"""

from __future__ import annotations

import math
import threading

SHARES = {"layers": 0.7, "boundary": 0.15, "samples": 0.05}  # the remaining 10%: the small events
NAMES = {"layers": "layer captures", "boundary": "decision boundaries", "samples": "image samples"}


class Lane:
    """One kind of heavy event under its share of the cap. ``allows(step)`` before taking one (the
    spacing it asks for grows as the share fills, so what is left spreads over the steps left);
    ``stored(nbytes)`` once it is emitted (possibly on another thread, one event later)."""

    def __init__(self, budget: float | None, total_steps: int | None) -> None:
        self.budget, self.total = budget, total_steps
        self.kept = self.measured = self.thinned = 0
        self.bytes = 0
        self._last_kept = -1
        self._lock = threading.Lock()

    def allows(self, step: int) -> bool:
        if self.budget is None:
            return True
        with self._lock:
            ok = self._fits(step)
            if ok:
                self.kept += 1
                self._last_kept = step
            else:
                self.thinned += 1
            return ok

    def _fits(self, step: int) -> bool:
        if self.kept == 0:
            return True  # the first is kept whatever it weighs: a run shows where it started
        if self.measured == 0:  # the first one's size is not known yet (it is summarised on another thread)
            return self.kept < 2
        mean = self.bytes / self.measured
        room = (self.budget - self.bytes) / mean - (self.kept - self.measured)  # events that still fit
        last = self.total is not None and step >= self.total - 1
        if last:
            return room >= 1
        room -= 1  # one kept back for the last step: the state a run is compared by
        if room < 1:
            return False
        if self.total is None:  # a run of unknown length: the spacing doubles each time the room left halves
            left = max(room * mean / self.budget, 1e-9)
            return step - self._last_kept >= 2 ** math.floor(-math.log2(min(left, 1.0)))
        return step - self._last_kept >= (self.total - step) / room

    def stored(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
            self.measured += 1


class StorageCap:
    """The lanes of one run; ``max_bytes`` None: nothing is capped."""

    def __init__(self, max_bytes: int | None, total_steps: int | None) -> None:
        self.max_bytes = max_bytes
        self.lanes = {kind: Lane(None if max_bytes is None else share * max_bytes, total_steps)
                      for kind, share in SHARES.items()}

    def __getitem__(self, kind: str) -> Lane:
        return self.lanes[kind]

    def report(self) -> dict[str, object]:
        """For the run's summary, where anything was thinned: what was kept of what, under which cap."""
        thinned = {k: lane.thinned for k, lane in self.lanes.items() if lane.thinned}
        if not thinned or self.max_bytes is None:
            return {}
        kept = ", ".join(f"{self.lanes[k].kept} of {self.lanes[k].kept + n} {NAMES[k]}" for k, n in thinned.items())
        return {"storage_thinned": thinned,
                "storage_note": f"this run reached its storage cap ({self.max_bytes / 1e6:.3g} MB): it kept {kept}, "
                                "spread evenly over the run"}
