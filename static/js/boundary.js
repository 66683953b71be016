// The decision boundary of each compared run (2-D sets), at the shown step.
import { CLASSES, draw, label, styleOf } from "./plot.js";

// One small panel per compared run (up to four), side by side on the same axes: a lesson's comparison is
// the point, and one panel could show only one run's boundary.
export function boundaryChart(id, runs, pick) {
  const shown = runs.filter((run) => pick(run)).slice(0, 4);
  if (!shown.length) return draw(id, [], { annotations: [{ text: "2-D datasets only", showarrow: false }] });
  const traces = [], annotations = [], layout = {};
  // A phone has no room for panels side by side: they stack, each as tall as the card, with room between
  // them for each panel's title (the panel above keeps its x ticks).
  const stacked = shown.length > 1 && document.getElementById(id).clientWidth < 520;
  const n = shown.length, gap = stacked ? 0.12 / n : 0.04, width = (1 - gap * (n - 1)) / n;
  const size = stacked ? (1 - gap * (n - 1)) / n : width;
  shown.forEach((run, p) => {
    const ev = pick(run), k = ev.probs.length;
    const ax = p === 0 ? "" : String(p + 1);
    let z, colorscale, zmin, zmax;
    if (k === 2) {
      z = ev.probs[1];
      colorscale = [[0, CLASSES[0]], [0.5, "#ffffff"], [1, CLASSES[1]]];
      zmin = 0; zmax = ev.prob_scale;
    } else {
      z = ev.probs[0].map((row, i) => row.map((_, j) => {
        let best = 0;
        for (let c = 1; c < k; c++) if (ev.probs[c][i][j] > ev.probs[best][i][j]) best = c;
        return best;
      }));
      colorscale = Array.from({ length: k }, (_, c) => [[c / k, CLASSES[c % CLASSES.length]],
        [(c + 1) / k, CLASSES[c % CLASSES.length]]]).flat();
      zmin = -0.5; zmax = k - 0.5;
    }
    // At most about 400 training points a panel: the shape of the data shows, and drawing stays quick.
    const all = run.points || { x: [], y: [], label: [] };
    const every = Math.max(1, Math.ceil(all.x.length / 400));
    const keep = (arr) => arr.filter((_, i) => i % every === 0);
    const pts = { x: keep(all.x), y: keep(all.y), label: keep(all.label) };
    traces.push({ z, x: ev.x, y: ev.y, type: "heatmap", colorscale, zmin, zmax, opacity: 0.45, showscale: false,
      hoverinfo: "skip", xaxis: `x${ax}`, yaxis: `y${ax}` });
    traces.push({ x: pts.x, y: pts.y, mode: "markers", type: "scatter", name: "training points", xaxis: `x${ax}`,
      yaxis: `y${ax}`, marker: { color: pts.label.map((c) => CLASSES[c % CLASSES.length]), size: n > 2 ? 3 : 4,
        line: { width: 0.5, color: "#222" } } });
    const left = stacked ? 0 : p * (width + gap);
    const top = stacked ? 1 - p * (size + gap) : 1;
    layout[`xaxis${ax}`] = { domain: stacked ? [0, 1] : [left, left + width], anchor: `y${ax}`,
      showticklabels: stacked ? p === n - 1 : n < 3, title: { text: p === n - 1 || !stacked ? "x1" : "" } };
    layout[`yaxis${ax}`] = { domain: stacked ? [top - size, top] : [0, 1], anchor: `x${ax}`,
      showticklabels: stacked || p === 0, title: { text: stacked || p === 0 ? "x2" : "" } };
    annotations.push({ text: `${label(run)} · step ${ev.step}`, x: stacked ? 0.5 : left + width / 2, y: top,
      xref: "paper", yref: "paper", yanchor: "bottom", showarrow: false,
      font: { size: 11, color: styleOf(run, runs.indexOf(run)).color } });
  });
  document.getElementById(id).style.height = stacked ? `${280 * n}px` : "";
  draw(id, traces, { ...layout, annotations, showlegend: false, margin: { l: 45, r: 10, t: 26, b: 40 } });
}
