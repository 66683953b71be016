"""Which layers of any PyTorch model to watch, found from how data really flows through it
(``deepscope.watch``; docs/watch.md).

Registration order says little about a forward pass (a transformer registers its norms after its
feed-forward layers, a ResNet calls one ReLU module twice), so the first training forward is watched
whole: every leaf module's input and output. Then, for each ``nn.Linear`` and ``nn.Conv1d/2d/3d``:

- its normalisation layer is the batchnorm, layernorm or groupnorm module that takes its output, if one
  does (its gamma and beta are reported; the pre-activation is read after it);
- its activation is the activation module that takes that (``nn.ReLU``, ``nn.GELU``, ...), or, where the
  model calls a function (``F.relu``), found from the autograd graph: the next weight layer's input, when
  its gradient function is the activation's (``ReluBackward0``) applied to this layer's output, perhaps
  through dropout. Through dropout the values are read after it, so only dead units are counted there;
- a weight layer that nothing follows is the classifier (``kind`` output).

Modules the forward never calls (``nn.MultiheadAttention`` uses its ``out_proj`` weight directly) are
left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from deepscope.engine.telemetry.layers import Activation, WatchedLayer, activation_of

WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
# autograd's name for a functional activation -> the module of the same function (for its closed-form slope)
FUNCTIONAL = {"ReluBackward0": nn.ReLU(), "GeluBackward0": nn.GELU(), "SigmoidBackward0": nn.Sigmoid(),
              "TanhBackward0": nn.Tanh(), "EluBackward0": nn.ELU(), "SiluBackward0": nn.SiLU(),
              "SoftplusBackward0": nn.Softplus(), "LeakyReluBackward0": None}  # leaky: its slope is not in the graph
THROUGH = ("NativeDropoutBackward0", "MulBackward0", "CloneBackward0", "ViewBackward0", "ReshapeAliasBackward0")


@dataclass
class _Call:
    module: nn.Module
    name: str
    input: Any        # the tensors themselves: identity says which module took which module's output
    output: Any
    values: tuple[Any, Any]  # copies of (input, output) as they were: a later in-place op changes the tensors


@dataclass
class Flow:
    """What one forward showed: every leaf module's calls, in order."""

    calls: list[_Call] = field(default_factory=list)

    def consumers(self, t: torch.Tensor) -> list[_Call]:
        return [c for c in self.calls if c.input is t]

    def index(self, call: _Call) -> int:
        """Which call of its module this is, in the forward."""
        return [c for c in self.calls if c.module is call.module].index(call)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if not list(m.children())]


class Recorder:
    """Hooks on every leaf module for one forward (with gradients on): its first input and its output."""

    def __init__(self, model: nn.Module) -> None:
        self.flow = Flow()
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in leaf_modules(model)]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
                return
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            for t in (first, output):  # their gradients, for the activations among them
                if t is not None and t.requires_grad and not t.is_leaf:
                    t.retain_grad()
            copy = lambda t: t.detach().clone() if t is not None else None  # noqa: E731
            self.flow.calls.append(_Call(module, name, first, output, (copy(first), copy(output))))
        return hook

    def restart(self) -> None:
        """A new forward of the root module (gradient accumulation): only the last one counts."""
        self.flow = Flow()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _matches(norm: nn.Module, weight: nn.Module) -> bool:
    out = weight.out_features if isinstance(weight, nn.Linear) else weight.out_channels
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        return norm.num_features == out
    if isinstance(norm, nn.LayerNorm):
        return tuple(norm.normalized_shape)[-1:] == (out,)
    return isinstance(norm, nn.GroupNorm) and norm.num_channels == out


def _functional_next(flow: Flow, t: torch.Tensor, after: int) -> tuple[_Call | None, Activation | None, bool]:
    """The next weight layer whose input is a functional activation of ``t`` (perhaps through dropout):
    (its call, the activation if its slope can be read, whether the values came through dropout)."""
    for call in flow.calls[after:]:
        x = call.input
        if not isinstance(call.module, WEIGHTS) or x is None or x.grad_fn is None:
            continue
        node, through = x.grad_fn, False
        while node is not None and node.name() in THROUGH:
            through = through or node.name() != "ViewBackward0"
            node = node.next_functions[0][0] if node.next_functions else None
        if node is None or node.name() not in FUNCTIONAL or not node.next_functions:
            continue
        if t.grad_fn is not None and node.next_functions[0][0] is t.grad_fn:
            module = FUNCTIONAL[node.name()]
            return call, (activation_of(module) if module is not None and not through else None), through
    return None, None, False


def resolve(flow: Flow, only: list[Any] | None = None) -> list[WatchedLayer]:
    """The watched layers of the model ``flow`` came from, in call order."""
    seen: set[int] = set()
    layers: list[WatchedLayer] = []
    for i, call in enumerate(flow.calls):
        w = call.module
        if not isinstance(w, WEIGHTS) or id(w) in seen:
            continue
        seen.add(id(w))
        pre_call = next((c for c in flow.consumers(call.output) if isinstance(c.module, NORMS) and _matches(c.module, w)),
                        None)
        pre_tap = (pre_call.module, "out") if pre_call else (w, "out")
        t = pre_call.output if pre_call else call.output
        act_call = next((c for c in flow.consumers(t) if activation_of(c.module) is not None
                         and not isinstance(c.module, nn.Identity)), None)
        if act_call is not None:
            act_tap, activation = (act_call.module, "out"), activation_of(act_call.module)
        else:
            act_call, activation, _ = _functional_next(flow, t, i + 1)
            act_tap = (act_call.module, "in") if act_call is not None else pre_tap
        followed = act_call is not None or act_tap is not pre_tap
        kind = "conv" if isinstance(w, nn.Conv1d | nn.Conv2d | nn.Conv3d) else "linear"
        shared = sum(c.module is w for c in flow.calls) > 1  # a layer used twice: every call is its own
        layers.append(WatchedLayer(
            call.name, kind if followed else "output", w, pre_tap, act_tap, activation if followed else None,
            pre_call.module if pre_call else None, 1 if kind == "conv" else -1,
            pre_call=flow.index(pre_call) if pre_call and not shared else None,
            act_call=flow.index(act_call) if act_call and not shared else None))
    if only:
        layers = [layer for layer in layers if any(_picked(layer, o) for o in only)]
    # only the last layer is the classifier: a hidden layer followed by nothing we can see stays a layer
    return [layer if layer.kind != "output" or i == len(layers) - 1 else
            replace(layer, kind="conv" if isinstance(layer.weight, nn.Conv1d | nn.Conv2d | nn.Conv3d) else "linear")
            for i, layer in enumerate(layers)]


def _picked(layer: WatchedLayer, choice: Any) -> bool:
    """``layers=``: a module name (or the start of one, as ``layer4``) or a module type."""
    if isinstance(choice, str):
        return layer.name == choice or layer.name.startswith(choice + ".")
    return isinstance(choice, type) and isinstance(layer.weight, choice)
