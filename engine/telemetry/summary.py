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
from deepscope.engine.telemetry.layers import WatchedLayer
from deepscope.engine.telemetry.probe import Capture
from deepscope.engine.telemetry.units import dead_fractions

COLUMN = {name: i for i, name in enumerate(STAT_NAMES)}
WEIGHT_STATS = np.array([COLUMN["weight_std"], COLUMN["duplicate_frac"]], np.int64)
UNIT_STATS = np.array([COLUMN["dead_frac"]], np.int64)
_TABLE_COLUMNS = np.array([COLUMN["slope_mean"], COLUMN["saturated_frac"], COLUMN["update_ratio"]], np.int64)
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
    """The CPU path's plan for one shape of capture, worked out once: ``order`` the (kind, layer) of each
    row of the kernels' table, ``where[kind][i]`` the row of layer i's tensor of that kind (-1: none; the
    classifier's act is its pre), and where each row's numbers go in the stat table. A capture then
    costs a handful of array operations, not a Python loop over its layers (on a 6-layer MLP that loop
    was as long as the kernels)."""

    order: list[tuple[int, int]]
    where: dict[str, np.ndarray]
    hist_rows: list[list[tuple[str, int]]]
    stat_to: np.ndarray        # flat indices into the (layers, STAT_NAMES) table ...
    stat_from: np.ndarray      # ... and into the kernels' (rows + 1, SUMMARY_FIELDS) output
    sloped_layers: np.ndarray  # layers whose mean slope and saturation are read, and for each:
    sloped: np.ndarray         # (z row, a row, activation code)
    slope_params: np.ndarray   # (its parameter, its flat-tail threshold)
    saturating: np.ndarray     # whether it has a flat tail to count
    # the kernels' table and outputs, kept from one capture to the next (a capture's summary is done before
    # the next starts: one in flight, ``Telemetry``)
    table_in: np.ndarray       # (rows, 3): address, values, histogram? (the last column fixed)
    counts: np.ndarray         # (rows + 1, bins)
    out: np.ndarray            # (rows + 1, SUMMARY_FIELDS): the last row NaN, what a missing tensor reads
    slope_out: np.ndarray      # (sloped layers, 2)

    @classmethod
    def of(cls, cap: Capture, layers: list[WatchedLayer], bins: int) -> _Layout:
        n = len(layers)
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
        missing = len(order)  # the output's last row: NaN, what a missing tensor reads
        fields = len(compiled.SUMMARY_FIELDS)
        stat_to, stat_from = [], []
        for name, kind, field in _FROM_SUMMARY:
            for i in range(n):
                row = where[kind][i]
                stat_to.append(i * len(STAT_NAMES) + COLUMN[name])
                stat_from.append((row if row >= 0 else missing) * fields + field)
        sloped_layers = [i for i, layer in enumerate(layers) if layer.has_units and layer.activation is not None
                         and cap.pre[i].numel() == cap.act[i].numel()]
        acts = [layers[i].activation for i in sloped_layers]
        rows = len(order)
        table_in = np.zeros((rows, 3), np.int64)
        table_in[:, 2] = histogrammed
        return cls(order, {kind: np.array(rows) for kind, rows in where.items()},
                   hist_rows, np.array(stat_to, np.int64), np.array(stat_from, np.int64),
                   np.array(sloped_layers, np.int64),
                   np.array([(where["preact"][i], where["act"][i], a.code) for i, a in zip(sloped_layers, acts, strict=True)],
                            np.int64).reshape(-1, 3),
                   np.array([(a.param, a.flat_below) for a in acts], np.float64).reshape(-1, 2),
                   np.array([a.saturating for a in acts], bool), table_in, np.zeros((rows + 1, bins), np.int64),
                   np.full((rows + 1, len(compiled.SUMMARY_FIELDS)), np.nan), np.empty((len(sloped_layers), 2)))


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
        if on_device:
            with torch.no_grad():
                table, hists = kernels.device_summary(self.layers, cap, self.bins)
        else:
            table, hists = self._on_host(cap)
        weights = self._carry("_weights", cap.step, cap.w_before is not None, table, hists, WEIGHT_STATS, "weight")
        units = self._carry("_units", cap.step, cap.units_fresh, table, hists, UNIT_STATS, None)
        return layers_event(cap.step, self.names, self.kinds, table, hists, weights.step, units.step)

    def _carry(self, attr: str, step: int, fresh: bool, table: np.ndarray, hists: list[dict], columns: np.ndarray,
               hist: str | None) -> _Carried:
        """Keep this capture's ``columns`` (and histogram ``hist``) when ``fresh``, else fill them in from
        the last capture that measured them (one compiled call: as numpy's fancy indexing, on the cold
        caches a training step leaves, this was a twentieth of a small MLP's capture)."""
        carried: _Carried | None = getattr(self, attr)
        if fresh:
            if carried is None or carried.columns.shape[0] != table.shape[0]:
                carried = _Carried(step, np.empty((table.shape[0], len(columns))), [])
                setattr(self, attr, carried)
            carried.step = step
            if hist:
                carried.hists = [h[hist] for h in hists]
        compiled.keep_columns(table, columns, carried.columns, fresh)
        if hist and not fresh:
            for h, kept in zip(hists, carried.hists, strict=True):
                h[hist] = kept
        return carried

    # -- the CPU path --------------------------------------------------------------------------
    def _on_host(self, cap: Capture) -> tuple[np.ndarray, list[dict]]:
        """Every tensor through three compiled calls (four on a units or weight capture): histograms, moments
        and slopes; the stat table; dead units; duplicate units."""
        n, step = len(self.layers), cap.step
        layout = self._layout(cap)
        by_kind = (cap.pre, cap.act, cap.grads, cap.act_grad, cap.w_before)
        tensors = [by_kind[k][i] for k, i in layout.order]
        table_in, out, counts = layout.table_in, layout.out, layout.counts
        table_in[:, 0] = [t.data_ptr() for t in tensors]
        table_in[:, 1] = [t.numel() for t in tensors]
        compiled.summarise_capture(table_in, self.bins, counts, out, layout.sloped, layout.slope_params, layout.slope_out)
        table = np.empty((n, len(STAT_NAMES)))
        compiled.stat_table(out, layout.stat_to, layout.stat_from, layout.slope_out, layout.sloped_layers,
                            layout.saturating, np.ascontiguousarray(cap.update.double().numpy()), _TABLE_COLUMNS, table)
        if cap.norm_params is not None:
            table[:, [COLUMN["bn_gamma_mean"], COLUMN["bn_beta_mean"]]] = cap.norm_params.double().numpy()
        if cap.units_fresh:
            self._dead_units(cap, table)
        if cap.w_before is not None:
            w = cap.w_before
            dup = np.empty(n)
            compiled.duplicate_fractions(compiled.tensor_table(w, [t.shape[0] for t in w]),
                                         kernels.hash_vector(max(t.numel() // max(1, t.shape[0]) for t in w)), dup)
            table[:, COLUMN["duplicate_frac"]] = dup
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
            layout = self._layouts[key] = _Layout.of(cap, self.layers, self.bins)
        return layout

    def _dead_units(self, cap: Capture, table: np.ndarray) -> None:
        """Dead units, counted on the probe set (as it was passed: ``units.Units``), or the batch without one.
        Saturation and the mean slope come from the captured batch on every capture (``_on_host``)."""
        units = cap.units
        counted = units.dead if units is not None and units.dead is not None else []
        # a layer the probe set's pass did not reach (a branch a model runs only in training) counts on the batch
        done = {i for i, _ in counted}
        acts = [None if i in done else units.acts[i] if units is not None and units.acts[i] is not None else a
                for i, a in enumerate(cap.act)]
        for i, fraction in (*counted, *dead_fractions(acts, self.layers)):
            table[i, COLUMN["dead_frac"]] = fraction
