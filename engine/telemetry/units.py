"""Dead and saturated units, and the mean slope f'(z), measured on a fixed probe set.

Counted on one training batch, a healthy He net reads 8-21% "dead": with 64 samples some units are
off for all of them by chance. A fixed probe set of a few hundred training samples makes a healthy
net read about 0, and the same samples every capture make the numbers comparable over time.

- A unit (a feature of a linear layer, a channel of a conv layer) is **dead** when the activation is
  exactly 0 for every probe sample: it passes no gradient back, whatever the input.
- A unit is **saturated** on a sample when the activation's slope f'(z) there is under
  SATURATED_SLOPE of its largest slope: it sits in a flat tail, either one, and passes almost no
  gradient back for that sample. The saturated fraction is the share of units saturated, averaged over
  the probe samples. (Requiring every sample would miss the usual case: with large zero-mean weights a
  unit flips between the two tails from sample to sample, and inputs near 0 keep one sample central.)
  Only activations with flat tails saturate (sigmoid, tanh, ELU, SELU, GELU: registry meta
  ``saturating``); ReLU's flat side is "dead" instead.
- The **mean slope** is f'(z) averaged over the probe samples and units: the factor each layer
  multiplies the backward signal by, the seed's saturation mechanism (at most 1/4 for sigmoid).

The probe set is passed forward in training mode, with batchnorm using its batch statistics but
leaving its running averages alone (momentum 0 for the pass), and dropout off.
"""

from __future__ import annotations

import torch
from torch import nn

from deepscope.engine.models import batch_statistics

SATURATED_SLOPE = 0.05
PROBE_SAMPLES = 256
# A conv unit is a channel, seen at every position: 32 images of 28x28 give it 25,088 chances to fire, more
# than 256 samples give a dense unit, at an eighth of the cost of passing 256 images (60 ms a capture
# for the 4x32 CNN on shapes; benchmarks/telemetry_overhead.py).
PROBE_IMAGES = 32


def probe_size(arch: str) -> int:
    return PROBE_IMAGES if arch == "cnn" else PROBE_SAMPLES
_H = 1e-3  # central differences: f' of every registered activation is smooth enough away from 0


def slope(act: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """f'(z), elementwise, by a central difference (any activation, no autograd)."""
    return (act.forward(z + _H) - act.forward(z - _H)) / (2 * _H)


def max_slope(act: nn.Module) -> float:
    """The largest slope of the activation over z in [-10, 10]."""
    grid = torch.linspace(-10, 10, 4001)
    with torch.no_grad():
        return float(slope(act, grid).abs().max())


def capture_preacts(model: nn.Module, blocks: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Every hidden block's pre-activation for the probe set ``x``, in training mode without side effects."""
    zs: list[torch.Tensor] = []
    handles = [b.act.register_forward_hook(lambda m, inputs, out: zs.append(inputs[0].detach())) for b in blocks]
    try:
        with torch.no_grad(), batch_statistics(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return zs


def unit_stats(act: nn.Module, z: torch.Tensor, saturating: bool, peak: float) -> torch.Tensor:
    """(dead fraction, saturated fraction, mean slope) of the units of G layers that share one activation,
    from their pre-activations stacked as (G, samples, units) or (G, samples, channels, height, width);
    a (G, 3) tensor.

    Calls ``act.forward``, never ``act(...)``: this runs on the summary thread while training goes on,
    and calling the module would fire the hooks the probe has on it."""
    g = z.shape[0]
    off = act.forward(z) == 0
    # a unit is dead when it is off for every sample (and, for a conv channel, at every position)
    dead = (off.all(1) if z.ndim == 3 else off.flatten(3).all(3).all(1)).reshape(g, -1).float().mean(1)
    s = slope(act, z).reshape(g, -1)
    saturated = (s.abs() < SATURATED_SLOPE * peak).float().mean(1) if saturating else torch.zeros(g, device=z.device)
    return torch.stack([dead, saturated, s.mean(1)], 1)


def same_activation(a: nn.Module, b: nn.Module) -> bool:
    """Whether two activation modules compute the same function (one net's layers share a kind and its
    settings; a module with parameters of its own is only ever the same as itself)."""
    return a is b or (type(a) is type(b) and repr(a) == repr(b)
                      and next(a.parameters(), None) is None and next(b.parameters(), None) is None)
