"""The process setup every way of running the engine shares: the local worker, the Celery worker and
``deepscope run``. Results depend on its torch threads (float summation order changes with the thread
count), so one config and seed give one result only if all three set it the same way
(docs/measured.md)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
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

# glibc's mallopt parameters (malloc.h), and the values the training process sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest: a block under it comes from the heap
TRIM_THRESHOLD = 1 << 30    # free memory at the heap's top kept for the next step, up to this
KEEP_BETWEEN_RUNS = 32 << 20  # ... and for the next run, up to this


def keep_freed_memory() -> None:
    """In the process that trains, on glibc (Linux; elsewhere nothing changes): what a step frees stays in
    the heap for the next step. By default glibc maps each large block (a conv layer's activations)
    afresh and unmaps it when freed, so the kernel zeroes its pages again at the next step: a 4x32 CNN
    at batch 128 took 3,500-14,500 page faults and 5-22 ms of system time in a step of about 55 ms, and a
    captured step, which keeps its activations' gradients until the capture is read, 15,000-19,000
    (docs/telemetry.md, "What it costs"). Blocks of 32 MB and over are still mapped. ``train`` hands the
    memory back at the end of each run (``release_kept_memory``), so a worker's next run, whose resident
    memory its limit counts, starts without it."""
    global _keeping
    libc = _glibc()
    if libc is not None and not _keeping:
        _keeping = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_kept_memory() -> None:
    """After a run, where ``keep_freed_memory`` is on: the heap's free memory goes back to the system where
    it is over KEEP_BETWEEN_RUNS. Under it, the next run's first steps reuse it: handing back every byte
    made a worker's next run fault in its pages afresh, 2.4 ms more on the first capture of a 30-layer MLP
    and 7.8 ms on a 100-layer one, and a lesson's MLP run leaves a few MB."""
    libc = _glibc()
    if _keeping and libc is not None and _free_in_heap(libc) > KEEP_BETWEEN_RUNS:
        libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _free_in_heap(libc: ctypes.CDLL) -> int:
    """Bytes free in the heap (glibc 2.33 and later; earlier, as if over any bound)."""
    if not hasattr(libc, "mallinfo2"):
        return 1 << 62
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_keeping = False
