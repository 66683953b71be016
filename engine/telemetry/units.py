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

import torch
from torch import nn

from deepscope.engine.models import BatchStatistics
from deepscope.engine.telemetry.layers import WatchedLayer, joined

PROBE_SAMPLES = 256
# A conv unit is a channel, seen at every position: 32 images of 28x28 give it 25,088 chances to fire, more
# than 256 samples give a dense unit, at an eighth of the cost of passing 256 images.
PROBE_IMAGES = 32
UNITS_EVERY = 4  # the probe set is passed on the first capture and every UNITS_EVERY-th after it


def probe_size(arch: str) -> int:
    return PROBE_IMAGES if arch == "cnn" else PROBE_SAMPLES


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

    def activations(self) -> list[torch.Tensor | None]:
        """Each watched layer's activation for the probe set, as (samples, units, positions) (None for a
        layer without units), through the weights as they are now, in training mode without side effects."""
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
            with torch.no_grad(), self.mode:
                self.root(self.x)
        finally:
            for h in handles:
                h.remove()
        return [joined(seen[i], layer.unit_axis) if seen[i] else None for i, layer in enumerate(self.layers)]
