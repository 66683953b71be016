"""Freed memory given back to the system after a burst (a class's pages closing at once).

CPython frees a large string with ``free``, and glibc keeps freed memory in its arenas for reuse: after
100 WebSockets of a large run closed, the service held 300 MB more than before them. ``malloc_trim``
returns what the arenas hold free. It costs a few milliseconds, so it runs at most once per EVERY_S, off
the event loop. Elsewhere than glibc it does nothing.

Measured with 100 WebSockets that never read on a 100-layer run (benchmarks/service.py, 6.): 0.9 to 4.8
MB a socket while they wait (the page, a frame, and how the allocator's arenas happened to fill), and
back to within 30 MB of before once they close. Two malloc arenas instead of glibc's eight a core held
0.8 MB a socket, but slowed a busy class's first points (p95 1.8 s to 2.5 s in one measurement,
benchmarks/workshop.py): left at glibc's default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

EVERY_S = 5.0

_lock = threading.Lock()
_last = 0.0
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
except (OSError, AttributeError):  # not glibc
    _trim = None


def give_back() -> bool:
    """Trim the heap, unless it was trimmed less than EVERY_S ago. True if it trimmed."""
    global _last
    if _trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last < EVERY_S:
            return False
        _last = now
    _trim(0)
    return True
