"""Per-layer telemetry: what every layer's activations, gradients and weights look like, over time.

Split by job (docs/telemetry.md):
- ``layers``: what is watched, ``WatchedLayer``: the engine's nets (``layers_of_net``) and any model;
- ``hooks``: forward hooks that own their handles and keep what an armed step saw;
- ``probe``: ``LayerProbe``, which captures one step in one context;
- ``units``: dead and saturated units, and the probe set dead units are counted on;
- ``summary``: a capture becomes a ``layers`` event, through ``compiled`` (the CPU's kernels, numba)
  or ``kernels`` (the GPU's, torch); ``bounds`` is the histogram range rule both apply;
- ``schedule``: which steps are captured (the density floor, the budget);
- ``session``: ``Telemetry``, all of it for one run;
- ``event``: the ``layers`` event's shape, and ``probe_summary`` for lessons.
"""

from deepscope.engine.telemetry.bounds import bounds
from deepscope.engine.telemetry.event import HIST_NAMES, STAT_NAMES, probe_summary
from deepscope.engine.telemetry.layers import WatchedLayer, layers_of_net
from deepscope.engine.telemetry.probe import Capture, LayerProbe
from deepscope.engine.telemetry.session import Settings, Telemetry

__all__ = ["HIST_NAMES", "STAT_NAMES", "Capture", "LayerProbe", "Settings", "Telemetry", "WatchedLayer", "bounds",
           "layers_of_net", "probe_summary"]
