"""The telemetry budget: captures are spaced so that watching costs at most a share of the run's CPU
time (``telemetry.budget``, default 3%), counted on the training thread and the summary thread
together: a busy workshop server has no idle core to hide the summary on (docs/telemetry.md).

``every_steps`` and ``max_per_second`` stay upper bounds on the rate. Step 0 and the last step are
always captured. The run's summary reports the share actually spent and the capture rate reached.

The budget is what watching may cost in training speed, and the clocks see only part of that cost. With
both cores of this machine training, runs captured on the budget lost about 1% of their speed more than
the CPU time telemetry measured (the armed step's hooks, the memory a capture holds until it is
summarised, the caches it evicts; benchmarks/telemetry_overhead.py). So the spacing aims at TARGET of
the share in measured CPU time, leaving the rest for what is not measured, and counts the last step's
capture (always taken) in advance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

TARGET = 0.5


class TelemetryBudget:
    def __init__(self, share: float, every: int, max_per_second: float) -> None:
        self.share, self.every = share, every
        self.min_gap = 1.0 / max_per_second if max_per_second > 0 else 0.0
        self._lock = threading.Lock()
        self._start_cpu = time.thread_time()   # the training thread's CPU clock (this object is made there)
        self._start_wall = time.monotonic()
        self._on_train_thread = 0.0              # telemetry's CPU seconds on the training thread
        self._on_summary_thread = 0.0            # ... and on the summary thread
        self._last_capture = -1.0
        self.captures = 0

    @property
    def telemetry_cpu(self) -> float:
        with self._lock:
            return self._on_train_thread + self._on_summary_thread

    def training_cpu(self) -> float:
        """CPU seconds the training thread spent training (telemetry's part taken out); call it there."""
        return time.thread_time() - self._start_cpu - self._on_train_thread

    def due(self, step: int, last: bool = False) -> bool:
        """Whether this step is captured. Call on the training thread, before its forward."""
        if self.every <= 0 or (step % self.every and not last):
            return False
        now = time.monotonic()
        if not (step == 0 or last):
            if now - self._last_capture < self.min_gap:
                return False
            if self.share > 0 and self.captures:
                spent = self.telemetry_cpu
                # the next capture, and the last one, are expected to cost what the ones so far cost on average
                if spent + 2 * spent / self.captures > TARGET * self.share * self.training_cpu():
                    return False
        self._last_capture = now
        self.captures += 1
        return True

    @contextmanager
    def on_training_thread(self) -> Iterator[None]:
        """Wrap telemetry work done on the training thread (the probe set, the weight copy, the hand-over)."""
        t0 = time.thread_time()
        try:
            yield
        finally:
            with self._lock:
                self._on_train_thread += time.thread_time() - t0

    def add_summary_cost(self, cpu_seconds: float) -> None:
        with self._lock:
            self._on_summary_thread += cpu_seconds

    def report(self) -> dict[str, float]:
        """For the run's summary: telemetry's share of the training CPU time, and captures per second."""
        training = max(self.training_cpu(), 1e-9)
        wall = max(time.monotonic() - self._start_wall, 1e-9)
        return {"telemetry_share": round(self.telemetry_cpu / training, 4),
                "capture_rate": round(self.captures / wall, 3)}
