// Curves over training time, and signal propagation at step 0.
import { draw, endLabels, escape, label, logAxis, plotHeight, stepMarker, styleOf, timeAxis } from "./plot.js";

// Validation loss per run (training loss thin beside it; the noisy batch loss on request).
export function lossChart(id, runs, showBatch = false, step = null) {
  const t = timeAxis(runs);
  const traces = [];
  runs.forEach((run, i) => {
    const s = styleOf(run, i);
    const xs = (events) => events.map((e) => t.x(run, e));
    if (showBatch) {
      traces.push({ x: xs(run.steps), y: run.steps.map((e) => e.loss), name: `${label(run)}: batch loss`,
        line: { color: s.color, width: 1 }, opacity: 0.35, type: "scattergl", mode: "lines", hoverinfo: "skip" });
    }
    traces.push({ x: xs(run.evals), y: run.evals.map((e) => e.train_loss), name: `${label(run)}: train`,
      line: { color: s.color, width: 1, dash: s.dash }, opacity: 0.6, mode: "lines", type: "scatter" });
    traces.push({ x: xs(run.evals), y: run.evals.map((e) => e.val_loss), name: `${label(run)}: validation`,
      line: { color: s.color, width: 2.5, dash: s.dash }, marker: { symbol: s.symbol, size: 6 },
      mode: "lines+markers", type: "scatter", endLabel: label(run) });
  });
  const top = Math.max(0.1, ...traces.flatMap((tr) => tr.y).filter(Number.isFinite)) * 1.05;
  const range = [-0.03 * top, top];
  const margin = { l: 55, r: 100, t: 10, b: 40 };
  draw(id, traces, { showlegend: false, margin, xaxis: t.axis, shapes: stepMarker(step, t, runs[0]),
    annotations: endLabels(traces.filter((tr) => tr.endLabel), { range, height: plotHeight(id, margin) }),
    yaxis: { title: { text: "loss (thick: validation; thin: training)" }, range } });
}

// Validation accuracy per run (thick), training accuracy (thin, the same colour): a lesson about the gap
// between them shows the gap. With batchnorm, the accuracy with each batch's own statistics instead of
// the moving averages (diamonds).
export function accuracyChart(id, runs, step = null) {
  const t = timeAxis(runs);
  const traces = [];
  runs.forEach((run, i) => {
    const s = styleOf(run, i);
    const xs = (events) => events.map((e) => t.x(run, e));
    traces.push({ x: xs(run.evals), y: run.evals.map((e) => e.train_acc), name: `${label(run)}: training`,
      line: { color: s.color, width: 1.2, dash: s.dash }, opacity: 0.7, mode: "lines", type: "scatter" });
    traces.push({ x: xs(run.evals), y: run.evals.map((e) => e.val_acc), name: `${label(run)}: validation`,
      endLabel: label(run), line: { color: s.color, width: 2.5, dash: s.dash }, marker: { symbol: s.symbol, size: 6 },
      mode: "lines+markers", type: "scatter" });
    const withBatch = run.evals.filter((e) => e.val_acc_batch_stats !== undefined && e.val_acc_batch_stats !== null);
    if (withBatch.length) {
      traces.push({ x: xs(withBatch), y: withBatch.map((e) => e.val_acc_batch_stats),
        name: `${label(run)}: validation, batch statistics`, line: { color: s.color, width: 2 },
        // each run's diamonds a size larger: where two runs measure the same, both show, one around the other
        marker: { symbol: "diamond-open", size: 9 + 5 * i, line: { width: 2 } }, mode: "lines+markers", type: "scatter" });
    }
  });
  const range = [-0.03, 1.03];
  const margin = { l: 55, r: 100, t: 10, b: 40 };
  draw(id, traces, { showlegend: false, margin, xaxis: t.axis, shapes: stepMarker(step, t, runs[0]),
    annotations: endLabels(traces.filter((tr) => tr.endLabel), { range, height: plotHeight(id, margin) }),
    yaxis: { title: { text: "accuracy (thick: validation; thin: training)" }, range } });
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
    const { color } = styleOf(run, r);
    traces.push({ x: names, y: hidden.map((l) => l.stats.preact_std), name: label(run),
      mode: "lines+markers", type: "scatter", line: { color } });
    if (ev.theory_preact_std) {
      traces.push({ x: names, y: ev.theory_preact_std, name: `${label(run)}: theory`, showlegend: false, mode: "lines", type: "scatter",
        line: { color, dash: "dash" }, theory: true });
    }
  });
  // The range follows the measurements (a dead layer's 0 marked by a cross), plus two decades: a theory
  // line that falls to 1e-38 runs off the bottom instead of flattening every measured line.
  const measured = traces.filter((t) => !t.theory);
  const axis = logAxis(measured, "y");
  traces.push(...axis.extra);
  axis.range[0] = Math.min(axis.range[0], axis.range[1] - 2);
  if (axis.extra.length) {  // the crosses say what they are, in the legend
    axis.extra.forEach((t, i) => { t.showlegend = i === 0; t.name = "× exactly 0: the layer's signal died"; });
  }
  draw(id, traces, { yaxis: { type: "log", range: axis.range, exponentformat: "power", title: { text: "std at step 0" },
    automargin: true }, xaxis: { automargin: true, tickangle: -45 }, margin: { l: 60, r: 10, t: 10, b: 60 },
    // Above the plot: below it, the legend ran into the slanted layer names.
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" } });
}

