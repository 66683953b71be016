// Opening a chart on the exact view a lesson's "look at" link or a doctor's finding names: its
// statistic or histogram kind, the layer to annotate, the step shown (or the steps played), the chart
// outlined and in view. One home for both: a link and a finding open evidence the same way.
import { $ } from "./dom.js";
import { scheduleRender } from "./scheduler.js";
import { state } from "./state.js";
import { play, showStep } from "./timeline.js";

const STRIP_STATS = () => [...$("strip-stat").options].map((o) => o.value);

export function openView(view, outline = "target") {
  if (view.stat && STRIP_STATS().includes(view.stat)) $("strip-stat").value = view.stat;
  if (view.hist) $("hist-kind").value = view.hist;
  if (view.shared !== undefined) $("hist-shared").checked = Boolean(view.shared);
  state.focus = view.layer ? { chart: view.chart, layer: view.layer } : null;
  if (view.steps) {
    showStep(view.steps[0]);
    play(view.steps[1]);
  } else if (view.step !== undefined && view.step !== null) {
    showStep(view.step === "last" ? Infinity : view.step);
  }
  document.querySelectorAll(`figure.${outline}`).forEach((f) => f.classList.remove(outline));
  const figure = document.querySelector(`[data-testid=${view.chart}]`)?.closest("figure");
  if (figure) {
    figure.classList.add(outline);
    figure.hidden = false;
    figure.scrollIntoView({ block: "center", behavior: "smooth" });
  }
  scheduleRender(true);
}

export function pointAt(chart, on) {
  document.querySelector(`[data-testid=${chart}]`)?.closest("figure")?.classList.toggle("pointed", on);
}
