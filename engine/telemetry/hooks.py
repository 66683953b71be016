"""Forward hooks that own their handles (the fastai ``Hook``/``Hooks`` pattern), reading the taps of the
watched layers (engine/telemetry/layers.py). The engine's own ``Net`` watched whole is read without
hooks: it shows each layer to ``net.recorder`` (engine/models.py), which the taps become while armed.

They are registered only while armed, so an ordinary step runs no hook at all. On an armed step they
keep what a training forward showed each tap (a forward with gradients off, such as a validation pass,
is left alone), and each activation keeps its gradient (``retain_grad``: no Python runs in the backward
pass, half the cost of a tensor hook). Every forward of the root module starts the record afresh, so with
gradient accumulation the record is the last micro-batch's; a module called twice in one forward (a
shared layer) records both calls, which the probe joins.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope.engine.models import Net
from deepscope.engine.telemetry.layers import WatchedLayer


def records_directly(root: nn.Module | None, layers: list[WatchedLayer]) -> bool:
    """Whether ``layers`` are the engine's ``Net`` watched whole, as ``layers_of_net`` describes it: then the
    net shows its layers to a recorder (layer i is its record i) and no hook is needed."""
    if not isinstance(root, Net) or len(layers) != len(root.blocks) + 1:
        return False
    taps = [((b.act, "in"), (b.act, "out")) for b in root.blocks] + [((root.head, "out"), (root.head, "out"))]
    return all((layer.pre, layer.act) == tap and layer.pre_call is None and layer.act_call is None
               for layer, tap in zip(layers, taps, strict=True))


def _set_recorder(net: nn.Module, recorder: Any) -> None:
    # past nn.Module.__setattr__, which looks the name up among parameters, buffers and modules first
    object.__setattr__(net, "recorder", recorder)


class Taps:
    """Records, per watched layer, the tensors seen at its ``pre`` and ``act`` taps (``pre[i]``, ``act[i]``)
    and the activations themselves (``act_source[i]``: their ``.grad`` is the loss's gradient with
    respect to them once the backward pass ran). ``copy`` clones the values it keeps: a model that writes
    its activations in place (``ReLU(inplace=True)``) would otherwise change them afterwards. Use as a
    context manager, or call ``remove`` (safe twice)."""

    def __init__(self, layers: list[WatchedLayer], root: nn.Module | None = None, copy: bool = False) -> None:
        self.layers, self.root, self.copy = layers, root, copy
        n = len(layers)
        self.pre: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.act: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.act_source: list[list[torch.Tensor]] = [[] for _ in range(n)]
        # per module and side ("in": its first input, "out": its output): (values, sources or None, which call)
        self._targets: dict[nn.Module, dict[str, list[tuple[list, list | None, int | None]]]] = {}
        for i, layer in enumerate(layers):
            for values, sources, (module, side), call in ((self.pre[i], None, layer.pre, layer.pre_call),
                                                          (self.act[i], self.act_source[i], layer.act, layer.act_call)):
                self._targets.setdefault(module, {"in": [], "out": []})[side].append((values, sources, call))
        self._calls: dict[nn.Module, int] = {}  # calls of each module in this forward
        # whether anything was kept since the last clear: a 100-layer net has 300 records, and every
        # armed forward would otherwise empty them twice (arming, then the root's forward)
        self.recorded = False
        self.armed = False
        self._handles: list[Any] = []
        self._direct = records_directly(root, layers)

    def clear(self) -> None:
        if self.recorded:
            for record in (*self.pre, *self.act, *self.act_source):
                record.clear()
            self.recorded = False
        self._calls = {}

    @property
    def complete(self) -> bool:
        return all(self.act) and all(self.pre)

    def arm(self) -> None:
        """Register the hooks; from now on a training forward is recorded."""
        if self.armed:
            return
        self.clear()
        self.armed = True
        if self._direct:
            _set_recorder(self.root, self)
            return
        self._handles = [m.register_forward_hook(self._hook(targets["in"], targets["out"]))
                         for m, targets in self._targets.items()]
        if self.root is not None:
            self._handles.append(self.root.register_forward_pre_hook(self._restart))

    def disarm(self) -> None:
        """Remove the hooks and keep what they recorded."""
        self.armed = False
        if self._direct and self.root.recorder is self:
            _set_recorder(self.root, None)
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def remove(self) -> None:
        self.disarm()
        self.clear()

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _restart(self, module: nn.Module, inputs: Any) -> None:
        if torch.is_grad_enabled():
            self.clear()

    # -- the engine's Net, as its recorder (engine/models.py) ------------------------------------
    def begin(self) -> None:
        if torch.is_grad_enabled():
            self.clear()

    def __call__(self, i: int, z: torch.Tensor, a: torch.Tensor) -> None:
        """Block i's pre-activation and activation (the classifier's logits twice), as the hooks keep them."""
        if not torch.is_grad_enabled():
            return
        self.recorded = True
        pre = z.detach().clone() if self.copy else z.detach()
        self.pre[i].append(pre)
        self.act[i].append(pre if a is z else a.detach().clone() if self.copy else a.detach())
        if a.requires_grad:
            a.retain_grad()
            self.act_source[i].append(a)

    def _hook(self, into_in: list[tuple[list, list | None, int | None]],
              into_out: list[tuple[list, list | None, int | None]]):
        copy = self.copy

        def keep(t: Any, targets: list[tuple[list, list | None, int | None]], call: int) -> None:
            if not isinstance(t, torch.Tensor):
                return
            self.recorded = True
            value = None
            for values, sources, wanted in targets:
                if wanted is not None and wanted != call:
                    continue
                value = value if value is not None else (t.detach().clone() if copy else t.detach())
                values.append(value)
                if sources is not None and t.requires_grad:
                    t.retain_grad()
                    sources.append(t)

        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if torch.is_grad_enabled():
                call = self._calls.get(module, 0)
                self._calls[module] = call + 1
                if into_in and inputs:
                    keep(inputs[0], into_in, call)
                if into_out:
                    keep(output, into_out, call)

        return hook
