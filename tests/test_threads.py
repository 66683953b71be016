"""The process setup the workers share (engine/threads.py), in a process of its own: a frozen heap is the
whole process's."""

import subprocess
import sys

FREEZE_ONCE = """
import gc
from deepscope.engine import loop  # noqa: F401  (torch, numba, the engine)
from deepscope.engine.threads import freeze_imports
freeze_imports()
frozen = gc.get_freeze_count()
later = [[i] for i in range(5000)]
freeze_imports()
print(frozen, gc.get_freeze_count())
"""


def test_the_imported_heap_is_frozen_once_and_later_objects_stay_collectable():
    out = subprocess.run([sys.executable, "-c", FREEZE_ONCE], capture_output=True, text=True, timeout=120, check=True)
    frozen, again = map(int, out.stdout.split())
    assert frozen > 100_000  # torch's and numba's objects, left out of every later collection
    assert again == frozen   # the second call froze nothing: objects made after the imports are collected as usual
