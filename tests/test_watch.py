"""deepscope.watch on real models written here (an MLP, a small ResNet with skips and batchnorm, a
transformer encoder stack, a model with a shared module): its histograms against numpy, a live server
that gets every event in order, a server killed mid-run that loses nothing, and no server at all."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import torch
from torch import nn

import deepscope
from deepscope.app.settings import Settings
from deepscope.engine.telemetry.bounds import bounds
from devtools.server import LiveServer


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)  # one ReLU module, called twice


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.b1, self.b2, self.fc = nn.Conv2d(3, 8, 3, padding=1), Block(8), Block(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.b2(self.b1(torch.relu(self.stem(x)))).mean((2, 3)))


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, 32, activation="gelu", batch_first=True, dropout=0.0)
        self.encoder, self.head = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


class Shared(nn.Module):
    """One Linear applied twice in a forward."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.shared, self.out = nn.Linear(4, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.shared(h))
        return self.out(torch.tanh(self.shared(h)))


def mlp():
    return nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


MODELS = {"mlp": (mlp, (64, 4)), "resnet": (ResNet, (16, 3, 12, 12)), "transformer": (Transformer, (8, 5, 16)),
          "shared": (Shared, (32, 4))}


def train(model, watch_run, shape, steps, seed=0, pause=0.0):
    gen = torch.Generator().manual_seed(seed)
    opt = watch_run.run.optimizer
    x, y = torch.randn(*shape, generator=gen), torch.randint(0, 3, (shape[0],), generator=gen)
    for step in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        watch_run.log(loss=loss)
        if step % 10 == 9:
            watch_run.log(train_loss=loss, train_acc=0.5, val_loss=loss, val_acc=0.5, epoch=step // 10)
        time.sleep(pause)


def by_hand(t: torch.Tensor, bins: int = 32) -> list[int]:
    a = t.detach().double().numpy().ravel()
    lo, hi = bounds(float(a.min()), float(a.max()))
    return np.histogram(a, bins=bins, range=(lo, hi))[0].tolist()


def local_events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


@pytest.mark.parametrize("name", MODELS)
def test_histograms_of_any_model_match_numpy(name, tmp_path):
    torch.manual_seed(0)
    make, shape = MODELS[name]
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    weights = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    grads: dict[str, torch.Tensor] = {}

    def first_grads(*_):  # the gradients the first update uses
        if not grads:
            grads.update({n: m.weight.grad.clone() for n, m in model.named_modules()
                          if isinstance(m, nn.Linear | nn.Conv2d) and m.weight.grad is not None})

    opt.register_step_pre_hook(first_grads)
    run = deepscope.watch(model, opt, name=name, data_dir=tmp_path, total_steps=12, background=False)
    train(model, run, shape, 12)
    run.finish()
    events = local_events(run.file)
    first = next(e for e in events if e["type"] == "layers")
    assert first["step"] == 0 and [e["seq"] for e in events] == list(range(len(events)))
    for layer in first["layers"]:
        assert layer["hist"]["weight"]["counts"] == by_hand(weights[layer["name"]]), layer["name"]
        assert layer["hist"]["grad"]["counts"] == by_hand(grads[layer["name"]]), layer["name"]
    names = [layer["name"] for layer in first["layers"]]
    if name == "shared":
        assert names.count("shared") == 1  # one layer, both calls joined
        shared = first["layers"][names.index("shared")]
        assert sum(shared["hist"]["preact"]["counts"]) == 2 * shape[0] * 16
    if name == "transformer":  # the attention's out_proj is never called as a module: left out
        assert "encoder.layers.0.linear1" in names and not any("out_proj" in n for n in names)
        assert first["layers"][names.index("encoder.layers.0.linear1")]["stats"]["slope_mean"] is not None  # F.gelu
    if name == "resnet":
        conv1 = first["layers"][names.index("b1.conv1")]
        assert conv1["stats"]["bn_gamma_mean"] == pytest.approx(1.0) and conv1["stats"]["dead_frac"] is not None
        # the block's ReLU module is called twice: conv1's activations are its first call's only
        assert sum(conv1["hist"]["act"]["counts"]) == shape[0] * 8 * 12 * 12
    assert events[-1]["status"] == "completed" and events[-1]["summary"]["findings"]


def test_a_zero_initialised_watched_mlp_reports_symmetry(tmp_path):
    model = mlp()
    for p in model.parameters():
        nn.init.zeros_(p)
    with deepscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), data_dir=tmp_path, total_steps=60) as run:
        train(model, run, (64, 4), 60)
    ids = [f["id"] for f in local_events(run.file)[-1]["summary"]["findings"]]
    assert "symmetry" in ids


class NoWorkers:
    """Watched runs train elsewhere: the server needs no worker."""

    interrupts_on_restart = True

    def start(self, sink): ...
    def shutdown(self): ...
    def replay_after(self, run_id, seq): return []
    def stats(self): return {"executor": "none"}
    def workers(self): return []


def stored(url, run_id):
    events, after = [], -1
    while page := httpx.get(f"{url}/api/runs/{run_id}/events", params={"after": after}).json()["data"]:
        events += page
        after = page[-1]["seq"]
    return events


def test_a_watched_run_streams_to_a_live_server_and_replays_gaplessly(tmp_path):
    with LiveServer(Settings(data_dir=tmp_path), executor=NoWorkers()) as live:
        torch.manual_seed(0)
        model = ResNet()
        with deepscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.05), name="resnet-try-3",
                             server=live.url, total_steps=80) as run:
            train(model, run, (16, 3, 12, 12), 80)
        listed = httpx.get(f"{live.url}/api/runs").json()["data"]
        assert [r["name"] for r in listed if r["id"] == run.run_id] == ["resnet-try-3"]
        events = stored(live.url, run.run_id)
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert sum(e["type"] == "layers" for e in events) >= 50 and events[-1]["status"] == "completed"
        done = httpx.get(f"{live.url}/api/runs/{run.run_id}").json()
        assert done["status"] == "completed" and done["source"] == "watched" and done["summary"]["findings"]
        assert httpx.get(f"{live.url}/api/runs/{run.run_id}/report").status_code == 200
        assert httpx.get(f"{live.url}/api/runs/{run.run_id}/script").status_code == 409


def test_the_server_killed_mid_run_loses_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = LiveServer(settings, executor=NoWorkers())
    torch.manual_seed(0)
    model = mlp()
    with first:
        run = deepscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.05), name="through a restart",
                              server=first.url, total_steps=300, data_dir=tmp_path)
        train(model, run, (64, 4), 100)
    train(model, run, (64, 4), 100, pause=0.005)  # the server is gone: training goes on, events wait
    with LiveServer(settings, executor=NoWorkers(), port=first.port) as second:
        train(model, run, (64, 4), 100)
        run.finish()
        events = stored(second.url, run.run_id)
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert run.sink.dropped == 0 and events[-1]["status"] == "completed"
        assert len(events) == run.sink._seq  # every event the run made is stored, once


def test_without_a_server_it_says_so_once_and_writes_a_file_that_serve_loads(tmp_path, capsys):
    model = mlp()
    run = deepscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.05), server="http://127.0.0.1:9",
                          data_dir=tmp_path, total_steps=30)
    train(model, run, (64, 4), 30)
    run.finish()
    assert capsys.readouterr().err.count("cannot reach the DeepScope server") == 1
    assert run.file.parent == tmp_path / "watched"
    with LiveServer(Settings(data_dir=tmp_path), executor=NoWorkers()) as live:
        deadline = time.monotonic() + 20
        while not (listed := [r for r in httpx.get(f"{live.url}/api/runs").json()["data"] if r["source"] == "watched"]):
            assert time.monotonic() < deadline, "serve did not load the file"
            time.sleep(0.2)
        assert listed[0]["status"] == "completed"
        assert len(stored(live.url, listed[0]["id"])) == len(local_events(run.file.with_suffix(".imported")))


def test_the_ingest_refuses_bad_events_with_a_4xx_that_says_why(tmp_path):
    """What a buggy or hostile sender may post: each is refused, names what is wrong, stores nothing."""
    with LiveServer(Settings(data_dir=tmp_path / "data", workers=1)) as live, \
            httpx.Client(base_url=live.url, timeout=30) as ann, httpx.Client(base_url=live.url, timeout=30) as bob:
        run = ann.post("/api/watched", json={"name": "mine", "config": {"watched": {"model": "MLP", "n_params": 10, "modules": []}}}).json()
        url = f"/api/runs/{run['id']}/events"
        status = {"seq": 0, "type": "status", "status": "running", "message": "watching"}
        assert ann.post(url, json={"events": [status]}).status_code == 200
        step = {"seq": 1, "type": "step", "step": 0, "epoch": 0, "loss": 1.0, "acc": 0.5, "progress": 0.1}
        cases = [
            (ann.post(url, json={"events": [{**step, "extra": "rides along"}]}), 422, "extra"),
            (ann.post(url, json={"events": [{**step, "loss": "a lot"}]}), 422, "loss"),
            (ann.post(url, json={"events": [{**step, "seq": 5}]}), 409, "seq 1 is next"),  # a gap
            (bob.post(url, json={"events": [step]}), 403, "another client"),
            (ann.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400, "JSON"),
            (ann.post(url, content=b" " * (8 * 2**20 + 1), headers={"Content-Type": "application/json"}), 413, "limit"),
        ]
        for answer, code, says in cases:
            assert answer.status_code == code and says in answer.text, (code, answer.text)
        live.service.flush()  # (the writer stores within 50 ms)
        assert [e["seq"] for e in ann.get(url).json()["data"]] == [0]  # none of them stored a thing
        engine_run = ann.post("/api/runs", json={"train": {"epochs": 1}}).json()
        refused = ann.post(f"/api/runs/{engine_run['id']}/events", json={"events": [step]})
        assert refused.status_code == 409 and "only a watched run" in refused.text


def test_a_watched_run_is_under_the_servers_storage_cap(tmp_path):
    """The create answer says the cap (DEEPSCOPE_MAX_RUN_MB); deepscope.watch thins its captures to fit,
    its first and last kept, and the summary says so; an append past the cap is a 413 naming the setting."""
    with LiveServer(Settings(data_dir=tmp_path, max_run_mb=1.0), executor=NoWorkers()) as live:
        torch.manual_seed(0)
        model = ResNet()
        with deepscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.05), name="capped", server=live.url,
                             total_steps=120, every_steps=1, budget=0, max_per_second=0) as run:
            train(model, run, (16, 3, 12, 12), 120)
        assert run.max_stored_bytes == 1_000_000
        events = stored(live.url, run.run_id)
        layers = [e for e in events if e["type"] == "layers"]
        heavy = sum(len(json.dumps(e, separators=(",", ":"))) for e in layers)
        assert heavy <= 1_000_000 and 2 < len(layers) < 120, (heavy, len(layers))
        assert layers[0]["step"] == 0 and layers[-1]["step"] == 119
        summary = httpx.get(f"{live.url}/api/runs/{run.run_id}").json()["summary"]
        assert summary["storage_thinned"]["layers"] > 0 and "storage cap" in summary["storage_note"]

        with httpx.Client(base_url=live.url, timeout=30) as c:  # a sender that does not thin
            other = c.post("/api/watched", json={"name": "greedy", "config": {"watched": {"model": "M", "n_params": 1,
                                                                                        "modules": []}}}).json()
            assert other["max_stored_bytes"] == 1_000_000
            url = f"/api/runs/{other['id']}/events"
            c.post(url, json={"events": [{"seq": 0, "type": "status", "status": "running", "message": "watching"}]})
            big = {**layers[0], "seq": 1}
            seq, answer = 1, None
            while seq < 200:
                answer = c.post(url, json={"events": [{**big, "seq": seq, "step": seq}]})
                if answer.status_code != 200:
                    break
                seq += 1
            assert answer.status_code == 413 and "DEEPSCOPE_MAX_RUN_MB" in answer.text, answer.text
            assert seq * len(json.dumps(big, separators=(",", ":"))) <= 1_100_000  # refused at the cap, not long after
