"""The torch thread setup every way of running the engine shares: the local worker, the Celery worker
and ``deepscope run``. Results depend on it (float summation order changes with the thread count),
so one config and seed give one result only if all three set it the same way (docs/measured.md)."""

from __future__ import annotations

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
