"""Weight initialisations by name. Each takes the weight tensor and the model config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from engine.activations import ACTIVATIONS
from engine.registry import Registry

if TYPE_CHECKING:
    from engine.config import ModelConfig

INITS: Registry[Callable[[torch.Tensor, ModelConfig], None]] = Registry("init")


def _gain_args(cfg: ModelConfig) -> tuple[str, float | None]:
    gain = ACTIVATIONS.entry(cfg.activation).meta["gain"]
    return gain, (cfg.leaky_slope if gain == "leaky_relu" else None)


@INITS.register("zeros", "every weight 0: all units of a layer compute the same thing forever (symmetry)")
def _zeros(w: torch.Tensor, cfg: ModelConfig) -> None:
    nn.init.zeros_(w)


@INITS.register("small_normal", "N(0,1) * init_std: tiny weights, so activations shrink geometrically with depth",
                uses_std=True)
def _small_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    nn.init.normal_(w, 0.0, cfg.init_std)


@INITS.register("xavier_normal", "N(0, 2/(fan_in+fan_out)): keeps variance for tanh/linear units (Glorot)")
def _xavier_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    nn.init.xavier_normal_(w)


@INITS.register("xavier_uniform", "U(-r, r), r = sqrt(6/(fan_in+fan_out)): Glorot's uniform form")
def _xavier_uniform(w: torch.Tensor, cfg: ModelConfig) -> None:
    nn.init.xavier_uniform_(w)


@INITS.register("he_normal", "N(0, 2/fan_in): doubles Xavier's variance to make up for ReLU zeroing half the units")
def _he_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    gain, slope = _gain_args(cfg)
    nonlinearity = gain if gain in ("relu", "leaky_relu") else "relu"
    nn.init.kaiming_normal_(w, a=slope or 0.0, nonlinearity=nonlinearity)


@INITS.register("he_uniform", "U(-r, r), r = sqrt(6/fan_in): He's uniform form")
def _he_uniform(w: torch.Tensor, cfg: ModelConfig) -> None:
    gain, slope = _gain_args(cfg)
    nonlinearity = gain if gain in ("relu", "leaky_relu") else "relu"
    nn.init.kaiming_uniform_(w, a=slope or 0.0, nonlinearity=nonlinearity)


@INITS.register("lecun_normal", "N(0, 1/fan_in): the init SELU's self-normalisation assumes")
def _lecun_normal(w: torch.Tensor, cfg: ModelConfig) -> None:
    fan_in = w[0].numel()
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(fan_in))


@INITS.register("orthogonal", "a random orthogonal matrix scaled by the activation's gain: preserves norms exactly")
def _orthogonal(w: torch.Tensor, cfg: ModelConfig) -> None:
    gain, slope = _gain_args(cfg)
    nn.init.orthogonal_(w, gain=nn.init.calculate_gain(gain, slope))


def init_weights(w: torch.Tensor, cfg: ModelConfig) -> None:
    with torch.no_grad():
        INITS.get(cfg.init)(w, cfg)
