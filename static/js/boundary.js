// The decision boundary of each compared run (2-D sets), at the shown step.
import { CLASSES, draw, label, styleOf } from "./plot.js";

// Each panel's class regions are a small image under its training points (a layout image, not a heatmap
// trace): moving the shown step swaps the images and the titles alone. Redrawing the panels' 300 points
// each took 80-110 ms a move; swapping takes about 5 (benchmarks/page_smoothness.py).
const drawnPanels = new Map();  // chart id -> the panels' key: which runs, how they are laid out

// One small panel per compared run (up to four), side by side on the same axes: a lesson's comparison is
// the point, and one panel could show only one run's boundary.
export function boundaryChart(id, runs, pick) {
  const shown = runs.filter((run) => pick(run)).slice(0, 4);
  if (!shown.length) {
    drawnPanels.delete(id);
    return draw(id, [], { annotations: [{ text: "2-D datasets only", showarrow: false }] });
  }
  // A phone has no room for panels side by side: they stack, each as tall as the card, with room between
  // them for each panel's title (the panel above keeps its x ticks).
  const stacked = shown.length > 1 && document.getElementById(id).clientWidth < 520;
  const n = shown.length, gap = stacked ? 0.12 / n : 0.04, width = (1 - gap * (n - 1)) / n;
  const size = stacked ? (1 - gap * (n - 1)) / n : width;
  const panels = shown.map((run, p) => ({ run, ev: pick(run), ax: p === 0 ? "" : String(p + 1),
    left: stacked ? 0 : p * (width + gap), top: stacked ? 1 - p * (size + gap) : 1 }));
  const images = panels.map(({ ev, ax }) => regionImage(ev, ax));
  // Each panel's title is a shape's label, not an annotation: changing an annotation's text makes Plotly
  // compute the whole chart again (about 100 ms), a shape's label is only drawn again.
  const titles = panels.map(({ run, ev, left, top }) => ({ type: "rect", xref: "paper", yref: "paper",
    x0: stacked ? 0 : left, x1: stacked ? 1 : left + width, y0: top, y1: top + (stacked ? gap * 0.8 : 0.08),
    line: { width: 0 }, fillcolor: "rgba(0,0,0,0)", layer: "above",
    label: { text: `${label(run)} · step ${ev.step}`, textposition: "middle center",
      font: { size: 11, color: styleOf(run, runs.indexOf(run)).color } } }));
  const key = `${panels.map(({ run }) => `${run.id}:${run.colour}:${(run.points || { x: [] }).x.length}`).join(",")}|${stacked}`;
  if (drawnPanels.get(id) === key) {
    const update = {};
    panels.forEach((_, p) => {
      update[`images[${p}].source`] = images[p].source;
      update[`shapes[${p}].label.text`] = titles[p].label.text;
    });
    Plotly.relayout(id, update);
    return;
  }
  const traces = [], layout = {};
  panels.forEach(({ run, ev, ax, left, top }, p) => {
    traces.push(pointsTrace(run, ax, n));
    const [x0, x1] = span(ev.x), [y0, y1] = span(ev.y);
    layout[`xaxis${ax}`] = { domain: stacked ? [0, 1] : [left, left + width], anchor: `y${ax}`, range: [x0, x1], showgrid: false, zeroline: false,
      showticklabels: stacked ? p === n - 1 : n < 3, title: { text: p === n - 1 || !stacked ? "x1" : "" } };
    layout[`yaxis${ax}`] = { domain: stacked ? [top - size, top] : [0, 1], anchor: `x${ax}`, range: [y0, y1], showgrid: false, zeroline: false,
      showticklabels: stacked || p === 0, title: { text: stacked || p === 0 ? "x2" : "" } };
  });
  document.getElementById(id).style.height = stacked ? `${280 * n}px` : "";
  draw(id, traces, { ...layout, images, shapes: titles, showlegend: false, margin: { l: 45, r: 10, t: 26, b: 40 } });
  drawnPanels.set(id, key);
}

// The grid's cells are centred on its points: the image reaches half a cell past the first and the last.
function span(centres) {
  const half = (centres[centres.length - 1] - centres[0]) / (centres.length - 1) / 2;
  return [centres[0] - half, centres[centres.length - 1] + half];
}

// At most about 400 training points a panel: the shape of the data shows, and drawing stays quick.
function pointsTrace(run, ax, n) {
  const all = run.points || { x: [], y: [], label: [] };
  const every = Math.max(1, Math.ceil(all.x.length / 400));
  const keep = (arr) => arr.filter((_, i) => i % every === 0);
  const classes = keep(all.label);
  return { x: keep(all.x), y: keep(all.y), mode: "markers", type: "scatter", name: "training points",
    xaxis: `x${ax}`, yaxis: `y${ax}`, hovertemplate: "(%{x:.2f}, %{y:.2f})<extra>training point</extra>",
    marker: { color: classes.map((c) => CLASSES[c % CLASSES.length]), size: n > 2 ? 3 : 4,
      line: { width: 0.5, color: "#222" } } };
}

// The predicted class of every cell, in the class colours at 45% on white (two classes: the probability of
// the second, from the first class's colour through white to the second's). One image per boundary event,
// made once.
const images = new WeakMap();
const ALPHA = 0.45;

function regionImage(ev, ax) {
  if (!images.has(ev)) images.set(ev, regionPng(ev));
  const [x0, x1] = span(ev.x), [y0, y1] = span(ev.y);
  return { source: images.get(ev), xref: `x${ax}`, yref: `y${ax}`, x: x0, y: y1, sizex: x1 - x0, sizey: y1 - y0,
    xanchor: "left", yanchor: "top", sizing: "stretch", layer: "below" };
}

function regionPng(ev) {
  const k = ev.probs.length, rows = ev.y.length, cols = ev.x.length;
  const rgb = CLASSES.map(hex);
  const canvas = document.createElement("canvas");
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  const image = context.createImageData(cols, rows);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let colour;
      if (k === 2) {
        const t = ev.probs[1][i][j] / ev.prob_scale;  // 0: first class, 0.5: undecided (white), 1: second
        colour = t < 0.5 ? mix(rgb[0], [255, 255, 255], t * 2) : mix([255, 255, 255], rgb[1], t * 2 - 1);
      } else {
        let best = 0;
        for (let c = 1; c < k; c++) if (ev.probs[c][i][j] > ev.probs[best][i][j]) best = c;
        colour = rgb[best % rgb.length];
      }
      const at = ((rows - 1 - i) * cols + j) * 4;  // the image's top row is the highest y
      for (let c = 0; c < 3; c++) image.data[at + c] = Math.round(255 + (colour[c] - 255) * ALPHA);
      image.data[at + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
  return canvas.toDataURL();
}

const hex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
const mix = (a, b, t) => a.map((v, i) => v + (b[i] - v) * t);
