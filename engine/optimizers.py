"""Optimizers by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from deepscope.engine.registry import Registry

if TYPE_CHECKING:  # torch loads when a run trains, not when the service reads the names
    import torch

    from deepscope.engine.config import TrainConfig

OPTIMIZERS: Registry[Callable[[Iterable[torch.nn.Parameter], TrainConfig, bool], torch.optim.Optimizer]] = \
    Registry("optimizer")


@OPTIMIZERS.register("sgd", "w <- w - lr * grad")
def _sgd(params, cfg: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("momentum", "v <- m v + grad; w <- w - lr * v",
                     takes={"momentum": "only the momentum optimizer keeps a velocity"})
def _momentum(params, cfg: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam", "per-weight steps from running means of the gradient and its square")
def _adam(params, cfg: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    import torch

    # fused=True is 1.6x the default on small MLPs on this CPU (docs/measured.md).
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def make_optimizer(params, cfg: TrainConfig, fused: bool = True) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg, fused)
