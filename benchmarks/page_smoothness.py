"""How smooth the playground is while a 30-layer lesson streams, in the browser tests' Chromium (software
rendering), with the page as it is and, side by side, drawing every chart on every update as before:

    python benchmarks/page_smoothness.py [--seconds 20] [--moves 12]

Two pages open at once, each in its own browser context, at 1440x900: the page as served, and the same
page with ``?redraw=all`` (both with the timing counters ``?perf`` keeps). Both start the xavier-vs-he lesson (three 30-layer ReLU nets); the second
press shares the first one's trainings, so both pages receive the same events live. While it streams:

- update: the page's own timing of each update (``window.deepscopePerf``; goal: median <= 50 ms);
- blocked: the share of the time the main thread spent in long tasks (over 50 ms, the Long Tasks API;
  goal: <= 20%);
- then, with the runs finished, slider response: from moving the step slider to the frame after the
  first chart it changes is drawn again (goal: <= 100 ms), and to the frame after the last one (the
  charts are drawn one a frame, so the page answers between them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # devtools: the harness the tests share

from deepscope.app.settings import Settings  # noqa: E402
from devtools.server import LiveServer  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__longTasks.push([e.startTime, e.duration])))
  .observe({ type: "longtask", buffered: true });
"""
SLIDER_MOVE = """async (value) => {
  const slider = document.getElementById("step-slider");
  const perf = window.deepscopePerf;
  const drawsBefore = perf ? perf.draws.length : 0;
  const t0 = performance.now();
  slider.value = String(value);
  slider.dispatchEvent(new Event("input", { bubbles: true }));
  const seen = document.getElementById("step-value").textContent;
  let first = null;
  // First: a frame has been painted after the first chart the move changed was drawn again. All: the
  // step shown changed, every chart it changes has been drawn (nothing waits in the draw queue), and a
  // frame has been painted after that.
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => requestAnimationFrame(() => r()));
    if (first === null && perf && perf.draws.length > drawsBefore) first = performance.now() - t0;
    if (document.getElementById("step-value").textContent !== seen && perf.pending === 0) break;
  }
  await new Promise((r) => requestAnimationFrame(() => r()));
  const all = performance.now() - t0;
  return [first ?? all, all];
}"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.add_init_script(LONG_TASKS)
    page.goto(url)
    page.wait_for_selector("[name='model.activation']", state="attached")
    page.select_option("[data-testid=preset-select]", "xavier-vs-he")
    return page


def streaming_figures(page, t_start: float, t_end: float) -> tuple[list[float], float]:
    """Every main-thread task an update makes (working out what changed, then each frame of drawing),
    and the share of the time spent in long tasks."""
    perf = page.evaluate("() => ({ renders: window.deepscopePerf.renders, frames: window.deepscopePerf.frames || [] })")
    updates = [r["ms"] for r in perf["renders"] + perf["frames"] if t_start <= r["t"] <= t_end]
    long_tasks = page.evaluate("() => window.__longTasks")
    blocked = sum(max(0.0, min(s + d, t_end) - max(s, t_start)) for s, d in long_tasks)
    return updates, blocked / (t_end - t_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to watch the lesson stream")
    parser.add_argument("--moves", type=int, default=12, help="slider moves to time")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with LiveServer(Settings(data_dir=Path(tempfile.mkdtemp()), workers=2)) as live, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        pages = {"as served": open_page(browser, live.url + "/?perf"),
                 "?redraw=all (before)": open_page(browser, live.url + "/?redraw=all")}
        for page in pages.values():
            page.click("[data-testid=lesson-start]")
        for page in pages.values():  # the first capture has arrived: the stream is on
            page.wait_for_function("() => window.deepscopePerf.renders.length > 3", timeout=60000)
        starts = {name: page.evaluate("() => performance.now()") for name, page in pages.items()}
        next(iter(pages.values())).wait_for_timeout(args.seconds * 1000)
        figures = {name: streaming_figures(page, starts[name], page.evaluate("() => performance.now()"))
                   for name, page in pages.items()}
        for page in pages.values():
            page.wait_for_function("() => document.getElementById('lesson-status').textContent.startsWith('Done')",
                                   timeout=600000)
            page.wait_for_function("() => Number(document.getElementById('step-slider').max) >= 1", timeout=60000)
        slider_draws: dict[str, list[dict]] = {}
        print(f"xavier-vs-he (3 runs x 30 layers) streaming for {args.seconds:g} s, 1440x900, both pages at once:")
        print(f"  {'page':22} {'updates':>7} {'median ms':>9} {'p90 ms':>7} {'blocked':>8} {'slider median ms':>17} "
              f"{'slider max ms':>14} {'all charts median ms':>20}")
        for name, page in pages.items():
            updates, blocked = figures[name]
            top = int(page.evaluate("() => document.getElementById('step-slider').max"))
            before = page.evaluate("() => window.deepscopePerf ? window.deepscopePerf.draws.length : 0")
            timed = [page.evaluate(SLIDER_MOVE, (i * 7) % (top + 1)) for i in range(1, args.moves + 1)]
            moves, whole = [t[0] for t in timed], [t[1] for t in timed]
            slider_draws[name] = page.evaluate(f"() => window.deepscopePerf ? window.deepscopePerf.draws.slice({before}) : []")
            print(f"  {name:22} {len(updates):7d} {statistics.median(updates) if updates else float('nan'):9.1f} "
                  f"{pct(updates, 0.9):7.1f} {blocked:8.1%} {statistics.median(moves):17.1f} {max(moves):14.1f} "
                  f"{statistics.median(whole):20.1f}")
        for name, page in pages.items():
            draws: dict[str, list[float]] = {}
            for d in page.evaluate("() => window.deepscopePerf.draws"):
                draws.setdefault(d["id"], []).append(d["ms"])
            print(f"  {name}: median ms per chart draw: "
                  + ", ".join(f"{k} {statistics.median(v):.0f} ({len(v)}x)" for k, v in sorted(draws.items())))
        for name, drawn in slider_draws.items():  # what the slider's moves drew, chart by chart
            per: dict[str, list[float]] = {}
            for d in drawn:
                per.setdefault(d["id"], []).append(d["ms"])
            print(f"  {name}, during the {args.moves} slider moves: "
                  + ", ".join(f"{k} {sum(v):.0f} ms ({len(v)}x)" for k, v in sorted(per.items())))
        browser.close()


if __name__ == "__main__":
    main()
