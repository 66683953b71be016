"""Each idea has one home: checks on the code's shape that a review would otherwise have to repeat."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_engine_or_service_function_is_longer_than_a_screen():
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.relative_to(ROOT)}: {node.name} is {length} lines"


def test_statuses_and_event_types_are_listed_once():
    # A literal list of two or more statuses (or event types) outside their homes is a copy that can drift.
    statuses = "queued|running|completed|failed|cancelled|diverged|interrupted"
    types = "status|step|eval|layers|boundary|samples"
    pattern = re.compile(rf"""["']({statuses})["']\s*,\s*["']({statuses})["']|["']({types})["']\s*,\s*["']({types})["']""")
    homes = {ROOT / "engine" / "events.py", ROOT / "app" / "statuses.py"}
    for folder in ("engine", "app", "static", "templates"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".js", ".html") and path not in homes:
                hits = pattern.findall(path.read_text())
                assert not hits, f"{path.relative_to(ROOT)} lists statuses or event types: {hits}"


def test_comments_cite_the_repository_not_outside_documents():
    cited = set()
    for folder in ("deepscope", "engine", "app", "static", "templates", "tests", "benchmarks", "devtools"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".js", ".html"):
                text = path.read_text()
                outside = [name for name in ("MEASURED" + ".md", "CONTRACT" + ".md", "../" + "shared") if name in text]
                assert not outside, (path, outside)
                cited |= set(re.findall(r"docs/[a-z_]+\.md", text))
    missing = [doc for doc in cited if not (ROOT / doc).is_file()]
    assert cited and not missing, missing


def test_the_page_is_split_by_job_with_one_url_codec():
    # main.js wires; each module has one job and stays short enough to read (playground's split).
    scripts = list((ROOT / "static" / "js").glob("*.js"))
    long = {p.name: n for p in scripts if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
    # The hash is read and written in one place (state.js): two writers used to overwrite each other.
    touching = sorted(p.name for p in scripts if re.search(r"location\.hash|history\.replaceState", p.read_text()))
    assert touching == ["state.js"], touching
    # Benchmark hooks ship behind one flag, read once.
    assert [p.name for p in scripts if "window.deepscopePerf =" in p.read_text()] == ["scheduler.js"]
    assert [p.name for p in scripts if "URLSearchParams(location.search)" in p.read_text()] == ["state.js"]


def test_every_redis_key_is_built_in_redis_keys():
    for path in (ROOT / "app" / "executors").rglob("*.py"):
        if path.name == "redis_keys.py":
            continue
        text = path.read_text()
        assert not re.search(r"""\{K\.PREFIX\}|["']deepscope:""", text), f"{path.relative_to(ROOT)} builds a Redis key inline"
