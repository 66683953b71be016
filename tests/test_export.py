"""Take a run home: the exported script reproduces the run it came from (issue: runs you can take home)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest
import torch

from deepscope.app.settings import Settings
from deepscope.client import ApiError, DeepScope
from deepscope.engine import train
from deepscope.engine.export import script_for
from devtools.server import LiveServer

CONFIGS = {
    "mlp-spiral": {"data": {"dataset": "spiral", "n_samples": 600}, "model": {"depth": 4, "width": 32},
                   "train": {"epochs": 3}},
    "cnn-shapes-augmented": {
        "data": {"dataset": "shapes", "n_samples": 240},
        "model": {"arch": "cnn", "depth": 3, "width": 8, "activation": "leaky_relu", "leaky_slope": 0.1},
        "augment": {"hflip": True, "rotate_deg": 20.0, "color_shift": 0.2, "scale": 0.15},
        "train": {"epochs": 2, "optimizer": "adam", "lr": 0.003, "batch_size": 32}},
    "bn-dropout-digits": {
        "data": {"dataset": "digits"},
        "model": {"depth": 4, "width": 32, "activation": "tanh", "init": "xavier_normal", "batchnorm": True,
                  "bn_momentum": 0.2, "dropout": 0.3, "dropout_mode": "classic"},
        "train": {"epochs": 2, "optimizer": "momentum", "lr": 0.02}},
}
EPOCH_LINE = re.compile(r"^epoch +(\d+) +train_loss (\S+) +train_acc (\S+) +val_loss (\S+) +val_acc (\S+)$")


def run_script(text: str, folder) -> list[dict[str, float]]:
    path = folder / "run.py"
    path.write_text(text)
    # One torch thread, as DeepScope's workers train: float sums depend on the thread count.
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=folder, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [EPOCH_LINE.match(line) for line in out.stdout.splitlines()]
    return [{"epoch": int(m[1]), "train_loss": float(m[2]), "val_loss": float(m[4])} for m in rows if m]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_exported_script_reproduces_the_run(name, tmp_path, one_thread):
    config = CONFIGS[name]
    events: list[dict] = []
    result = train(config, events.append)
    assert result["status"] == "completed"
    evals = [e for e in events if e["type"] == "eval"]

    epochs = run_script(script_for(config), tmp_path)

    assert [e["epoch"] for e in epochs] == [e["epoch"] for e in evals]
    for ours, theirs in zip(epochs, evals, strict=True):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4)
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-4)
    assert epochs[-1]["train_loss"] == pytest.approx(result["summary"]["train_loss"], abs=1e-4)


def test_a_changed_config_changes_the_numbers(tmp_path, one_thread):
    # The comparison above can fail: the same script with another seed ends elsewhere.
    config = CONFIGS["mlp-spiral"]
    result = train(config, lambda e: None)
    other = run_script(script_for({**config, "train": {**config["train"], "seed": 1}}), tmp_path)
    assert abs(other[-1]["train_loss"] - result["summary"]["train_loss"]) > 1e-3


def test_the_script_stands_alone():
    text = script_for(CONFIGS["bn-dropout-digits"])
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "collections", "contextlib", "dataclasses", "functools", "math", "os",
                        "pathlib", "types", "numpy", "torch", "sklearn"}, imported
    # It names each trick it rebuilds, for a reader.
    for words in ("batchnorm, moving averages with momentum alpha = 0.2", "classic dropout, keep probability p = 0.7",
                  "init xavier_normal", "activation tanh"):
        assert words in text


def test_the_script_through_the_api(tmp_path_factory, tmp_path):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), workers=1, token="class-secret")
    config = {"data": {"dataset": "moons", "n_samples": 400}, "model": {"depth": 3, "width": 16, "init": "he_uniform"},
              "train": {"epochs": 2, "fresh": True}}
    with LiveServer(settings) as live, DeepScope(live.url, token="class-secret") as ds:
        run = ds.submit(config)
        done = ds.wait(run["id"], timeout=120)
        text = ds.script(run["id"])
        assert f"run {run['id']}" in text
        with pytest.raises(ApiError) as missing:
            ds.script("no-such-run")
        assert missing.value.status == 404
    epochs = run_script(text, tmp_path)
    assert epochs[-1]["train_loss"] == pytest.approx(done["summary"]["train_loss"], abs=1e-4)


def test_a_name_with_quotes_and_backslashes_makes_a_script_that_compiles():
    from deepscope.engine.config import RunConfig

    name = 'my """ run \\ with "quotes\\'
    source = script_for(RunConfig(name=name))
    compile(source, "exported.py", "exec")  # a SyntaxError fails the test
    assert ast.get_docstring(ast.parse(source)).startswith(name)
