"""What the probe watches: one ``WatchedLayer`` per weight layer, naming where its pre-activation and
activation are read and which activation function sits between them.

The engine's own nets are described by ``layers_of_net``; any other model by ``discover``
(``deepscope.watch``), from ``model.named_modules()``. The probe and the summary read only these
descriptions, so one piece of code watches both (docs/telemetry.md, "Your own model").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from deepscope.engine.telemetry import compiled

Tap = tuple[nn.Module, str]  # a module, and "in" (its first input) or "out" (its output)

# torch modules whose slope f'(z) the kernels know in closed form: (code, saturating, parameter)
_KNOWN: dict[type, tuple[int, bool]] = {
    nn.Identity: (compiled.IDENTITY, False), nn.ReLU: (compiled.RELU, False),
    nn.LeakyReLU: (compiled.LEAKY, False), nn.Sigmoid: (compiled.SIGMOID, True), nn.Tanh: (compiled.TANH, True),
    nn.ELU: (compiled.ELU, True), nn.SELU: (compiled.SELU, True), nn.GELU: (compiled.GELU, True),
    nn.SiLU: (compiled.SILU, True), nn.Softplus: (compiled.SOFTPLUS, True),
}
SELU_SCALE_ALPHA = 1.0507009873554805 * 1.6732632423543772
# A unit is saturated on a sample where the slope f'(z) there is under this share of the activation's
# largest slope: it sits in a flat tail and passes almost no gradient back (engine/telemetry/units.py).
SATURATED_SLOPE = 0.05


@dataclass(frozen=True)
class Activation:
    """An activation function as the unit counts need it: its code for the kernels, its parameter (the
    leaky slope, ELU's alpha), whether it has a flat tail a unit can sit in, and its largest slope."""

    name: str
    code: int
    param: float
    saturating: bool
    peak: float
    flat_below: float  # a unit is saturated on a sample where its slope is under this: SATURATED_SLOPE * peak


def activation_of(module: nn.Module | None) -> Activation | None:
    """The activation a module computes, or None where its slope is not known in closed form (a custom
    function, GELU's tanh form): such a layer still gets dead units counted, not slopes."""
    if module is None:
        return None
    known = _KNOWN.get(type(module))
    if known is None or (isinstance(module, nn.GELU) and module.approximate != "none") \
            or (isinstance(module, nn.Softplus) and (module.beta != 1 or module.threshold != 20)):
        return None
    code, saturating = known
    param = float({compiled.LEAKY: lambda m: m.negative_slope, compiled.ELU: lambda m: m.alpha,
                   compiled.SELU: lambda m: SELU_SCALE_ALPHA}.get(code, lambda m: 0.0)(module))
    peak = _peak(code, param)
    return Activation(type(module).__name__.lower(), code, param, saturating, peak, SATURATED_SLOPE * peak)


@functools.lru_cache(maxsize=64)
def _peak(code: int, param: float) -> float:
    """The largest slope over z in [-10, 10], from the closed form (on a fine grid). Kept per activation:
    worked out for every layer, it was half of a 30-layer run's first look (1.6 ms a layer)."""
    z = torch.linspace(-10, 10, 40001, dtype=torch.float64)
    a = {compiled.RELU: torch.relu(z), compiled.SIGMOID: torch.sigmoid(z), compiled.TANH: torch.tanh(z),
         compiled.ELU: nn.functional.elu(z, param), compiled.SELU: torch.selu(z), compiled.SILU: nn.functional.silu(z),
         compiled.SOFTPLUS: nn.functional.softplus(z)}.get(code, z)
    slope = slope_of(code, z, a, param)
    return float(slope.abs().max()) if math.isfinite(float(slope.abs().max())) else 1.0


def slope_of(code: int, z: torch.Tensor, a: torch.Tensor, param: float) -> torch.Tensor:
    """f'(z) in torch, the same closed forms as ``compiled._slope``: the GPU path's, and the peak's."""
    one = torch.ones_like(z)
    if code == compiled.RELU:
        return (z > 0).to(z.dtype)
    if code == compiled.LEAKY:
        return torch.where(z > 0, one, param * one)
    if code == compiled.SIGMOID:
        return a * (1 - a)
    if code == compiled.TANH:
        return 1 - a * a
    if code == compiled.ELU:
        return torch.where(z > 0, one, a + param)
    if code == compiled.SELU:
        return torch.where(z > 0, compiled.SELU_SCALE * one, a + param)
    if code == compiled.GELU:
        return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if code == compiled.SILU:
        s = torch.where(z != 0, a / torch.where(z != 0, z, one), 0.5 * one)
        return s * (1 + z * (1 - s))
    if code == compiled.SOFTPLUS:
        return -torch.expm1(-a)
    return one


@dataclass(frozen=True)
class WatchedLayer:
    """One weight layer: ``weight`` (an ``nn.Linear`` or ``nn.ConvNd``) whose weights and gradients are
    read; ``pre`` and ``act`` where its pre-activation (after normalisation) and activation are read;
    ``activation`` the function between them (None: unknown, or none, as for the classifier);
    ``norm`` a normalisation layer whose gamma and beta are reported; ``unit_axis`` the dimension of a
    unit (1: a conv channel; -1: a linear feature). ``pre_call`` and ``act_call``: which call of the tap's
    module in one forward is this layer's (a ResNet block calls one ReLU module twice); None: every call
    (a shared layer's calls are all its own)."""

    name: str
    kind: str
    weight: nn.Module
    pre: Tap
    act: Tap
    activation: Activation | None
    norm: nn.Module | None = None
    unit_axis: int = -1
    pre_call: int | None = None
    act_call: int | None = None

    @property
    def has_units(self) -> bool:
        """Whether its units' activations are known: the classifier has none, nor a layer of a watched model
        whose output no activation we can see takes."""
        return self.kind != "output" and (self.activation is not None or self.act != self.pre)


def layers_of_net(net: nn.Module) -> list[WatchedLayer]:
    """The engine's ``Net``: every hidden block (weights -> batchnorm -> activation -> dropout), read at
    its activation module, and the classifier, read at its output."""
    layers = []
    for name, block in zip(net.layer_names(), net.blocks, strict=False):
        norm = block.norm if isinstance(block.norm, nn.modules.batchnorm._BatchNorm) else None
        layers.append(WatchedLayer(name, block.kind, block.weights, (block.act, "in"), (block.act, "out"),
                                   activation_of(block.act), norm, 1 if block.kind == "conv" else -1))
    layers.append(WatchedLayer("output", "output", net.head, (net.head, "out"), (net.head, "out"), None))
    return layers


def units_shape(t: torch.Tensor, unit_axis: int) -> tuple[int, int, int]:
    """A layer's tensor seen as (samples, units, positions): a linear layer's (..., features) as (rows,
    features, 1), a conv layer's (batch, channels, ...) as (batch, channels, positions)."""
    if unit_axis == 1 and t.ndim >= 3:
        return t.shape[0], t.shape[1], t.numel() // max(1, t.shape[0] * t.shape[1])
    features = t.shape[-1] if t.ndim else 1
    return t.numel() // max(1, features), features, 1


def joined(tensors: list[torch.Tensor], unit_axis: int) -> torch.Tensor:
    """What a layer's calls in one forward saw, as one contiguous float32 tensor: the tensor itself for one
    call (no copy where it already is one); for a module called more than once (a shared layer) the
    calls joined in the (samples, units, positions) layout, stacked as samples where their positions
    agree, else side by side as positions of one sample."""
    if len(tensors) == 1:
        t = tensors[0]
        t = t if t.dtype == torch.float32 else t.float()
        return t if t.is_contiguous() else t.contiguous()
    views = [t.float().reshape(units_shape(t, unit_axis)) for t in tensors]
    if all(v.shape[2] == views[0].shape[2] for v in views):
        return torch.cat(views)
    return torch.cat([v.transpose(0, 1).reshape(1, v.shape[1], -1) for v in views], 2).contiguous()
