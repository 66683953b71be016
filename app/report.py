"""A self-contained HTML report of one run, for a learner to take home: what the doctor sees, in words,
the run's key numbers, the same charts as the page, and its config as a table (the raw JSON behind a
disclosure). Plotly is inlined, so it opens offline, and it reads well printed."""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from deepscope.app.service import say_gaps
from deepscope.engine.events import SCALARS, EventType

# (run id, event types) -> the stored events, parsed, in seq order: RunService.all_events
EventsReader = Callable[..., Iterable[dict[str, Any]]]
LOG_STATS = {"act_std": "activation std", "grad_norm": "weight-gradient norm"}
LINEAR_STATS = {"dead_frac": "dead fraction", "saturated_frac": "saturated fraction",
                "duplicate_frac": "duplicate fraction"}
NUMBERS = (("val_acc", "validation accuracy"), ("train_acc", "training accuracy"), ("val_loss", "validation loss"),
           ("train_loss", "training loss"), ("val_acc_batch_stats", "validation accuracy with batch statistics"),
           ("diverged_step", "diverged at step"), ("steps_per_s", "training steps a second"),
           ("captures", "captures of every layer"))


def report_csp(nonce: str) -> str:
    """The report's inline scripts (plotly.js itself, and the figures) run by this answer's nonce alone."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _first_and_last(events: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The first and the last of a stream of events, and how many there were: memory stays bounded
    whatever the run's length."""
    first = last = None
    count = 0
    for event in events:
        first = first or event
        last = event
        count += 1
    if count == 0:
        return [], 0
    return ([first] if count == 1 else [first, last]), count


def _curves(steps: list[dict], evals: list[dict]) -> list[dict[str, Any]]:
    line = lambda rows, key, name, width=2: {"x": [e["step"] for e in rows], "y": [e.get(key) for e in rows],  # noqa: E731
                                             "name": name, "type": "scatter", "line": {"width": width}}
    step_axis = {"xaxis": {"title": {"text": "step"}}}
    return [
        {"title": "Loss", "data": [line(steps, "loss", "batch loss", 1), line(evals, "train_loss", "training"),
                                   line(evals, "val_loss", "validation")], "layout": step_axis},
        {"title": "Accuracy: training against validation", "data": [
            line(evals, "train_acc", "training"), line(evals, "val_acc", "validation")],
         "layout": {**step_axis, "yaxis": {"range": [0, 1.02]}}},
    ]


def _layer_charts(captures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per statistic, every layer at step 0 and at the last capture: log axes for spreads and norms,
    0 to 1 for fractions. A log axis cannot show 0 (a dead layer's gradient), so a zero is drawn as a
    cross at the axis floor, as the page does."""
    figures = []
    for stats, log in ((LOG_STATS, True), (LINEAR_STATS, False)):
        for key, name in stats.items():
            data = [_layer_line(e, key, i) for i, e in enumerate(captures)]
            axis = {"type": "log", "exponentformat": "power"} if log else {"range": [-0.03, 1.03]}
            title = name
            if log and any(y == 0 for line in data for y in line["y"]):
                data += _zero_crosses(data)
                title = f"{name} (log; × = exactly 0)"
            figures.append({"title": f"{name[0].upper()}{name[1:]} per layer, input to output", "data": data,
                            "layout": {"yaxis": {**axis, "title": {"text": title}}}})
    return figures


def _layer_line(event: dict[str, Any], key: str, i: int) -> dict[str, Any]:
    # step 0 dotted, the last capture solid: two equal lines stay two lines
    return {"x": [layer["name"] for layer in event["layers"]], "y": [layer["stats"][key] for layer in event["layers"]],
            "name": f"step {event['step']}", "type": "scatter", "mode": "lines+markers",
            "line": {"dash": "dot" if i == 0 else "solid"}, "marker": {"symbol": "circle" if i == 0 else "square"}}


def _zero_crosses(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    positive = [y for line in lines for y in line["y"] if y is not None and y > 0]
    floor = min(positive) / 10 if positive else 1e-12
    crosses = []
    for line in lines:
        zeros = [x for x, y in zip(line["x"], line["y"], strict=True) if y == 0]
        line["y"] = [None if y == 0 else y for y in line["y"]]
        if zeros:
            crosses.append({"x": zeros, "y": [floor] * len(zeros), "name": f"{line['name']}: exactly 0",
                            "type": "scatter", "mode": "markers", "marker": {"symbol": "x-open", "size": 9}})
    return crosses


def _findings(summary: dict[str, Any]) -> str:
    items = "".join(
        f'<li class="{html.escape(f["severity"])}"><strong>{html.escape(f["title"])}</strong> '
        f'({html.escape(f["severity"])}). {html.escape(f["detail"])}'
        + (f' The lesson <em>{html.escape(f["lesson"])}</em> teaches it.' if f.get("lesson") else "") + "</li>"
        for f in summary.get("findings") or [])
    return f"<h2>What DeepScope sees</h2><ul class=\"findings\">{items}</ul>" if items else ""


def _numbers(summary: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{name}</th><td>{summary[key]:.4g}</td></tr>"
                   for key, name in NUMBERS if isinstance(summary.get(key), int | float))
    return f"<h2>Key numbers</h2><table>{rows}</table>" if rows else ""


def _config(config: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{html.escape(section)}.{html.escape(field)}</th>"
                   f"<td>{html.escape(json.dumps(value))}</td></tr>"
                   for section, fields in config.items() if isinstance(fields, dict) for field, value in fields.items())
    raw = html.escape(json.dumps(config, indent=2))
    return (f"<h2>Config</h2><table class=\"config\">{rows}</table>"
            f"<details><summary>The config as JSON</summary><pre>{raw}</pre></details>")


def _missing(ranges: list[tuple[int, int]] | tuple) -> str:
    if not ranges:
        return ""
    return (f'<p class="missing"><strong>Events missing:</strong> the store does not have seq {say_gaps(list(ranges))} of this '
            "run (lost in an outage); the charts below have a hole there.</p>")


def render_report(run: dict[str, Any], read_events: EventsReader,
                  missing: list[tuple[int, int]] = ()) -> tuple[str, str]:
    """(the page, the nonce its scripts carry). ``missing``: seq ranges the store lost, said on the page."""
    from plotly.offline import get_plotlyjs

    nonce = secrets.token_urlsafe(16)
    scalars = list(read_events(run["id"], types=tuple(SCALARS)))  # at most 2000 step and 500 eval events
    layers, n_captures = _first_and_last(read_events(run["id"], types=(EventType.LAYERS.value,), page=20))
    figures = _curves([e for e in scalars if e["type"] == "step"], [e for e in scalars if e["type"] == "eval"])
    figures += _layer_charts(layers)
    divs = "\n".join(f'<h2>{html.escape(f["title"])}</h2><div id="fig{i}" class="fig"></div>'
                     for i, f in enumerate(figures))
    data = json.dumps(figures).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DeepScope report: {html.escape(run['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1b1b1b}}
.fig{{height:340px}} pre{{background:#f4f4f4;padding:1em;overflow:auto}} table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.2em .8em .2em 0;border-bottom:1px solid #ddd}} .findings li{{margin:.4em 0}}
.findings .problem strong{{color:#A33F00}} .findings .warning strong{{color:#8a6100}}
@media print{{.fig{{height:300px;break-inside:avoid}} details{{display:none}}}}</style>
<script nonce="{nonce}">{get_plotlyjs()}</script></head><body>
<h1>{html.escape(run['name'])}</h1>
<p>Run <code>{html.escape(run['id'])}</code>: <strong>{html.escape(run['status'])}</strong>
{html.escape(run.get('error') or '')}</p>
{_missing(missing)}
{_findings(run['summary'])}
{_numbers(run['summary'])}
<p>{n_captures} captures of every layer are stored with this run; the layer charts show the first and the
last; the playground shows them all, on its step slider.</p>
{divs}
{_config(run['config'])}
<script nonce="{nonce}">const figs = {data};
figs.forEach((f, i) => Plotly.newPlot('fig' + i, f.data, {{margin: {{t: 10}}, ...(f.layout || {{}})}},
  {{responsive: true, displayModeBar: false}}));</script>
</body></html>""", nonce
