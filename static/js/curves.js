// Curves over training time, and signal propagation at step 0.
import { PALETTE, draw, endLabels, escape, label, logAxis, runStyle, stepMarker } from "./plot.js";

// Validation loss per run (training loss thin beside it; the noisy batch loss on request).
export function lossChart(id, runs, showBatch = false, step = null) {
  const traces = [];
  runs.forEach((run, i) => {
    const s = runStyle(i);
    if (showBatch) {
      traces.push({ x: run.steps.map((e) => e.step), y: run.steps.map((e) => e.loss), name: `${label(run)}: batch loss`,
        line: { color: s.color, width: 1 }, opacity: 0.35, type: "scattergl", mode: "lines", hoverinfo: "skip" });
    }
    traces.push({ x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.train_loss), name: `${label(run)}: train`,
      line: { color: s.color, width: 1, dash: s.dash }, opacity: 0.6, mode: "lines", type: "scatter" });
    traces.push({ x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.val_loss), name: `${label(run)}: validation`,
      line: { color: s.color, width: 2.5, dash: s.dash }, marker: { symbol: s.symbol, size: 6 },
      mode: "lines+markers", type: "scatter", endLabel: label(run) });
  });
  draw(id, traces, { showlegend: false, annotations: endLabels(traces.filter((t) => t.endLabel)),
    shapes: stepMarker(step), margin: { l: 55, r: 90, t: 10, b: 40 }, xaxis: { title: { text: "step" } },
    yaxis: { title: { text: "loss (thick: validation)" }, rangemode: "tozero" } });
}

export function accuracyChart(id, runs, step = null) {
  const traces = runs.map((run, i) => {
    const s = runStyle(i);
    return { x: run.evals.map((e) => e.step), y: run.evals.map((e) => e.val_acc), name: label(run), endLabel: label(run),
      line: { color: s.color, width: 2.5, dash: s.dash }, marker: { symbol: s.symbol, size: 6 }, mode: "lines+markers",
      type: "scatter" };
  });
  // With batchnorm: the same net with each batch's own statistics instead of the moving averages (thin)
  runs.forEach((run, i) => {
    const withBatch = run.evals.filter((e) => e.val_acc_batch_stats !== undefined && e.val_acc_batch_stats !== null);
    if (!withBatch.length) return;
    const s = runStyle(i);
    traces.push({ x: withBatch.map((e) => e.step), y: withBatch.map((e) => e.val_acc_batch_stats),
      name: `${label(run)}: batch statistics`, line: { color: s.color, width: 1, dash: "dot" }, mode: "lines",
      type: "scatter" });
  });
  draw(id, traces, { showlegend: false, annotations: endLabels(traces.filter((t) => t.endLabel)),
    shapes: stepMarker(step), margin: { l: 55, r: 90, t: 10, b: 40 },
    xaxis: { title: { text: "step" } }, yaxis: { title: { text: "validation accuracy" }, range: [0, 1.02] } });
}

// Step 0: the measured pre-activation std per hidden layer, and the engine's theory line: each layer's
// std predicted from the measured layer before by Var(z') = n Var(w) E[f(z)^2] (the activation's own
// second moment, with the bias and dropout; MLPs without batchnorm).
export function signalChart(id, runs) {
  const traces = [];
  runs.forEach((run, r) => {
    const ev = run.layers.find((e) => e.step === 0);
    if (!ev) return;
    const hidden = ev.layers.filter((l) => l.kind !== "output");
    const names = hidden.map((l) => escape(l.name));
    const color = PALETTE[r % PALETTE.length];
    traces.push({ x: names, y: hidden.map((l) => l.stats.preact_std), name: `${label(run)}: measured pre-activation std`,
      mode: "lines+markers", type: "scatter", line: { color } });
    if (ev.theory_preact_std) {
      traces.push({ x: names, y: ev.theory_preact_std, name: `${label(run)}: theory`, mode: "lines", type: "scatter",
        line: { color, dash: "dash" }, theory: true });
    }
  });
  // The range follows the measurements (a dead layer's 0 marked by a cross), plus two decades: a theory
  // line that falls to 1e-38 runs off the bottom instead of flattening every measured line.
  const measured = traces.filter((t) => !t.theory);
  const axis = logAxis(measured, "y");
  traces.push(...axis.extra);
  axis.range[0] = Math.min(axis.range[0], axis.range[1] - 2);
  draw(id, traces, { yaxis: { type: "log", range: axis.range, exponentformat: "power", title: { text: "std at step 0" } },
    xaxis: { automargin: true, tickangle: -45 }, margin: { l: 55, r: 10, t: 10, b: 60 } });
}

