"""When a step is captured: a density floor that every run gets, and extra captures the budget pays for.

1. **The floor.** ``telemetry.captures`` (default 50) captures spread evenly over the run, step 0 and the
   last step included: enough to see every layer change (TensorBoard shows 51 samples of a histogram).
   They are taken whatever the budget, so a short run is watched as densely as a long one.
2. **Extra captures** on a grid of ``every_steps`` (thinned so that a run keeps at most KEEP captures in
   all: a 100-epoch run does not store 10,000), each only while ``max_per_second`` and the budget allow.
3. **The budget**, ``telemetry.budget`` (default 3%): the share of the run's CPU time watching may take,
   counted on the training thread and the summary thread together (a busy workshop server has no idle
   core to hide the summary on). The clocks see only part of what watching costs (the armed step's
   hooks, the caches a capture evicts; benchmarks/telemetry_overhead.py), so extras aim at TARGET of
   the share. Where the floor alone costs more than the budget (a 100-layer net on a tiny dataset),
   the floor wins, and the run's summary says so (``telemetry_note``).

A run of unknown length (``deepscope.watch`` without ``total_steps``) has no floor to spread: it is
captured at step 0 and then every ``spacing`` steps, the spacing doubling each time KEEP // 2 captures
have been taken at it, so its captures stay spread over the whole run and grow only with the log of
its length. A run at its storage cap (engine/storage.py) thins all of these evenly over the steps left.
docs/telemetry.md has the measurements behind these numbers.
"""

from __future__ import annotations

import threading
import time

from deepscope.engine.storage import Lane

# The summary fields ``report`` gives: measured, so they differ from run to run where the numbers do not.
MEASURED = ("captures", "telemetry_share", "capture_rate", "telemetry_note")
KEEP = 500      # captures a run keeps at most (TensorBoard keeps a reservoir of 500 histograms per tag)
TARGET = 0.5    # extras aim at this share of the budget in measured CPU time


def evenly_spread(total: int | None, n: int) -> frozenset[int]:
    """``n`` steps spread evenly over a run of ``total``, its first and last included (the floor's steps;
    the decision boundary is drawn at the same ones, engine/loop.py)."""
    if not total:
        return frozenset({0})
    n = min(n, total)
    if n <= 1:
        return frozenset({0, total - 1})
    return frozenset(round(k * (total - 1) / (n - 1)) for k in range(n))


class CaptureSchedule:
    def __init__(self, total_steps: int | None, every: int, max_per_second: float, budget: float,
                 floor: int = 50, lane: Lane | None = None) -> None:
        self.total, self.every, self.budget, self.lane = total_steps, every, budget, lane
        self.min_gap = 1.0 / max_per_second if max_per_second > 0 else 0.0
        self.floor = evenly_spread(total_steps, floor) if every > 0 else frozenset()
        # the extras' grid: every_steps, widened so that extras and floor together stay within KEEP
        self.grid = max(every, -(-total_steps // (KEEP - len(self.floor)))) if total_steps and every > 0 else max(every, 1)
        self._lock = threading.Lock()
        self._start_cpu = time.thread_time()  # the training thread's clock (this object is made there)
        self._start_wall = time.monotonic()
        self._on_train_thread = 0.0
        self._on_summary_thread = 0.0
        self._last_capture = -1e9
        self._next_doubling = KEEP // 2
        self.captures = 0
        self.extras = 0

    # -- the clocks -------------------------------------------------------------------------
    def add_training_cost(self, cpu_seconds: float) -> None:
        with self._lock:
            self._on_train_thread += cpu_seconds

    def add_summary_cost(self, cpu_seconds: float) -> None:
        with self._lock:
            self._on_summary_thread += cpu_seconds

    @property
    def telemetry_cpu(self) -> float:
        with self._lock:
            return self._on_train_thread + self._on_summary_thread

    def training_cpu(self) -> float:
        """CPU seconds the training thread spent training (telemetry's part taken out); call it there."""
        return time.thread_time() - self._start_cpu - self._on_train_thread

    # -- the decision -----------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether this step is captured. Call on the training thread, before its forward."""
        if self.every <= 0:
            return False
        if self.total is None:
            taken = self._unbounded(step)
        elif step in self.floor or step == self.total - 1:
            taken = True
        else:
            taken = step % self.grid == 0 and self._extra_allowed()
            if taken and self.lane is not None and not self.lane.allows(step):
                self.extras -= 1
                return False
            return self._took(taken)
        # a run at its storage cap thins even the floor
        return self._took(taken and (self.lane is None or self.lane.allows(step)))

    def _took(self, taken: bool) -> bool:
        if taken:
            self.captures += 1
            self._last_capture = time.monotonic()
        return taken

    def is_end(self, step: int) -> bool:
        """Step 0 and the last step: the states a run is compared by, measured in full."""
        return step == 0 or (self.total is not None and step == self.total - 1)

    def _unbounded(self, step: int) -> bool:
        if step == 0:
            return True
        if step % self.grid:
            return False
        if self.captures >= self._next_doubling:  # KEEP // 2 taken at this spacing: halve the rate
            self.grid *= 2
            self._next_doubling += KEEP // 2
            return step % self.grid == 0
        return True

    def _extra_allowed(self) -> bool:
        if time.monotonic() - self._last_capture < self.min_gap or self.captures + 1 > KEEP:
            return False
        if self.budget > 0 and self.captures:
            spent = self.telemetry_cpu
            # the next capture is expected to cost what the ones so far cost on average
            if spent + spent / self.captures > TARGET * self.budget * self.training_cpu():
                return False
        self.extras += 1
        return True

    def report(self) -> dict[str, float | int | str]:
        """For the run's summary: captures taken, telemetry's share of the training CPU time, captures per
        second, and a note where the floor cost more than the budget."""
        training = max(self.training_cpu(), 1e-9)
        wall = max(time.monotonic() - self._start_wall, 1e-9)
        share = self.telemetry_cpu / training
        out: dict[str, float | int | str] = {"captures": self.captures, "telemetry_share": round(share, 4),
                                             "capture_rate": round(self.captures / wall, 3)}
        if self.budget > 0 and share > self.budget and self.captures:
            out["telemetry_note"] = (
                f"the {self.captures - self.extras} evenly spread captures (telemetry.captures) cost "
                f"{share:.0%} of training time, over telemetry.budget {self.budget:.0%}: DeepScope keeps "
                "the captures a run needs to show change over time, and took no extra ones")
        return out
