"""The service's heap: few arenas, and freed memory given back after a burst (many viewers closing).

CPython frees a large string with ``free``, and glibc keeps freed memory in its arenas for reuse, one
arena per thread that allocates, up to eight per core: the replay pages that a class's sockets read on
the service's I/O threads spread over dozens of arenas. Measured with 20 WebSockets that never read on a
100-layer run (benchmarks/service.py, 6.): 4.9 MB of resident memory a socket with glibc's arenas, 2.9
MB with two; after 100 such sockets closed the service held 300 MB more than before them. So the service
runs with ARENAS arenas (``limit_arenas``, at start), and ``malloc_trim`` returns what the arenas hold
free after sockets close (``give_back``: a few milliseconds, at most once per EVERY_S, off the event
loop). Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

EVERY_S = 5.0
ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter

_lock = threading.Lock()
_last = 0.0
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim, _mallopt = _libc.malloc_trim, _libc.mallopt
except (OSError, AttributeError):  # not glibc
    _trim = _mallopt = None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas from now on (threads started later share them). True if set."""
    return bool(_mallopt is not None and _mallopt(M_ARENA_MAX, arenas))


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
