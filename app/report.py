"""A self-contained HTML report of one run: Plotly figures with plotly.js inlined, so it opens offline."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from typing import Any

from deepscope.engine.events import SCALARS, EventType

# (run id, event types) -> the stored events, parsed, in seq order: RunService.all_events
EventsReader = Callable[..., Iterable[dict[str, Any]]]


def render_report(run: dict[str, Any], read_events: EventsReader) -> str:
    from plotly.offline import get_plotlyjs

    scalars = list(read_events(run["id"], types=tuple(SCALARS)))
    layers = list(read_events(run["id"], types=(EventType.LAYERS.value,)))
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
    for label, event in (("step 0", layers[0] if layers else None), ("last capture", layers[-1] if layers else None)):
        if event is None:
            continue
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
<script>{get_plotlyjs()}</script></head><body>
<h1>{html.escape(run['name'])}</h1>
<p>Run <code>{run['id']}</code>: <strong>{html.escape(run['status'])}</strong>
{html.escape(run.get('error') or '')}</p>
{divs}
<h2>Summary</h2><pre>{summary}</pre><h2>Config</h2><pre>{config}</pre>
<script>const figs = {data};
figs.forEach((f, i) => Plotly.newPlot('fig' + i, f.data, f.layout || {{}}, {{responsive: true}}));</script>
</body></html>"""
