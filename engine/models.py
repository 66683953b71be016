"""The networks: a stack of identical hidden blocks and a linear classifier.

Each hidden block is weights (linear or 3x3 conv) -> batchnorm (optional) -> activation ->
dropout (optional), so the telemetry can name what it measures: ``preact`` is the activation's
input (after batchnorm), ``act`` its output (before dropout).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn

from deepscope.engine.activations import make_activation
from deepscope.engine.config import ModelConfig
from deepscope.engine.inits import init_weights


class ClassicDropout(nn.Module):
    """Dropout as first described: drop units without rescaling while training; at test time keep
    every unit and multiply by the keep probability p, so expected outputs match."""

    def __init__(self, drop: float) -> None:
        super().__init__()
        self.keep = 1.0 - drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x * torch.bernoulli(torch.full_like(x, self.keep))
        return x * self.keep


class Block(nn.Module):
    def __init__(self, kind: str, n_in: int, n_out: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.kind = kind
        # (a batchnorm module is made only where it is used: making one was a third of building a 30-layer
        # net, which a queued run's first look does)
        if kind == "conv":
            self.weights: nn.Module = nn.Conv2d(n_in, n_out, 3, padding=1)
            norm = nn.BatchNorm2d if cfg.batchnorm else None
        else:
            self.weights = nn.Linear(n_in, n_out)
            norm = nn.BatchNorm1d if cfg.batchnorm else None
        self.norm: nn.Module = norm(n_out, momentum=cfg.bn_momentum) if norm is not None else nn.Identity()
        self.act = make_activation(cfg.activation, cfg.leaky_slope)
        if cfg.dropout == 0:
            self.drop: nn.Module = nn.Identity()
        elif cfg.dropout_mode == "classic":
            self.drop = ClassicDropout(cfg.dropout)
        else:
            self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.norm(self.weights(x))))

    def recorded(self, x: torch.Tensor, recorder: Recorder, i: int) -> torch.Tensor:
        """``forward``, showing the recorder this block's pre-activation and activation."""
        z = self.norm(self.weights(x))
        a = self.act(z)
        recorder(i, z, a)
        return self.drop(a)


class Recorder(Protocol):
    """What reads a ``Net``'s layers while it is set as ``net.recorder``: ``begin()`` as a forward starts,
    then ``(i, z, a)`` for block i's pre-activation and activation, and (len(blocks), logits, logits) for
    the classifier. The telemetry's taps are one (engine/telemetry/hooks.py): a captured step reads
    every layer through it without a forward hook on any module."""

    def begin(self) -> None: ...

    def __call__(self, i: int, z: torch.Tensor, a: torch.Tensor) -> None: ...


def pooled_blocks(depth: int, height: int, width: int) -> set[int]:
    """The conv blocks followed by a 2x2 average pool: the image is halved at most three times (and never
    below 2x2), spread evenly over the depth (engine/memory.py sizes the layers by the same rule)."""
    n_pools = max(0, min(3, int(math.log2(min(height, width))) - 1, depth))
    return {round((i + 1) * depth / (n_pools + 1)) - 1 for i in range(n_pools)} if n_pools else set()


class Net(nn.Module):
    """``blocks`` then ``head``; ``pools`` marks the conv blocks followed by a 2x2 average pool."""

    def __init__(self, cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.arch = cfg.arch
        blocks = []
        if cfg.arch == "cnn":
            channels, height, width = input_shape
            self.pools = pooled_blocks(cfg.depth, height, width)
            n_in = channels
            for _ in range(cfg.depth):
                blocks.append(Block("conv", n_in, cfg.width, cfg))
                n_in = cfg.width
        else:
            self.pools = set()
            n_in = int(math.prod(input_shape))
            for _ in range(cfg.depth):
                blocks.append(Block("linear", n_in, cfg.width, cfg))
                n_in = cfg.width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(n_in, n_classes)
        # Set while a step is captured. A forward hook per watched module (registering them, torch's slower
        # call path for a hooked module, the hooks' Python) took a 6-layer MLP's capture from 1.01 to 1.17
        # CPU-ms (docs/telemetry.md).
        self.recorder: Recorder | None = None
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                init_weights(module.weight, cfg)
                nn.init.constant_(module.bias, cfg.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        recorder = self.recorder
        if recorder is not None:
            recorder.begin()
        if self.arch == "mlp":
            x = x.flatten(1)
        for i, block in enumerate(self.blocks):
            x = block(x) if recorder is None else block.recorded(x, recorder, i)
            if i in self.pools:
                x = nn.functional.avg_pool2d(x, 2)
        if self.arch == "cnn":
            x = x.mean(dim=(2, 3))
        logits = self.head(x)
        if recorder is not None:
            recorder(len(self.blocks), logits, logits)
        return logits

    def train(self, mode: bool = True) -> Net:
        """``nn.Module.train``, with every module's flag written straight and the modules listed once:
        torch walks the tree through ``__setattr__`` (0.35 ms a call on a 30-layer net, which a run pays
        twice for every decision boundary and every evaluation). The engine never changes a net's modules
        after building it."""
        tree = self.__dict__.get("_tree")
        if tree is None:
            tree = self.__dict__["_tree"] = list(self.modules())
        for module in tree:
            module.__dict__["training"] = mode
        return self

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's activation for ``x``, then the logits: what ``forward`` shows a recorder, in the modes
        the modules are in. Each module's ``forward`` is called directly, past ``nn.Module.__call__`` and
        its hook machinery (the engine puts no hook on its own net): the probe set passes this every few
        captures, and that call path was a third or more of the pass (a 30-layer MLP, 32 samples: 0.95
        CPU-ms through the modules, 0.57 this way; docs/telemetry.md). The modules' forwards are listed on
        the first call: the engine never changes a net's modules after building it (as ``train`` assumes)."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self.__dict__["_plan"] = [
                (b.weights.forward, None if isinstance(b.norm, nn.Identity) else b.norm.forward, b.act.forward,
                 None if isinstance(b.drop, nn.Identity) else b.drop.forward, i in self.pools)
                for i, b in enumerate(self.blocks)]
        seen = []
        if self.arch == "mlp":
            x = x.flatten(1)
        for weights, norm, act, drop, pooled in plan:
            z = weights(x)
            if norm is not None:
                z = norm(z)
            x = act(z)
            seen.append(x)
            if drop is not None:
                x = drop(x)
            if pooled:
                x = nn.functional.avg_pool2d(x, 2)
        if self.arch == "cnn":
            x = x.mean(dim=(2, 3))
        seen.append(self.head.forward(x))
        return seen

    def layer_names(self) -> list[str]:
        return [f"{b.kind}{i + 1}" for i, b in enumerate(self.blocks)] + ["output"]


class BatchStatistics:
    """A context in which batchnorm normalises with the batch's own mean and variance (as in training) but
    leaves its running averages alone, and dropout is off; outside, every module is as it was. The
    modules are listed once, so entering costs a few attribute writes (the probe set enters it on every
    few captures: walking the module tree each time cost more than the forward pass itself)."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = list(model.modules())
        self.norms = [m for m in self.modules if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._saved: list[tuple[list[bool], list[Any], list[Any]]] = []

    def __enter__(self) -> None:
        modes = [m.training for m in self.modules]
        momenta = [m.momentum for m in self.norms]
        tracked = [m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None for m in self.norms]
        self._saved.append((modes, momenta, tracked))
        # The mode flag written straight into each module: nn.Module.__setattr__ checks parameters, buffers
        # and submodules first, and the probe set enters this every few captures.
        for m in self.modules:
            m.__dict__["training"] = False
        for m in self.norms:
            m.__dict__["training"] = True
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged

    def __exit__(self, *exc: object) -> None:
        modes, momenta, tracked = self._saved.pop()
        for m, training in zip(self.modules, modes, strict=True):
            m.__dict__["training"] = training
        for m, momentum, count in zip(self.norms, momenta, tracked, strict=True):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)  # the pass counted a batch: take it back


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """``BatchStatistics`` once."""
    with BatchStatistics(model):
        yield


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> Net:
    return Net(cfg, input_shape, n_classes)
