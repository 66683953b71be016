"""The process setup every way of running the engine shares: the local worker, the Celery worker and
``deepscope run``. Results depend on its torch threads (float summation order changes with the thread
count), so one config and seed give one result only if all three set it the same way
(docs/measured.md)."""

from __future__ import annotations

import gc
import os

TORCH_THREADS = 1


def set_thread_env() -> None:
    """Before torch is imported: OpenMP pools of several processes spinning on the same cores collapse
    (two 2-thread processes on 2 cores: 1.6 steps/s in total against 364 for 1-thread ones)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))


def one_torch_thread() -> None:
    """After torch is imported, in the process that trains."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    try:
        torch.set_num_interop_threads(TORCH_THREADS)
    except RuntimeError:  # already set in this process
        pass


def freeze_imports() -> None:
    """Once the engine is imported, in the process that trains (and in the service): what the imports made is left out of
    every later garbage collection. torch and numba leave about 380,000 objects that live as long as the
    process; a full collection walks them all (about 120 ms here), and the layers events of a run
    trigger one every few runs: 0.4 ms a step on a run captured at every step (docs/telemetry.md, "What
    it costs"). Once per process: objects frozen later could hold garbage cycles that are then
    never collected."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


_frozen = False
