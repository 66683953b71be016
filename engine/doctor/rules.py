"""The doctor's rules: each reads what a run has shown so far (``Record``) and returns its findings.

A finding is ``{id, severity, title, detail, layers, step, evidence, lesson}`` (docs/doctor.md):
``detail`` gives the measured numbers against the threshold in words, ``evidence`` the chart and
statistic to look at (as the lessons' "look at" links do), ``lesson`` the lesson that teaches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deepscope.engine.doctor import thresholds as T

PROBLEM, WARNING, INFO = "problem", "warning", "info"


@dataclass
class Record:
    """What a run has shown: its captures (layers events, in step order), its evals, and how it ended."""

    classes: int = 2
    captures: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None
    diverged_step: int | None = None
    nonfinite_layer: str | None = None


# What a teacher would suggest trying next, per finding: a change to the run's config (the page starts it
# as a compared run in one click).
CURES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "vanishing_gradients": ("the same net with ReLU and He init", {"model": {"activation": "relu", "init": "he_normal"}}),
    "exploding_gradients": ("the same net with He init", {"model": {"init": "he_normal"}}),
    "dead_units": ("the same net with leaky ReLU and no starting bias",
                   {"model": {"activation": "leaky_relu", "leaky_slope": 0.1, "bias_init": 0.0}}),
    "saturation": ("the same net with Xavier init", {"model": {"init": "xavier_normal"}}),
    "symmetry": ("the same net with random (Xavier) init", {"model": {"init": "xavier_normal"}}),
    "signal_shrinks": ("the same net with He init", {"model": {"init": "he_normal"}}),
    "signal_grows": ("the same net with He init", {"model": {"init": "he_normal"}}),
    "diverged": ("the same net with batchnorm", {"model": {"batchnorm": True}}),
    "overfitting": ("the same net with dropout 0.3", {"model": {"dropout": 0.3}}),
    "bn_eval_gap": ("the same net with batchnorm momentum 0.1", {"model": {"bn_momentum": 0.1}}),
    "stalled": ("the same net with batchnorm", {"model": {"batchnorm": True}}),
    "lr_too_high": ("the same net with batchnorm", {"model": {"batchnorm": True}}),
}


def finding(id_: str, severity: str, title: str, detail: str, layers: list[str], step: int | None,
            evidence: dict[str, Any], lesson: str | None) -> dict[str, Any]:
    detail = detail[0].upper() + detail[1:]
    out = {"id": id_, "severity": severity, "title": title, "detail": detail, "layers": layers, "step": step,
           "evidence": {k: v for k, v in {**evidence, "step": step}.items() if v is not None}, "lesson": lesson}
    if id_ in CURES:
        out["try"] = {"text": CURES[id_][0], "change": CURES[id_][1]}
    return out


def why(threshold: T.Threshold) -> str:
    """A threshold's reason as a sentence of the detail."""
    return threshold.reason[0].upper() + threshold.reason[1:] + "."


def _hidden(capture: dict[str, Any]) -> list[dict[str, Any]]:
    return [layer for layer in capture["layers"] if layer["kind"] != "output"]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def gradient_flow(r: Record) -> list[dict[str, Any]]:
    """Vanishing or exploding gradients: the first hidden layer's gradient against the last's."""
    for capture in (r.captures[:1] + r.captures[-1:]) if r.captures else []:
        hidden = _hidden(capture)
        if len(hidden) < T.MIN_DEPTH.value:
            return []
        first, last = hidden[0]["stats"]["grad_norm"], hidden[-1]["stats"]["grad_norm"]
        if not first or not last:  # 0 is a dead layer's (dead_units says so), None a non-finite one
            continue
        ratio = first / last
        names = [hidden[0]["name"], hidden[-1]["name"]]
        evidence = {"chart": "layer-stats-chart", "stat": "grad_norm"}
        words = (f"at step {capture['step']}, {names[0]}'s weight gradient is {ratio:.2g} of {names[1]}'s "
                 f"({abs(math.log10(ratio)):.1f} orders of magnitude across {len(hidden)} layers")
        if ratio < T.VANISHING_RATIO.value:
            return [finding("vanishing_gradients", PROBLEM, "Vanishing gradients: the first layers barely learn",
                            f"{words}; under {T.VANISHING_RATIO.value:g} is vanishing). {why(T.VANISHING_RATIO)}",
                            names, capture["step"], evidence, "vanishing-sigmoid")]
        if ratio > T.EXPLODING_RATIO.value:
            return [finding("exploding_gradients", PROBLEM, "Exploding gradients: the first layers take huge steps",
                            f"{words}; over {T.EXPLODING_RATIO.value:g} is exploding). {why(T.EXPLODING_RATIO)}",
                            names, capture["step"], evidence, "variance-grows")]
    return []


def _first_crossing(r: Record, stat: str, names: set[str], bound: float) -> int:
    """The first captured step at which any of the named layers' statistic reached ``bound`` (one pass over
    the captures, not one per layer: a 30-layer net's dead layers read them 30 times at every evaluation)."""
    for capture in r.captures:
        for layer in capture["layers"]:
            value = layer["stats"].get(stat)
            if value is not None and value >= bound and layer["name"] in names:
                return capture["step"]
    return r.captures[-1]["step"]


def _layers_over(r: Record, stat: str, bound: float) -> list[tuple[str, float]]:
    if not r.captures:
        return []
    return [(layer["name"], layer["stats"][stat]) for layer in _hidden(r.captures[-1])
            if layer["stats"].get(stat) is not None and layer["stats"][stat] >= bound]


def dead_units(r: Record) -> list[dict[str, Any]]:
    over = _layers_over(r, "dead_frac", T.DEAD_FRACTION.value)
    if not over:
        return []
    step = _first_crossing(r, "dead_frac", {name for name, _ in over}, T.DEAD_FRACTION.value)
    worst = max(over, key=lambda x: x[1])
    listed = ", ".join(f"{name}: {_pct(v)} dead" for name, v in over[:6])
    return [finding("dead_units", PROBLEM, f"Dead units: {len(over)} layer{'s' * (len(over) > 1)} mostly dead",
                    f"{listed} at the last capture (from step {step} on; half or more is dead). "
                    f"{why(T.DEAD_FRACTION)}", [n for n, _ in over], step,
                    {"chart": "layer-stats-chart", "stat": "dead_frac", "layer": worst[0]}, "dying-relu")]


def saturation(r: Record) -> list[dict[str, Any]]:
    over = _layers_over(r, "saturated_frac", T.SATURATED_FRACTION.value)
    if not over:
        return []
    step = _first_crossing(r, "saturated_frac", {name for name, _ in over}, T.SATURATED_FRACTION.value)
    listed = ", ".join(f"{name}: {_pct(v)}" for name, v in over[:6])
    return [finding("saturation", PROBLEM, "Saturation: units stuck in the flat tails of the activation",
                    f"{listed} of values in a flat tail at the last capture (half or more saturates). "
                    f"{why(T.SATURATED_FRACTION)}", [n for n, _ in over], step,
                    {"chart": "layer-stats-chart", "stat": "saturated_frac", "layer": max(over, key=lambda x: x[1])[0]},
                    "saturation")]


def symmetry(r: Record) -> list[dict[str, Any]]:
    over = _layers_over(r, "duplicate_frac", T.DUPLICATE_FRACTION.value)
    if not over:
        return []
    step = _first_crossing(r, "duplicate_frac", {name for name, _ in over}, T.DUPLICATE_FRACTION.value)
    return [finding("symmetry", PROBLEM, "Symmetry: the units of a layer are copies of each other",
                    f"{', '.join(f'{n}: {_pct(v)} duplicates' for n, v in over[:6])} at the last capture (over "
                    f"{_pct(T.DUPLICATE_FRACTION.value)} is symmetric). {why(T.DUPLICATE_FRACTION)}",
                    [n for n, _ in over], step, {"chart": "depth-strip", "stat": "duplicate_frac"}, "zero-init")]


def signal(r: Record) -> list[dict[str, Any]]:
    """The activations' spread from the first to the last hidden layer at step 0, beside the theory line."""
    start = next((c for c in r.captures if c["step"] == 0), None)
    if start is None:
        return []
    hidden = _hidden(start)
    first, last = (hidden[0]["stats"]["act_std"], hidden[-1]["stats"]["act_std"]) if hidden else (None, None)
    if len(hidden) < T.MIN_DEPTH.value or not first or not last:
        return []
    decades = math.log10(last / first)
    if abs(decades) < T.SIGNAL_DECADES.value:
        return []
    per_layer = 10 ** (decades / (len(hidden) - 1))
    theory = start.get("theory_preact_std")
    predicted = (f"; the theory line predicts {theory[-1]:.2g} for {hidden[-1]['name']}'s pre-activations"
                 if theory and theory[-1] else "")
    id_, title, lesson = (("signal_shrinks", "The signal shrinks with depth", "small-init-depth") if decades < 0
                          else ("signal_grows", "The signal grows with depth", "variance-grows"))
    return [finding(id_, WARNING, title,
                    f"at step 0 the activation std goes from {first:.2g} ({hidden[0]['name']}) to {last:.2g} "
                    f"({hidden[-1]['name']}): {abs(decades):.1f} orders of magnitude, a factor of {per_layer:.2f} "
                    f"per layer{predicted} (over {T.SIGNAL_DECADES.value:g} orders is a problem). "
                    f"{why(T.SIGNAL_DECADES)}", [hidden[0]["name"], hidden[-1]["name"]], 0,
                    {"chart": "signal-chart"}, lesson)]


def diverged(r: Record) -> list[dict[str, Any]]:
    if r.status != "diverged":
        return []
    where = f"; the first layer with non-finite values was {r.nonfinite_layer}" if r.nonfinite_layer else ""
    return [finding("diverged", PROBLEM, "Diverged: the loss became NaN or infinite",
                    f"at step {r.diverged_step}{where}. The steps grew until numbers overflowed: a smaller learning "
                    "rate, batchnorm or an init that keeps the variance steady (He for ReLU) prevents it.",
                    [r.nonfinite_layer] if r.nonfinite_layer else [], r.diverged_step, {"chart": "loss-chart"},
                    "variance-grows")]


def _metric(e: dict[str, Any], key: str) -> float | None:
    v = e.get(key)
    return v if isinstance(v, int | float) and math.isfinite(v) else None


def overfitting(r: Record) -> list[dict[str, Any]]:
    gaps = [(e["step"], e["train_acc"] - e["val_acc"]) for e in r.evals
            if _metric(e, "train_acc") is not None and _metric(e, "val_acc") is not None]
    if len(gaps) < 4:
        return []
    (step, end), (_, first) = gaps[-1], gaps[0]
    if end < T.OVERFIT_GAP.value or end - first < T.OVERFIT_WIDENING.value:
        return []
    last = r.evals[-1]
    return [finding("overfitting", WARNING, "Overfitting: training accuracy runs away from validation",
                    f"training accuracy {last['train_acc']:.2f} against validation {last['val_acc']:.2f} at the end "
                    f"(a gap of {end:.2f}, up from {first:.2f} after the first epoch; over {T.OVERFIT_GAP.value:g} and widening is "
                    f"overfitting). {why(T.OVERFIT_GAP)} Dropout, more data or augmentation narrow it.",
                    [], step, {"chart": "compare-chart"}, "dropout")]


def bn_eval_gap(r: Record) -> list[dict[str, Any]]:
    last = r.evals[-1] if r.evals else {}
    batch, eval_ = _metric(last, "val_acc_batch_stats"), _metric(last, "val_acc")
    if batch is None or eval_ is None or batch - eval_ < T.BN_EVAL_GAP.value:
        return []
    return [finding("bn_eval_gap", PROBLEM, "Batchnorm at test time: the moving averages lag",
                    f"validation accuracy {eval_:.2f} in eval mode against {batch:.2f} with each batch's own "
                    f"statistics (a gap of {batch - eval_:.2f}; over {T.BN_EVAL_GAP.value:g} is a problem). "
                    f"{why(T.BN_EVAL_GAP)}", [], last.get("step"), {"chart": "compare-chart"}, "batchnorm-test-time")]


def stalled(r: Record) -> list[dict[str, Any]]:
    last = r.evals[-1] if r.evals else {}
    loss, acc = _metric(last, "train_loss"), _metric(last, "train_acc")
    chance = math.log(max(2, r.classes))
    if loss is None or acc is None or loss < T.STALLED_LOSS.value * chance or acc > 1 / r.classes + T.STALLED_ACC.value:
        return []
    return [finding("stalled", PROBLEM, "Stalled: the net learnt next to nothing",
                    f"the training loss ends at {loss:.3f}, against {chance:.3f} for guessing among {r.classes} classes, "
                    f"and training accuracy at {acc:.2f} (chance {1 / r.classes:.2f}). {why(T.STALLED_LOSS)}",
                    [], last.get("step"), {"chart": "loss-chart"}, "dying-relu")]


def lr_too_high(r: Record) -> list[dict[str, Any]]:
    losses = [(e["step"], e["train_loss"]) for e in r.evals if _metric(e, "train_loss") is not None]
    if r.status == "diverged" or len(losses) < 8:
        return []
    start = len(losses) // 4
    best_i = min(range(len(losses)), key=lambda i: losses[i][1])
    later = [(s, v) for s, v in losses[max(start, best_i):] if v > T.LR_TOO_HIGH.value * losses[best_i][1] + 1e-3]
    if best_i < start or not later:
        return []
    step, worst = max(later, key=lambda x: x[1])
    return [finding("lr_too_high", WARNING, "The learning rate is too high: the loss jumps back up",
                    f"the training loss reached {losses[best_i][1]:.3g} at step {losses[best_i][0]}, then rose to "
                    f"{worst:.3g} at step {step} (over {T.LR_TOO_HIGH.value:g} times its best). {why(T.LR_TOO_HIGH)}",
                    [], step, {"chart": "loss-chart"}, "xavier-vs-he")]


# In the order a reader should meet them: causes (what is broken in the layers) before their effects on the loss.
RULES = (diverged, dead_units, symmetry, saturation, gradient_flow, signal, bn_eval_gap, stalled, overfitting, lr_too_high)


def healthy(r: Record) -> dict[str, Any]:
    """The one info finding of a run with nothing wrong: the numbers that say so."""
    parts = []
    if r.captures:
        hidden = _hidden(r.captures[-1])
        if len(hidden) >= 2 and hidden[0]["stats"]["grad_norm"] and hidden[-1]["stats"]["grad_norm"]:
            parts.append(f"gradients reach the first layer ({hidden[0]['stats']['grad_norm'] / hidden[-1]['stats']['grad_norm']:.2g} "
                         "of the last layer's)")
    losses = [e["train_loss"] for e in r.evals if _metric(e, "train_loss") is not None]
    if len(losses) >= 2:
        parts.append(f"the training loss fell from {losses[0]:.3g} to {losses[-1]:.3g}")
    detail = "; ".join(parts) or "nothing out of the ordinary so far"
    return finding("healthy", INFO, "Healthy: nothing wrong seen", f"No layer is dead, saturated or symmetric, and {detail}.",
                   [], r.captures[-1]["step"] if r.captures else None, {"chart": "loss-chart"}, None)
