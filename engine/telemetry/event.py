"""The ``layers`` event (docs/events.md): one entry per layer, input to output, with its stats and
four histograms; and ``probe_summary``, the few numbers of one such event that lessons compare."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepscope.engine.events import EventType

STAT_NAMES = ("preact_mean", "preact_std", "act_mean", "act_std", "grad_norm", "act_grad_std",
              "weight_std", "update_ratio", "dead_frac", "saturated_frac", "duplicate_frac", "slope_mean",
              "bn_gamma_mean", "bn_beta_mean")
HIST_NAMES = ("preact", "act", "grad", "weight")


def histogram(lo: float, hi: float, counts: list[int], step: int) -> dict[str, Any]:
    return {"lo": lo, "hi": hi, "counts": counts, "step": step}


def layers_event(step: int, names: list[str], kinds: list[str], table: np.ndarray,
                 hists: list[dict[str, Any]], weight_step: int, units_step: int) -> dict[str, Any]:
    """Plain numbers only; NaN and inf become None so the JSON stays valid. ``table``: (layers, STAT_NAMES).
    ``weight_step`` and ``units_step``: the captures the weight numbers and the dead-unit counts were
    taken at."""
    # (None put in by one array operation and each row's dict made by zip: a comprehension testing every
    # number was a tenth of a small MLP's capture)
    rows = table.astype(object)
    rows[~np.isfinite(table)] = None
    layers = [{"name": name, "kind": kind, "stats": dict(zip(STAT_NAMES, row, strict=True)), "hist": hist,
               "weight_step": weight_step, "units_step": units_step}
              for name, kind, row, hist in zip(names, kinds, rows.tolist(), hists, strict=True)]
    return {"type": EventType.LAYERS.value, "step": step, "layers": layers}


def probe_summary(layers: list[dict[str, Any]]) -> dict[str, float | None]:
    """A few numbers about one layers event that lessons compare across runs."""
    hidden = [layer["stats"] for layer in layers if layer["kind"] != "output"]

    def mean(key: str) -> float | None:
        vals = [s[key] for s in hidden if s[key] is not None]
        return sum(vals) / len(vals) if vals else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    first, last = hidden[0], hidden[-1]
    return {
        "dead_frac": mean("dead_frac"), "saturated_frac": mean("saturated_frac"),
        "duplicate_frac": mean("duplicate_frac"), "slope_mean": mean("slope_mean"),
        "act_mean_first": first["act_mean"], "act_mean_last": last["act_mean"],
        "act_std_first": first["act_std"], "act_std_last": last["act_std"],
        "grad_norm_first": first["grad_norm"], "grad_norm_last": last["grad_norm"],
        # < 1: the signal shrinks from the first hidden layer to the last (forward) ...
        "act_std_ratio": ratio(last["act_std"], first["act_std"]),
        # ... and the gradient reaching the first layer is this fraction of the last one's (backward)
        "grad_ratio": ratio(first["grad_norm"], last["grad_norm"]),
    }
