"""Activation functions by name, with what the telemetry needs to know about each."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from deepscope.engine.registry import Registry

if TYPE_CHECKING:  # torch loads when a net is built, not when the service reads the names
    from torch import nn

# impl(leaky_slope) -> module. meta: saturating=True where the function has a flat tail a unit can
# sit in (engine/telemetry/units.py counts them); takes={field: why it applies only here} for the model fields only this activation reads
# (the form greys the rest). Init gains are computed from the function itself (engine/theory.py).
ACTIVATIONS: Registry[Callable[[float], nn.Module]] = Registry("activation")


@ACTIVATIONS.register("sigmoid", "1/(1+e^-x): outputs in (0,1), slope at most 1/4, so gradients shrink layer by layer",
                      saturating=True)
def _sigmoid(slope: float) -> nn.Module:
    from torch import nn

    return nn.Sigmoid()


@ACTIVATIONS.register("tanh", "zero-centred sigmoid in (-1,1): slope 1 at 0, flat tails for |x| > 2",
                      saturating=True)
def _tanh(slope: float) -> nn.Module:
    from torch import nn

    return nn.Tanh()


@ACTIVATIONS.register("relu", "max(0, x): no vanishing slope for x > 0, but a unit stuck below 0 is dead")
def _relu(slope: float) -> nn.Module:
    from torch import nn

    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu", "max(ax, x): keeps a small slope a for x < 0, so units cannot die",
                      takes={"leaky_slope": "the slope a belongs to leaky_relu"})
def _leaky_relu(slope: float) -> nn.Module:
    from torch import nn

    return nn.LeakyReLU(slope)


@ACTIVATIONS.register("elu", "x for x > 0, e^x - 1 below: smooth, negative outputs pull the mean toward 0",
                      saturating=True)
def _elu(slope: float) -> nn.Module:
    from torch import nn

    return nn.ELU()


@ACTIVATIONS.register("gelu", "x * Phi(x): a smooth ReLU used by transformers", saturating=True)
def _gelu(slope: float) -> nn.Module:
    from torch import nn

    return nn.GELU()


@ACTIVATIONS.register("selu", "scaled ELU that keeps mean 0 and variance 1 under LeCun init (self-normalising)",
                      saturating=True)
def _selu(slope: float) -> nn.Module:
    from torch import nn

    return nn.SELU()


@ACTIVATIONS.register("linear", "identity: any depth collapses to one linear map")
def _linear(slope: float) -> nn.Module:
    from torch import nn

    return nn.Identity()


def make_activation(name: str, leaky_slope: float) -> nn.Module:
    return ACTIVATIONS.get(name)(leaky_slope)
