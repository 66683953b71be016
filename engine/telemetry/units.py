"""Dead and saturated units, and the mean slope f'(z): what they mean, and the fixed probe set that dead
units are counted on.

- A unit (a feature of a linear layer, a channel of a conv layer) is **dead** when its activation is
  exactly 0 for every probe sample (and, for a channel, at every position): it passes no gradient back,
  whatever the input. Counted on one training batch, a healthy He net reads 8-21% "dead": with 64
  samples some units are off for all of them by chance. A fixed probe set of a few hundred training
  samples makes a healthy net read about 0, and the same samples every time make the numbers
  comparable over time. Passing it costs about a training step, so it is passed on every
  UNITS_EVERY-th capture (and the first), and the captures between repeat the count with the step it
  was taken at (``units_step``).
- A unit is **saturated** on a sample when the activation's slope f'(z) there is under
  SATURATED_SLOPE of its largest slope: it sits in a flat tail, either one, and passes almost no
  gradient back for that sample. The saturated fraction is the share of (sample, unit) values in a flat
  tail. Only activations with flat tails saturate (sigmoid, tanh, ELU, SELU, GELU, SiLU, softplus);
  ReLU's flat side is "dead" instead.
- The **mean slope** is f'(z) averaged over samples and units: the factor each layer multiplies the
  backward signal by (at most 1/4 for sigmoid).

Saturation and slope are averages over samples, which the captured batch estimates without bias, so
they are measured on it at every capture. The probe set is passed forward in training mode, with
batchnorm using its batch statistics but leaving its running averages alone (momentum 0), and dropout
off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepscope.engine.models import BatchStatistics
from deepscope.engine.telemetry import compiled
from deepscope.engine.telemetry.hooks import records_directly
from deepscope.engine.telemetry.layers import WatchedLayer, joined, units_shape

PROBE_SAMPLES = 256
# A conv unit is a channel, seen at every position: 32 images of 28x28 give it 25,088 chances to fire, more
# than 256 samples give a dense unit, at an eighth of the cost of passing 256 images.
PROBE_IMAGES = 32
UNITS_EVERY = 4  # the probe set is passed on the first capture and every UNITS_EVERY-th after it
# A net with no dead unit at its last count is first passed 1/FIRST_SHARE of the probe set
# (``ProbeSet.units``)
FIRST_SHARE = 8


def probe_size(arch: str) -> int:
    return PROBE_IMAGES if arch == "cnn" else PROBE_SAMPLES


@dataclass
class Units:
    """One pass of the probe set: each watched layer's activation as (samples, units, positions) (None for a
    layer without units), and on the host each such layer's dead fraction, counted once for the pass and
    the summary both (on a device the summary counts them there, without a host sync)."""

    acts: list[torch.Tensor | None]
    dead: list[tuple[int, float]] | None


class ProbeSet:
    """The fixed probe set ``x``, passed through ``root`` to read every watched layer's activation."""

    def __init__(self, root: nn.Module, layers: list[WatchedLayer], x: torch.Tensor) -> None:
        self.root, self.layers, self.x = root, layers, x
        self.mode = BatchStatistics(root)
        self._by_module: dict[nn.Module, list[tuple[int, str, int | None]]] = {}
        for i, layer in enumerate(layers):
            if layer.has_units:
                module, side = layer.act
                self._by_module.setdefault(module, []).append((i, side, layer.act_call))
        self._direct = records_directly(root, layers)
        # Where each sample's activations depend on that sample alone (the engine's net without batchnorm,
        # whose batch statistics mix the samples; dropout is off) and the values are on the host, an
        # eighth of the probe set is tried first: if every unit fires on it, none is dead on the whole set
        # either, which is the count the whole set gives. A healthy net is then seen at less cost (the
        # whole set cost a 10-layer MLP more than half a training step); a net with dead units at its last
        # count, whose eighth would not settle it, gets the whole set straight away. So does a net of
        # dense ReLU layers (or of activations not known) before its first count: ReLU is 0 on a half
        # line, and 32 samples rarely settle a dense ReLU unit (a 30-layer He net has 8-40% of each layer
        # dead at step 0; the dropout lesson's 256-wide layers show dead units on the eighth), so trying
        # it first only added a pass to the first capture. A conv layer's unit is a channel seen at
        # every position of every image: an eighth of the images settles it.
        self._host = x.device.type == "cpu"
        self._first = (max(1, len(x) // FIRST_SHARE) if self._direct and not self.mode.norms and self._host
                       and len(x) >= FIRST_SHARE else None)
        # whether the next pass goes to the whole set at once
        self._whole_next = any(layer.has_units and layer.unit_axis == -1 and
                               (layer.activation is None or layer.activation.code == compiled.RELU) for layer in layers)

    def units(self) -> Units:
        """Each watched layer's activation for the probe set, through the weights as they are now, in
        training mode without side effects, and on the host its dead units: for the whole set, or for its
        first samples where every unit fires on those (dead units count the same on both)."""
        if self._first is not None and not self._whole_next:
            acts = self._activations(self.x[:self._first])
            dead = dead_fractions(acts, self.layers)
            if not any(d > 0 for _, d in dead):
                return Units(acts, dead)
        acts = self._activations(self.x)
        dead = dead_fractions(acts, self.layers) if self._host else None
        self._whole_next = dead is not None and any(d > 0 for _, d in dead)
        return Units(acts, dead)

    def _activations(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        with torch.no_grad(), self.mode:
            # the engine's Net reads its own layers (engine/models.py): layer i is its output i
            seen = [[a] for a in self.root.activations(x)] if self._direct else self._pass_hooked(x)
        return [joined(seen[i], layer.unit_axis) if seen[i] and layer.has_units else None
                for i, layer in enumerate(self.layers)]

    def _pass_hooked(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        seen: list[list[torch.Tensor]] = [[] for _ in self.layers]
        calls: dict[nn.Module, int] = {}

        def hook(readers):
            def read(module, inputs, output):
                call = calls.get(module, 0)
                calls[module] = call + 1
                for i, side, wanted in readers:
                    if wanted is None or wanted == call:
                        seen[i].append((inputs[0] if side == "in" else output).detach())
            return read

        handles = [m.register_forward_hook(hook(readers)) for m, readers in self._by_module.items()]
        try:
            self.root(x)
        finally:
            for h in handles:
                h.remove()
        return seen


def dead_fractions(acts: list[torch.Tensor | None], layers: list[WatchedLayer]) -> list[tuple[int, float]]:
    """(layer, fraction of its units that are 0 for every sample and position) of each layer with units, from
    its activations as (samples, units, positions) on the host: one compiled pass over all of them."""
    counted = [(i, t) for i, (t, layer) in enumerate(zip(acts, layers, strict=True)) if layer.has_units and t is not None]
    if not counted:
        return []
    dead = np.empty(len(counted))
    shapes = [units_shape(t, layers[i].unit_axis) for i, t in counted]
    compiled.dead_fractions(compiled.tensor_table([t for _, t in counted], *zip(*shapes, strict=True)), dead)
    return [(i, float(d)) for (i, _), d in zip(counted, dead, strict=True)]
