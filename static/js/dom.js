// Small DOM helpers. Text always goes in as text (textContent), never as markup: run names and lesson
// texts are data.

export const $ = (id) => document.getElementById(id);

// el("button", { type: "button", className: "secondary", dataset: { run: id }, on: { click } }, "Undo")
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, on, attrs, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  if (attrs) for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (on) for (const [event, handler] of Object.entries(on)) node.addEventListener(event, handler);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function button(text, onClick, className = "secondary") {
  return el("button", { type: "button", textContent: text, className, on: { click: onClick } });
}

// A number as a reader sees it: three significant digits, "n/a" where there is none.
export function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return "n/a";
  const v = Number(x);
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(digits - 1);
  return Number(v.toPrecision(digits)).toString();
}
