"""Where a diverged run first went non-finite, as TensorBoard's debugger finds the first NaN: the first
watched layer, input to output, whose weights, or whose activation for the batch that diverged, hold a
NaN or an infinity."""

from __future__ import annotations

import torch
from torch import nn

from deepscope.engine.telemetry.layers import WatchedLayer


def first_nonfinite_layer(model: nn.Module, layers: list[WatchedLayer], x: torch.Tensor) -> str | None:
    for layer in layers:  # weights first: a NaN weight makes every activation after it NaN
        if not torch.isfinite(layer.weight.weight).all():
            return layer.name
    bad: list[int] = []

    def check(i: int, side: str):
        def hook(module, inputs, output):
            t = inputs[0] if side == "in" else output
            if isinstance(t, torch.Tensor) and not torch.isfinite(t).all():
                bad.append(i)
        return hook

    handles = [layer.act[0].register_forward_hook(check(i, layer.act[1])) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return layers[min(bad)].name if bad else None
