"""Per-layer telemetry: what every layer's activations, gradients and weights look like, over time.

Split by job (docs/telemetry.md):
- ``layers``: what is watched, ``WatchedLayer``: the engine's nets (``layers_of_net``); ``discover``
  finds them in any model from how data flows through it;
- ``hooks``: forward hooks that own their handles and keep what an armed step saw;
- ``probe``: ``LayerProbe``, which captures one step in one context;
- ``units``: dead and saturated units, and the probe set dead units are counted on;
- ``summary``: a capture becomes a ``layers`` event, through ``compiled`` (the CPU's kernels, numba)
  or ``kernels`` (the GPU's, torch); ``bounds`` is the histogram range rule both apply;
- ``schedule``: which steps are captured (the density floor, the budget);
- ``session``: ``Telemetry``, all of it for one run;
- ``event``: the ``layers`` event's shape, and ``probe_summary`` for lessons.

Names load on first use: the service reads ``event`` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HIST_NAMES": "event", "STAT_NAMES": "event", "probe_summary": "event",
    "WatchedLayer": "layers", "layers_of_net": "layers", "Capture": "probe", "LayerProbe": "probe",
    "Settings": "session", "Telemetry": "session",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"deepscope.engine.telemetry.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deepscope.engine.telemetry' has no attribute {name!r}")
