"""Per-layer telemetry: what every layer's activations, gradients and weights look like.

Split by job (docs/telemetry.md):
- ``hooks``: forward hooks that own their handles and keep what an armed step saw;
- ``kernels``: pure tensor functions: bounds, all histograms in one pass, moments, unit counts,
  duplicate units;
- ``event``: the ``layers`` event's shape, and ``probe_summary`` for lessons;
- ``probe``: ``LayerProbe``, which arms the hooks, takes a capture and summarises it.
"""

from deepscope.engine.telemetry.event import HIST_NAMES, STAT_NAMES, probe_summary
from deepscope.engine.telemetry.kernels import bounds, duplicate_fraction
from deepscope.engine.telemetry.probe import Capture, LayerProbe

__all__ = ["HIST_NAMES", "STAT_NAMES", "Capture", "LayerProbe", "bounds", "duplicate_fraction", "probe_summary"]
