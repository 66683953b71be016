"""Lessons: one idea of the theory each, with the runs that show it and an outcome the page can check.

An expectation compares a metric of one run's final ``summary`` with another run's or with a
number: ``left op right + plus``. Metric paths are dotted into the summary, e.g. ``val_acc`` or
``probe_start.grad_ratio`` (see ``deepscope.engine.telemetry.probe_summary``).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

SPIRAL = {"dataset": "spiral", "n_samples": 1500, "noise": 0.1}


def _run(label: str, **sections: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, "config": {"name": label, **sections}}


PRESETS: list[dict[str, Any]] = [
    {
        "id": "vanishing-sigmoid",
        "title": "Sigmoid's vanishing gradients",
        "explanation": "The sigmoid's slope is at most 1/4. Backpropagation multiplies one such slope per layer, "
                       "so in a 10-layer sigmoid net the gradient that reaches the first layer is a tiny fraction "
                       "of the one at the top, and the early layers barely learn. ReLU's slope is 1 where it is "
                       "active, so its gradient keeps its size.",
        "look_at": "Gradient norm against depth (log axis) at step 0: a straight falling line for sigmoid, "
                   "flat for ReLU. Then the loss curves.",
        "runs": [
            _run("sigmoid", data=SPIRAL, model={"depth": 10, "activation": "sigmoid", "init": "xavier_normal"},
                 train={"epochs": 15}),
            _run("relu", data=SPIRAL, model={"depth": 10, "activation": "relu", "init": "he_normal"},
                 train={"epochs": 15}),
        ],
        "expect": [
            {"text": "sigmoid's first layer gets under 1/1000 of its last layer's gradient",
             "left": {"run": "sigmoid", "metric": "probe_start.grad_ratio"}, "op": "<", "right": {"value": 1e-3}},
            {"text": "ReLU's first layer gets over 1/50 of its last layer's gradient",
             "left": {"run": "relu", "metric": "probe_start.grad_ratio"}, "op": ">", "right": {"value": 0.02}},
            {"text": "ReLU ends with validation accuracy at least 0.3 above sigmoid's",
             "left": {"run": "relu", "metric": "val_acc"}, "op": ">",
             "right": {"run": "sigmoid", "metric": "val_acc"}, "plus": 0.3},
        ],
    },
    {
        "id": "sigmoid-tanh-relu",
        "title": "Sigmoid vs tanh vs ReLU",
        "explanation": "Same 6-layer net, three activations. Tanh is a zero-centred sigmoid with slope 1 at 0, so its "
                       "gradients shrink more slowly; ReLU does not saturate for positive inputs at all.",
        "look_at": "Loss curves side by side, and the activation histograms: sigmoid's sit around 0.5, tanh's "
                   "around 0, ReLU's have a spike at 0.",
        "runs": [
            _run(act, data=SPIRAL, model={"depth": 6, "activation": act,
                                          "init": "he_normal" if act == "relu" else "xavier_normal"},
                 train={"epochs": 20})
            for act in ("sigmoid", "tanh", "relu")
        ],
        "expect": [
            {"text": "tanh reaches a validation accuracy above sigmoid's",
             "left": {"run": "tanh", "metric": "val_acc"}, "op": ">", "right": {"run": "sigmoid", "metric": "val_acc"}},
            {"text": "ReLU reaches a validation accuracy above sigmoid's",
             "left": {"run": "relu", "metric": "val_acc"}, "op": ">", "right": {"run": "sigmoid", "metric": "val_acc"}},
        ],
    },
    {
        "id": "dying-relu",
        "title": "Dying ReLU and leaky ReLU",
        "explanation": "A ReLU unit whose pre-activation is negative for every input outputs 0 and gets a zero "
                       "gradient, so nothing can bring it back: it is dead. A negative starting bias kills many "
                       "units at once. Leaky ReLU keeps a small slope a below 0, so its units always get a "
                       "gradient and cannot die.",
        "look_at": "The dead fraction per layer: high for ReLU from step 0 on, zero for leaky ReLU.",
        "runs": [
            _run("relu", data=SPIRAL, model={"depth": 8, "activation": "relu", "bias_init": -0.5},
                 train={"epochs": 15}),
            _run("leaky relu a=0.2", data=SPIRAL, model={"depth": 8, "activation": "leaky_relu",
                                                         "leaky_slope": 0.2, "bias_init": -0.5},
                 train={"epochs": 15}),
        ],
        "expect": [
            {"text": "over 30% of ReLU's hidden units are dead at the end",
             "left": {"run": "relu", "metric": "probe_end.dead_frac"}, "op": ">", "right": {"value": 0.3}},
            {"text": "leaky ReLU has no dead units",
             "left": {"run": "leaky relu a=0.2", "metric": "probe_end.dead_frac"}, "op": "<=", "right": {"value": 0}},
            {"text": "leaky ReLU ends at least 0.1 ahead in validation accuracy",
             "left": {"run": "leaky relu a=0.2", "metric": "val_acc"}, "op": ">",
             "right": {"run": "relu", "metric": "val_acc"}, "plus": 0.1},
        ],
    },
    {
        "id": "leaky-slope-one",
        "title": "A leaky slope of 1 makes the net linear",
        "explanation": "max(ax, x) with a = 1 is just x. Stacking linear layers gives one linear map, however deep, "
                       "so the net can only draw a straight boundary: it cannot separate a disc from a ring.",
        "look_at": "The decision boundary: a straight cut for a = 1, a closed curve for a = 0.1.",
        "runs": [
            _run(f"a={a}", data={"dataset": "circles", "n_samples": 1500, "noise": 0.05},
                 model={"depth": 4, "activation": "leaky_relu", "leaky_slope": a}, train={"epochs": 15})
            for a in (1.0, 0.1)
        ],
        "expect": [
            {"text": "a = 0.1 beats a = 1 by over 0.3 in validation accuracy",
             "left": {"run": "a=0.1", "metric": "val_acc"}, "op": ">", "right": {"run": "a=1.0", "metric": "val_acc"},
             "plus": 0.3},
        ],
    },
    {
        "id": "zero-init",
        "title": "Zero initialisation and symmetry",
        "explanation": "If every weight starts at 0, every unit of a layer computes the same output and receives the "
                       "same gradient, so they stay identical forever: a layer of 64 units is as good as one. "
                       "Random initialisation breaks the symmetry.",
        "look_at": "The duplicate fraction: 1.0 in every hidden layer for zeros, 0 for He.",
        "runs": [
            _run("zeros", data=SPIRAL, model={"depth": 4, "activation": "tanh", "init": "zeros"},
                 train={"epochs": 15}),
            _run("he_normal", data=SPIRAL, model={"depth": 4, "activation": "tanh", "init": "he_normal"},
                 train={"epochs": 15}),
        ],
        "expect": [
            {"text": "all hidden units of the zero-initialised net stay duplicates",
             "left": {"run": "zeros", "metric": "probe_end.duplicate_frac"}, "op": ">=", "right": {"value": 1.0}},
            {"text": "random init beats zeros by over 0.3 in validation accuracy",
             "left": {"run": "he_normal", "metric": "val_acc"}, "op": ">",
             "right": {"run": "zeros", "metric": "val_acc"}, "plus": 0.3},
        ],
    },
    {
        "id": "small-init-depth",
        "title": "Small random weights shrink the signal with depth",
        "explanation": "Each layer multiplies the activation variance by n Var(w) (halved by ReLU). With "
                       "w = N(0,1) * 0.03 and n = 64 that factor is 0.03, so after 15 layers nothing of the input "
                       "is left. He's Var(w) = 2/n makes the factor exactly 1.",
        "look_at": "The signal-propagation view at step 0: activation std against depth falls on the theory's "
                   "straight line (log axis) for small init, stays flat for He.",
        "runs": [
            _run("small N(0,1)*0.03", data=SPIRAL, model={"depth": 15, "init": "small_normal", "init_std": 0.03},
                 train={"epochs": 10}),
            _run("he_normal", data=SPIRAL, model={"depth": 15, "init": "he_normal"}, train={"epochs": 10}),
        ],
        "expect": [
            {"text": "with small init the last hidden layer's activation std is under 1e-6 of the first's",
             "left": {"run": "small N(0,1)*0.03", "metric": "probe_start.act_std_ratio"}, "op": "<",
             "right": {"value": 1e-6}},
            {"text": "with He init it stays within a factor of 3",
             "left": {"run": "he_normal", "metric": "probe_start.act_std_ratio"}, "op": ">", "right": {"value": 0.33}},
        ],
    },
    {
        "id": "xavier-vs-he",
        "title": "Xavier vs He on a 30-layer ReLU net",
        "explanation": "Xavier's Var(w) = 2/(n_in + n_out) keeps the variance for tanh, but ReLU zeroes half of "
                       "every layer's outputs, so each layer halves the variance: after 30 layers the signal is "
                       "2^-15 of what it was. He doubles the variance to make up for it.",
        "look_at": "Activation std against depth at step 0, and whether the loss moves at all.",
        "runs": [
            _run(init, data=SPIRAL, model={"depth": 30, "activation": "relu", "init": init},
                 train={"epochs": 30})
            for init in ("xavier_normal", "he_normal")
        ],
        "expect": [
            {"text": "He ends with validation accuracy at least 0.3 above Xavier's",
             "left": {"run": "he_normal", "metric": "val_acc"}, "op": ">",
             "right": {"run": "xavier_normal", "metric": "val_acc"}, "plus": 0.3},
        ],
    },
    {
        "id": "batchnorm-sigmoid",
        "title": "Batchnorm rescues a deep sigmoid net",
        "explanation": "Batchnorm normalises each pre-activation over the batch to mean 0 and variance 1, then "
                       "scales by a learned gamma and shifts by beta. Every layer gets well-scaled inputs, so even "
                       "a 20-layer sigmoid net trains. At test time the moving averages "
                       "mu <- (1 - alpha) mu + alpha mu_batch replace the batch statistics.",
        "look_at": "Pre-activation mean and std per layer: 0 and 1 with batchnorm. The loss curves.",
        "runs": [
            _run("sigmoid", data=SPIRAL, model={"depth": 20, "activation": "sigmoid", "init": "xavier_normal"},
                 train={"epochs": 15, "optimizer": "momentum", "lr": 0.02}),
            _run("sigmoid + batchnorm", data=SPIRAL, model={"depth": 20, "activation": "sigmoid",
                                                            "init": "xavier_normal", "batchnorm": True},
                 train={"epochs": 15, "optimizer": "momentum", "lr": 0.02}),
        ],
        "expect": [
            {"text": "batchnorm beats the plain net by over 0.3 in validation accuracy",
             "left": {"run": "sigmoid + batchnorm", "metric": "val_acc"}, "op": ">",
             "right": {"run": "sigmoid", "metric": "val_acc"}, "plus": 0.3},
        ],
    },
    {
        "id": "dropout",
        "title": "Dropout against overfitting a small set",
        "explanation": "With 600 training samples of MNIST-1D a wide net memorises them: training accuracy reaches 1 while "
                       "validation lags. Dropout drops each unit with probability 1 - p while training, so no unit "
                       "can rely on another. Inverted dropout scales kept units by 1/p while training; classic "
                       "dropout leaves them and multiplies by p at test. Both give the same expected output.",
        "look_at": "The gap between training and validation loss.",
        "runs": [
            _run(label, data={"dataset": "mnist1d", "n_samples": 1200, "val_fraction": 0.5},
                 model={"depth": 3, "width": 256, "dropout": drop, "dropout_mode": mode},
                 train={"epochs": 80, "optimizer": "adam", "lr": 0.001, "batch_size": 32})
            for label, drop, mode in (("no dropout", 0.0, "inverted"), ("inverted p=0.5", 0.5, "inverted"),
                                      ("classic p=0.5", 0.5, "classic"))
        ],
        "expect": [
            {"text": "inverted dropout narrows the gap between validation and training loss",
             "left": {"run": "inverted p=0.5", "metric": "loss_gap"}, "op": "<",
             "right": {"run": "no dropout", "metric": "loss_gap"}},
            {"text": "classic dropout narrows it too",
             "left": {"run": "classic p=0.5", "metric": "loss_gap"}, "op": "<",
             "right": {"run": "no dropout", "metric": "loss_gap"}},
        ],
    },
    {
        "id": "augmentation",
        "title": "Augmentation on a small image set",
        "explanation": "With 240 training images of shapes, a CNN memorises them. Random flips, rotations, zooms "
                       "and colour shifts show it new versions of the same shapes every epoch, so it has to learn "
                       "the shape rather than the sample.",
        "look_at": "The augmented-sample preview, then validation accuracy.",
        "runs": [
            _run(label, data={"dataset": "shapes", "n_samples": 600, "val_fraction": 0.6},
                 model={"arch": "cnn", "depth": 4, "width": 16, "batchnorm": True},
                 augment=aug, train={"epochs": 40, "optimizer": "adam", "lr": 0.003, "batch_size": 32})
            for label, aug in (("no augmentation", {}),
                               ("augmented", {"hflip": True, "scale": 0.15, "color_shift": 0.3}))
        ],
        "expect": [
            {"text": "augmentation raises validation accuracy by over 0.05",
             "left": {"run": "augmented", "metric": "val_acc"}, "op": ">",
             "right": {"run": "no augmentation", "metric": "val_acc"}, "plus": 0.05},
        ],
    },
]

BY_ID = {p["id"]: p for p in PRESETS}
EVIDENCE = Path(__file__).with_name("lesson_evidence.json")


@functools.cache
def lesson_evidence() -> dict[str, Any]:
    """Per lesson, from the last sweep (``deepscope lessons --write``): per check, held n/N over seeds
    and thread counts, and the margin's median and minimum. Empty before a sweep has run."""
    return json.loads(EVIDENCE.read_text()) if EVIDENCE.exists() else {}


def metric(summary: dict[str, Any], path: str) -> float | None:
    value: Any = summary
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, int | float) else None


OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def check(expectation: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether one expectation held, given each run's summary by label: the two values compared
    (``left`` and the other run's value or the number as ``right``), the threshold ``bound`` (right +
    plus), and the ``margin``: how far past the threshold, in the direction the check wants (in decades,
    log10, for checks with ``"log": true``, whose values span orders of magnitude); below 0 it failed."""
    left = metric(summaries.get(expectation["left"]["run"], {}), expectation["left"]["metric"])
    right_spec = expectation["right"]
    right = right_spec["value"] if "value" in right_spec else \
        metric(summaries.get(right_spec["run"], {}), right_spec["metric"])
    unit = "log10" if expectation.get("log") else "value"
    out = {"text": expectation["text"], "held": None, "left": left, "right": right, "bound": None,
           "margin": None, "margin_unit": unit}
    if left is None or right is None:
        return out
    bound = right + expectation.get("plus", 0.0)
    held = OPS[expectation["op"]](left, bound)
    if unit == "log10":
        margin = math.log10(max(left, 1e-300) / max(bound, 1e-300)) if left > 0 and bound > 0 else None
    else:
        margin = left - bound
    if margin is not None and expectation["op"] in ("<", "<="):
        margin = -margin
    return {**out, "held": held, "bound": bound, "margin": margin}
