"""``Summariser``: a ``Capture`` becomes a ``layers`` event (docs/events.md).

Two ways to the same numbers. On the CPU, compiled kernels (``compiled.py``) read every tensor of the
capture in a handful of calls. On a GPU, where a host sync stalls the pipeline, torch computes
everything on the device and the numbers come to the host together: the capture's one sync
(``kernels.py``). Both count histograms exactly as ``np.histogram`` does, and a test holds the two
paths to the same event.

Weights move by about 1e-3 a step and the probe set costs a forward pass, so their numbers are measured
on some captures only and repeated in between, each marked with the step it was taken at
(``weight_step``, ``units_step``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepscope.engine.telemetry import compiled, kernels
from deepscope.engine.telemetry.event import STAT_NAMES, histogram, layers_event
from deepscope.engine.telemetry.layers import WatchedLayer, units_shape
from deepscope.engine.telemetry.probe import Capture

COLUMN = {name: i for i, name in enumerate(STAT_NAMES)}
WEIGHT_STATS = [COLUMN["weight_std"], COLUMN["duplicate_frac"]]
UNIT_STATS = [COLUMN["dead_frac"]]
# where each statistic comes from on the CPU: (a tensor's kind, a column of compiled.SUMMARY_FIELDS)
_FROM_SUMMARY = (("preact_mean", "preact", 2), ("preact_std", "preact", 3), ("act_mean", "act", 2),
                 ("act_std", "act", 3), ("grad_norm", "grad", 4), ("act_grad_std", "act_grad", 3),
                 ("weight_std", "weight", 3))
_KINDS = ("preact", "act", "grad", "act_grad", "weight")  # the tensors read per layer, in table order


@dataclass
class _Carried:
    """Numbers measured on an earlier capture and repeated: the step they were taken at."""

    step: int
    columns: np.ndarray            # (layers, columns) of the stat table
    hists: list[dict | None]


@dataclass
class _Layout:
    """The CPU path's table of one shape of capture: ``order`` the (kind, layer) of each row, ``where[kind][i]``
    the row of layer i's tensor of that kind (-1: none; the classifier's act is its pre)."""

    order: list[tuple[int, int]]
    histogrammed: list[int]
    where: dict[str, np.ndarray]
    hist_rows: list[list[tuple[str, int]]]

    @classmethod
    def of(cls, cap: Capture, n: int) -> _Layout:
        order, histogrammed = [], []
        where = {kind: [-1] * n for kind in _KINDS}
        for i in range(n):
            for k, (kind, t) in enumerate(zip(_KINDS, (cap.pre[i], cap.act[i], cap.grads[i], cap.act_grad[i],
                                                       cap.w_before[i] if cap.w_before is not None else None),
                                              strict=True)):
                if t is None:
                    continue
                if kind == "act" and t is cap.pre[i]:
                    where[kind][i] = where["preact"][i]
                    continue
                where[kind][i] = len(order)
                order.append((k, i))
                histogrammed.append(kind != "act_grad")
        hist_rows = [[(kind, where[kind][i]) for kind in ("preact", "act", "grad", "weight")] for i in range(n)]
        return cls(order, histogrammed, {kind: np.array(rows) for kind, rows in where.items()}, hist_rows)


class Summariser:
    """Turns the captures of one model's ``layers`` into layers events, in capture order. ``device_path``:
    None picks by device (the GPU's way on a GPU); tests set it to run both ways on the CPU."""

    def __init__(self, layers: list[WatchedLayer], bins: int) -> None:
        self.layers, self.bins = layers, bins
        self.names = [layer.name for layer in layers]
        self.kinds = [layer.kind for layer in layers]
        self.device_path: bool | None = None
        self._weights: _Carried | None = None
        self._units: _Carried | None = None
        self._layouts: dict[tuple, _Layout] = {}

    def summarise(self, cap: Capture) -> dict:
        on_device = cap.pre[0].device.type != "cpu" if self.device_path is None else self.device_path
        with torch.no_grad():
            table, hists = kernels.device_summary(self.layers, cap, self.bins) if on_device else self._on_host(cap)
        weights = self._carry("_weights", cap.step, cap.w_before is not None, table, hists, WEIGHT_STATS, "weight")
        units = self._carry("_units", cap.step, cap.units_fresh, table, hists, UNIT_STATS, None)
        return layers_event(cap.step, self.names, self.kinds, table, hists, weights.step, units.step)

    def _carry(self, attr: str, step: int, fresh: bool, table: np.ndarray, hists: list[dict], columns: list[int],
               hist: str | None) -> _Carried:
        """Keep this capture's ``columns`` (and histogram ``hist``) when ``fresh``, else fill them in from
        the last capture that measured them."""
        if fresh:
            setattr(self, attr, _Carried(step, table[:, columns].copy(), [h[hist] for h in hists] if hist else []))
        carried: _Carried = getattr(self, attr)
        table[:, columns] = carried.columns
        if hist:
            for h, kept in zip(hists, carried.hists, strict=True):
                h[hist] = kept
        return carried

    # -- the CPU path --------------------------------------------------------------------------
    def _on_host(self, cap: Capture) -> tuple[np.ndarray, list[dict]]:
        """Every tensor through four compiled calls: histograms and moments, slopes, dead units, and
        duplicate units on a weight capture."""
        n, step, bins = len(self.layers), cap.step, self.bins
        # 1) one table of every tensor read (its layout is the same from capture to capture)
        layout = self._layout(cap)
        by_kind = (cap.pre, cap.act, cap.grads, cap.act_grad, cap.w_before)
        tensors = [by_kind[k][i] for k, i in layout.order]
        table_in = np.empty((len(tensors), 3), np.int64)
        table_in[:, 0] = [t.data_ptr() for t in tensors]
        table_in[:, 1] = [t.numel() for t in tensors]
        table_in[:, 2] = layout.histogrammed
        counts = np.zeros((len(tensors) + 1, bins), np.int64)
        out = np.full((len(tensors) + 1, 5), np.nan)  # the last row stays NaN: what a missing tensor reads
        compiled.summarise(table_in, bins, counts, out)
        where = layout.where
        # 2) the stat table, column by column
        table = np.full((n, len(STAT_NAMES)), np.nan)
        for name, kind, field in _FROM_SUMMARY:
            table[:, COLUMN[name]] = out[where[kind], field]
        if cap.norm_params is not None:
            table[:, [COLUMN["bn_gamma_mean"], COLUMN["bn_beta_mean"]]] = cap.norm_params.double().numpy()
        update = cap.update.double().numpy()
        table[:, COLUMN["update_ratio"]] = update[:, 0] / np.maximum(update[:, 1], 1e-30)
        self._units_on_host(cap, table)
        if cap.w_before is not None:
            w = cap.w_before
            dup = np.empty(n)
            compiled.duplicate_fractions(compiled.tensor_table(w, [t.shape[0] for t in w]),
                                         kernels.hash_vector(max(t.numel() // max(1, t.shape[0]) for t in w)), dup)
            table[:, COLUMN["duplicate_frac"]] = dup
        # 3) histograms
        ranges, counted = out[:, :2].tolist(), counts.tolist()
        hists = [{kind: histogram(*ranges[row], counted[row], step) if row >= 0 else None for kind, row in rows}
                 for rows in layout.hist_rows]
        return table, hists

    def _layout(self, cap: Capture) -> _Layout:
        """Which tensors of a capture are read, in table order, and where each kind's row is; kept per
        shape of capture (a weight capture or not, which layers have an activation gradient)."""
        key = (cap.w_before is not None, tuple(g is None for g in cap.act_grad),
               tuple(a is p for a, p in zip(cap.act, cap.pre, strict=True)))
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = _Layout.of(cap, len(self.layers))
        return layout

    def _units_on_host(self, cap: Capture, table: np.ndarray) -> None:
        """Saturated share and mean slope from the captured batch; dead units from the probe set (or the
        batch, without one) when this capture counts them."""
        layers = self.layers
        sloped = [i for i, layer in enumerate(layers) if layer.has_units and layer.activation is not None
                  and cap.pre[i].numel() == cap.act[i].numel()]
        if sloped:
            acts = [layers[i].activation for i in sloped]
            out = np.empty((len(sloped), 2))
            compiled.slopes(compiled.tensor_table([cap.pre[i] for i in sloped], [cap.act[i].data_ptr() for i in sloped],
                                                  [a.code for a in acts]),
                            np.array([(a.param, a.flat_below) for a in acts]), out)
            table[sloped, COLUMN["slope_mean"]] = out[:, 0]
            table[sloped, COLUMN["saturated_frac"]] = np.where([a.saturating for a in acts], out[:, 1], 0.0)
        if not cap.units_fresh:
            return
        counted = [(i, cap.units[i] if cap.units is not None and cap.units[i] is not None else cap.act[i])
                   for i, layer in enumerate(layers) if layer.has_units]
        if counted:
            dead = np.empty(len(counted))
            shapes = [units_shape(t, layers[i].unit_axis) for i, t in counted]
            compiled.dead_fractions(compiled.tensor_table([t for _, t in counted], *zip(*shapes, strict=True)), dead)
            table[[i for i, _ in counted], COLUMN["dead_frac"]] = dead
