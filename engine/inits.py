"""Weight initialisations by name. Each takes the weight tensor and the model config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from deepscope.engine.registry import Registry
from deepscope.engine.theory import init_gain

if TYPE_CHECKING:  # torch loads when weights are made, not when the service reads the names
    import torch

    from deepscope.engine.config import ModelConfig

INITS: Registry[Callable[[torch.Tensor, ModelConfig], None]] = Registry("init")


def _gain(cfg: ModelConfig) -> float:
    return init_gain(cfg.activation, cfg.leaky_slope)


@INITS.register("zeros", "every weight 0: all units of a layer compute the same thing forever (symmetry)")
def _zeros(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    nn.init.zeros_(w)


@INITS.register("small_normal", "N(0,1) * init_std: tiny weights, so activations shrink geometrically with depth",
                takes={"init_std": "only small_normal takes a std; the others derive it from the layer size"})
def _small_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    nn.init.normal_(w, 0.0, cfg.init_std)


@INITS.register("xavier_normal", "N(0, 2/(fan_in+fan_out)): keeps variance for tanh/linear units (Glorot)")
def _xavier_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    nn.init.xavier_normal_(w)


@INITS.register("xavier_uniform", "U(-r, r), r = sqrt(6/(fan_in+fan_out)): Glorot's uniform form")
def _xavier_uniform(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    nn.init.xavier_uniform_(w)


@INITS.register("he_normal", "N(0, g^2/fan_in) with the activation's own gain g^2 = 1/E[f(z)^2], z ~ N(0,1): "
                "2 for ReLU (He), 2/(1+a^2) for leaky ReLU, 2.54 for tanh, 1 for SELU and linear")
def _he_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    nn.init.normal_(w, 0.0, _gain(cfg) / math.sqrt(w[0].numel()))


@INITS.register("he_uniform", "U(-r, r), r = g sqrt(3/fan_in): He's uniform form, with the activation's gain g")
def _he_uniform(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    bound = _gain(cfg) * math.sqrt(3.0 / w[0].numel())
    nn.init.uniform_(w, -bound, bound)


@INITS.register("lecun_normal", "N(0, 1/fan_in): the init SELU's self-normalisation assumes")
def _lecun_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    fan_in = w[0].numel()
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(fan_in))


@INITS.register("orthogonal", "a random orthogonal matrix scaled by the activation's gain: preserves norms exactly")
def _orthogonal(w: torch.Tensor, cfg: ModelConfig) -> None:
    from torch import nn

    nn.init.orthogonal_(w, gain=_gain(cfg))


def init_weights(w: torch.Tensor, cfg: ModelConfig) -> None:
    import torch

    with torch.no_grad():
        INITS.get(cfg.init)(w, cfg)
