"""A self-contained HTML report of one run: Plotly figures with plotly.js inlined, so it opens offline."""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from deepscope.engine.events import SCALARS, EventType

# (run id, event types) -> the stored events, parsed, in seq order: RunService.all_events
EventsReader = Callable[..., Iterable[dict[str, Any]]]


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


def render_report(run: dict[str, Any], read_events: EventsReader) -> tuple[str, str]:
    """(the page, the nonce its scripts carry)."""
    from plotly.offline import get_plotlyjs

    nonce = secrets.token_urlsafe(16)
    scalars = list(read_events(run["id"], types=tuple(SCALARS)))  # at most 2000 step and 500 eval events
    layers, n_captures = _first_and_last(read_events(run["id"], types=(EventType.LAYERS.value,), page=20))
    steps = [e for e in scalars if e["type"] == "step"]
    evals = [e for e in scalars if e["type"] == "eval"]
    figures = [
        {"title": "Loss", "data": [
            {"x": [e["step"] for e in steps], "y": [e["loss"] for e in steps], "name": "batch loss", "type": "scatter"},
            {"x": [e["step"] for e in evals], "y": [e["train_loss"] for e in evals], "name": "train loss",
             "type": "scatter"},
            {"x": [e["step"] for e in evals], "y": [e["val_loss"] for e in evals], "name": "validation loss",
             "type": "scatter"}], "layout": {"xaxis": {"title": {"text": "step"}}}},
        {"title": "Accuracy", "data": [
            {"x": [e["step"] for e in evals], "y": [e["train_acc"] for e in evals], "name": "train", "type": "scatter"},
            {"x": [e["step"] for e in evals], "y": [e["val_acc"] for e in evals], "name": "validation",
             "type": "scatter"}], "layout": {"xaxis": {"title": {"text": "step"}}}},
    ]
    shown = (("step 0", layers[0]), ("the last capture", layers[-1])) if len(layers) == 2 else \
        (("step 0", layers[0]),) if layers else ()
    for label, event in shown:
        names = [layer["name"] for layer in event["layers"]]
        figures.append({"title": f"Per-layer statistics at {label} (step {event['step']})", "data": [
            {"x": names, "y": [layer["stats"]["act_std"] for layer in event["layers"]], "name": "activation std",
             "type": "scatter"},
            {"x": names, "y": [layer["stats"]["grad_norm"] for layer in event["layers"]], "name": "gradient norm",
             "type": "scatter"},
            {"x": names, "y": [layer["stats"]["dead_frac"] for layer in event["layers"]], "name": "dead fraction",
             "type": "scatter"}], "layout": {"yaxis": {"type": "log"}}})
    divs = "\n".join(f'<h2>{html.escape(f["title"])}</h2><div id="fig{i}" class="fig"></div>'
                     for i, f in enumerate(figures))
    summary = html.escape(json.dumps(run["summary"], indent=2))
    config = html.escape(json.dumps(run["config"], indent=2))
    data = json.dumps(figures).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DeepScope report: {html.escape(run['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
.fig{{height:360px}} pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style>
<script nonce="{nonce}">{get_plotlyjs()}</script></head><body>
<h1>{html.escape(run['name'])}</h1>
<p>Run <code>{run['id']}</code>: <strong>{html.escape(run['status'])}</strong>
{html.escape(run.get('error') or '')}</p>
<p>{n_captures} captures of every layer are stored with this run; the report shows {len(layers)} of them
(the first and the last); the playground shows them all.</p>
{divs}
<h2>Summary</h2><pre>{summary}</pre><h2>Config</h2><pre>{config}</pre>
<script nonce="{nonce}">const figs = {data};
figs.forEach((f, i) => Plotly.newPlot('fig' + i, f.data, f.layout || {{}}, {{responsive: true}}));</script>
</body></html>""", nonce
