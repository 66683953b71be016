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



KEEP_FREED = """
import resource, sys
import torch
from deepscope.engine.config import ModelConfig
from deepscope.engine.models import build_model
from deepscope.engine.threads import keep_freed_memory, release_kept_memory

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20

if sys.argv[1] == "keep":
    keep_freed_memory()
torch.set_num_threads(1)
torch.manual_seed(0)
net = build_model(ModelConfig(arch="cnn", depth=4, width=32), (3, 32, 32), 4)
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 4, (128,))

def step():
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

for _ in range(8):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
kept = rss_mb()
release_kept_memory()
print(faults, kept - rss_mb())
"""


def test_a_training_process_keeps_what_a_step_frees_and_hands_it_back_after_the_run():
    """A CNN's training steps at batch 128 (conv activations of 16 MB): glibc's default maps such blocks
    afresh, so their pages fault again at every step; the training process keeps them in the heap, and
    hands them back when ``train`` ends a run."""
    def run(mode: str) -> tuple[int, float]:
        out = subprocess.run([sys.executable, "-c", KEEP_FREED, mode], capture_output=True, text=True, timeout=240,
                             check=True)
        faults, released = out.stdout.split()
        return int(faults), float(released)

    faults, released = run("keep")
    default_faults, _ = run("default")
    assert default_faults > 10 * 1000, default_faults  # thousands a step
    assert faults < default_faults / 10, (faults, default_faults)
    assert released > 50, released  # the steps' freed activations, back to the system
