"""Every histogram and statistic equals the same number computed by hand on the same tensor."""

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.engine.activations import ACTIVATIONS, make_activation
from deepscope.engine.config import ModelConfig
from deepscope.engine.models import build_model
from deepscope.engine.telemetry import STAT_NAMES, LayerProbe, compiled, kernels, layers_of_net
from deepscope.engine.telemetry.bounds import bounds
from deepscope.engine.telemetry.layers import WatchedLayer, activation_of
from deepscope.engine.telemetry.summary import Summariser


def captured(model, x, y, lr=0.1, opt=None, step=0, probe=None, summariser=None, probe_x=None, bins=20):
    """One training step captured through the probe's context; returns the capture and its layers event."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=lr)
    layers = layers_of_net(model)
    probe = probe or LayerProbe(model, layers, opt, probe_x)
    summariser = summariser or Summariser(layers, bins)
    with probe.capturing(step) as taken:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert taken.capture is not None
    return taken.capture, summariser.summarise(taken.capture)


def by_hand_hist(t, bins):
    a = t.detach().double().numpy().ravel()
    lo, hi = bounds(float(a.min()), float(a.max()))
    counts, _ = np.histogram(a, bins=bins, range=(lo, hi))
    return lo, hi, counts


def slope_by_hand(activation, pre):
    return {"tanh": lambda z: 1 - np.tanh(z) ** 2, "sigmoid": lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2,
            "relu": lambda z: (z > 0).astype(float)}[activation](pre)


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu-path", "gpu-path"])
@pytest.mark.parametrize("arch, shape, activation", [("mlp", (12,), "tanh"), ("mlp", (12,), "relu"),
                                                      ("cnn", (3, 8, 8), "sigmoid")])
def test_histograms_and_stats_match_numpy(arch, shape, activation, device_path):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, depth=3, width=16, activation=activation, batchnorm=arch == "cnn")
    model = build_model(cfg, shape, 4)
    x, y = torch.randn(32, *shape), torch.randint(0, 4, (32,))
    layers = layers_of_net(model)
    summariser = Summariser(layers, 20)
    summariser.device_path = device_path  # the GPU's way (one sync per capture) runs on the CPU too
    w_before = [layer.weight.weight.detach().clone() for layer in layers]
    cap, event = captured(model, x, y, summariser=summariser)
    peak = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}[activation]  # flat tail: under 5% of the largest slope
    saturating = activation != "relu"
    assert [layer["name"] for layer in event["layers"]] == model.layer_names()
    for i, layer in enumerate(event["layers"]):
        stats = layer["stats"]
        assert set(stats) == set(STAT_NAMES)
        for name, tensor in (("preact", cap.pre[i]), ("act", cap.act[i]), ("grad", cap.grads[i]),
                             ("weight", w_before[i])):
            lo, hi, counts = by_hand_hist(tensor, 20)
            h = layer["hist"][name]
            assert h["lo"] == pytest.approx(lo) and h["hi"] == pytest.approx(hi)
            assert h["counts"] == counts.tolist(), (layer["name"], name)
        pre, act = cap.pre[i].double().numpy(), cap.act[i].double().numpy()
        assert stats["preact_mean"] == pytest.approx(pre.mean(), abs=1e-6)
        assert stats["preact_std"] == pytest.approx(pre.std(), rel=1e-4)
        assert stats["act_mean"] == pytest.approx(act.mean(), abs=1e-6)
        assert stats["act_std"] == pytest.approx(act.std(), rel=1e-4)
        assert stats["grad_norm"] == pytest.approx(np.linalg.norm(cap.grads[i].numpy().ravel()), rel=1e-5)
        assert stats["act_grad_std"] == pytest.approx(cap.act_grad[i].double().numpy().std(), rel=1e-4)
        assert stats["weight_std"] == pytest.approx(w_before[i].double().numpy().std(), rel=1e-4)
        w_after = layers[i].weight.weight.detach().numpy()
        ratio = np.linalg.norm(w_after - w_before[i].numpy()) / np.linalg.norm(w_before[i].numpy())
        assert stats["update_ratio"] == pytest.approx(ratio, rel=1e-4)
        if layer["kind"] != "output":
            over = (0, 2, 3) if act.ndim == 4 else (0,)
            assert stats["dead_frac"] == pytest.approx((act == 0).all(axis=over).mean())
            slope = slope_by_hand(activation, pre)
            assert stats["slope_mean"] == pytest.approx(slope.mean(), rel=1e-3, abs=1e-6)
            sat = (np.abs(slope) < 0.05 * peak).mean() if saturating else 0.0  # units in a flat tail, per sample
            assert stats["saturated_frac"] == pytest.approx(sat, abs=2e-3)


def test_dead_units_are_counted_on_the_probe_set_every_fourth_capture():
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=3, width=16, bias_init=-0.5), (4,), 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    probe_x = torch.randn(256, 4)
    layers = layers_of_net(model)
    probe, summariser = LayerProbe(model, layers, opt, probe_x), Summariser(layers, 16)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    events, by_hand = [], []
    for step in range(6):
        with torch.no_grad():  # what the probe set sees through the weights the step starts from
            h, dead = probe_x, []
            for block in model.blocks:
                h = block.act(block.weights(h))
                dead.append(float((h == 0).all(0).float().mean()))
        by_hand.append(dead)
        events.append(captured(model, x, y, opt=opt, step=step, probe=probe, summariser=summariser)[1])
    assert [e["layers"][0]["units_step"] for e in events] == [0, 0, 0, 0, 4, 4]
    for e in events:
        measured_at = e["layers"][0]["units_step"]
        assert [layer["stats"]["dead_frac"] for layer in e["layers"][:-1]] == pytest.approx(by_hand[measured_at])
    assert events[0]["layers"][-1]["stats"]["dead_frac"] is None  # the classifier has no activation


@pytest.mark.parametrize("arch, activation, bias_init, batchnorm, sizes", [
    ("mlp", "tanh", 0.1, False, [32, 32]), ("mlp", "relu", 0.1, False, [256, 32]),
    ("mlp", "relu", -2.0, False, [256, 256]), ("mlp", "relu", 0.1, True, [256, 256]),
    ("cnn", "relu", 0.1, False, [32, 32])])
def test_a_healthy_net_is_seen_on_part_of_the_probe_set_and_counts_as_on_the_whole(arch, activation, bias_init,
                                                                                  batchnorm, sizes):
    """Where every unit fires on the probe set's first eighth, that eighth stands for the whole set (the
    counts agree); a net with dead units at its last count, or with batchnorm (which mixes the samples),
    is seen whole, and so is a net of dense ReLU layers before its first count (a deep one has dead units
    from the start; a conv channel fires somewhere on an eighth of the images)."""
    from deepscope.engine.telemetry.units import ProbeSet, dead_fractions

    torch.manual_seed(0)
    shape = (1, 6, 6) if arch == "cnn" else (4,)
    model = build_model(ModelConfig(arch=arch, depth=4, width=16, activation=activation, bias_init=bias_init,
                                    batchnorm=batchnorm), shape, 3)
    layers, probe_x = layers_of_net(model), torch.randn(256, *shape)
    probe_set = ProbeSet(model, layers, probe_x)
    whole = probe_set._activations(probe_x)
    for size in sizes:  # the second time, with what the first saw
        seen = probe_set.units()
        assert seen.acts[0].shape[0] == size
        assert seen.dead == dead_fractions(seen.acts, layers) == dead_fractions(whole, layers)
    assert (max(d for _, d in dead_fractions(whole, layers)) > 0) == (bias_init < 0)


def test_the_probe_set_off_the_host_leaves_dead_units_to_the_summary():
    """Off the host the probe set's pass counts nothing: its values are not the host's to read (the compiled
    kernels would read a device address), and the device summary counts them without a host sync. A meta
    device stands in for a GPU."""
    from deepscope.engine.telemetry.units import ProbeSet

    model = build_model(ModelConfig(depth=3, width=8), (4,), 3).to("meta")
    seen = ProbeSet(model, layers_of_net(model), torch.randn(40, 4, device="meta")).units()
    assert seen.dead is None and [a.shape for a in seen.acts[:-1]] == [(40, 8)] * 3 and seen.acts[-1] is None


def test_a_layer_the_probe_sets_pass_does_not_reach_counts_dead_units_on_the_batch_on_both_paths():
    """A branch a model runs only in training (as Inception's auxiliary head) has no activation in the probe
    set's pass, which runs in evaluation mode: its dead units are counted on the captured batch, by the CPU
    path as by the device path."""

    class AuxNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.a1 = nn.Linear(4, 8), nn.ReLU()
            self.aux, self.aa = nn.Linear(8, 8), nn.ReLU()
            self.head = nn.Linear(8, 3)
            nn.init.constant_(self.aux.bias, -3.0)  # every unit of the branch dead

        def forward(self, x):
            h = self.a1(self.l1(x))
            out = self.head(h)
            return out + 0.0 * self.aa(self.aux(h)).sum() if self.training else out

    torch.manual_seed(0)
    model = AuxNet()
    layers = [WatchedLayer("l1", "linear", model.l1, (model.a1, "in"), (model.a1, "out"), activation_of(model.a1)),
              WatchedLayer("aux", "linear", model.aux, (model.aa, "in"), (model.aa, "out"), activation_of(model.aa)),
              WatchedLayer("output", "output", model.head, (model.head, "out"), (model.head, "out"), None)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    events = []
    for device_path in (False, True):
        probe = LayerProbe(model, layers, opt, torch.randn(64, 4))
        summariser = Summariser(layers, 16)
        summariser.device_path = device_path
        with probe.capturing(0, full=True) as taken:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        events.append([layer["stats"]["dead_frac"] for layer in summariser.summarise(taken.capture)["layers"]])
        probe.remove()
    assert events[0] == events[1] and events[0][1] == 1.0


@pytest.mark.parametrize("init, activation", [("he_normal", "relu"), ("zeros", "sigmoid"), ("small_normal", "tanh")])
def test_the_gpu_path_gives_the_cpu_paths_event(init, activation):
    # Zero init makes constant tensors (a padded range), ReLU puts half a layer at the lower bound, and a
    # NaN makes a tensor's histogram all zeros: the two ways of counting agree on each, to the last count.
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=4, width=32, init=init, activation=activation), (10,), 3)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    cap, _ = captured(model, x, y, bins=32)
    cap.pre[1] = cap.pre[1].clone()
    cap.pre[1][3, 4] = float("nan")
    events = []
    for device_path in (False, True):
        summariser = Summariser(layers_of_net(model), 32)
        summariser.device_path = device_path
        events.append(summariser.summarise(cap))
    for cpu, gpu in zip(events[0]["layers"], events[1]["layers"], strict=True):
        assert cpu["hist"] == gpu["hist"]
        for name in STAT_NAMES:
            a, b = cpu["stats"][name], gpu["stats"][name]
            assert (a is None) == (b is None) and (a is None or a == pytest.approx(b, rel=1e-6, abs=1e-9)), name
    assert sum(events[1]["layers"][1]["hist"]["preact"]["counts"]) == 0
    assert sum(events[1]["layers"][1]["hist"]["act"]["counts"]) == 64 * 32


def test_precision_of_std_when_mean_dwarfs_spread():
    # A deep sigmoid layer: every value near 0.5, spread 1e-5. A one-pass E[x^2] - E[x]^2 in float32 gives 0.
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=1, width=64), (8,), 2)
    cap, _ = captured(model, torch.randn(64, 8), torch.randint(0, 2, (64,)))
    tight = 0.5 + 1e-5 * torch.randn(64, 64)
    cap.act[0] = tight
    event = Summariser(layers_of_net(model), 16).summarise(cap)
    assert event["layers"][0]["stats"]["act_std"] == pytest.approx(tight.double().std(correction=0).item(), rel=1e-2)


def duplicate_fraction(w: torch.Tensor) -> float:
    out = np.empty(1)
    w = w.contiguous()
    compiled.duplicate_fractions(compiled.tensor_table([w], [w.shape[0]]), kernels.hash_vector(w.shape[1]), out)
    gpu = float(kernels.duplicate_fractions(w[None])[0])
    assert gpu == pytest.approx(out[0])
    return float(out[0])


def test_duplicate_fraction_counts_units_sharing_incoming_weights():
    w = torch.randn(6, 5)
    assert duplicate_fraction(w) == 0
    w[1] = w[0]
    w[4] = w[0]
    w[3] = w[2]
    assert duplicate_fraction(w) == pytest.approx(5 / 6)
    assert duplicate_fraction(torch.zeros(10, 3)) == 1.0


def test_constant_tensor_gets_a_narrow_range_and_all_counts_in_one_bin():
    lo, hi = bounds(0.0, 0.0)
    assert lo < 0 < hi
    counts, _ = np.histogram(np.zeros(10), bins=8, range=(lo, hi))
    assert counts.max() == 10


def _hooks(model):
    return sum(len(b.act._forward_hooks) for b in model.blocks) + len(model.head._forward_hooks)


def test_probe_hooks_exist_only_while_armed_and_removal_is_safe_twice():
    model = build_model(ModelConfig(depth=2, width=4), (3,), 2)
    probe = LayerProbe(model, layers_of_net(model)[1:])  # not the whole net: read through hooks
    assert _hooks(model) == 0  # an ordinary step runs no hook
    probe.arm(0)
    assert sum(len(b.act._forward_hooks) for b in model.blocks) == 1
    assert len(model.head._forward_hooks) == 1
    assert probe.finish() is None  # armed, but no step ran
    assert _hooks(model) == 0
    probe.arm(1)
    probe.remove()
    probe.remove()
    assert _hooks(model) == 0


def test_the_engine_net_watched_whole_is_read_by_its_recorder_only_while_armed():
    model = build_model(ModelConfig(depth=2, width=4), (3,), 2)
    probe = LayerProbe(model, layers_of_net(model))
    probe.arm(0)
    assert model.recorder is probe.taps and _hooks(model) == 0
    assert probe.finish() is None
    assert model.recorder is None
    probe.arm(1)
    probe.remove()
    probe.remove()
    assert model.recorder is None and _hooks(model) == 0


@pytest.mark.parametrize("model_config, shape", [
    ({"batchnorm": False}, (4,)), ({"batchnorm": True}, (4,)),
    ({"dropout": 0.5, "dropout_mode": "classic"}, (4,)),  # the probe set's pass scales by p as evaluation does
    ({"arch": "cnn"}, (1, 8, 8)),                          # and pools where the forward pools
], ids=["mlp", "batchnorm", "classic-dropout", "cnn"])
def test_the_recorder_gives_the_events_hooks_give(model_config, shape):
    """The same steps captured through the net's recorder and its own pass of the probe set, and through
    forward hooks: the same events."""
    events = []
    for direct in (True, False):
        torch.manual_seed(0)
        # (ReLU with a negative bias: some units are dead on the probe set and some not, so its pass shows)
        model = build_model(ModelConfig(**{"depth": 3, "width": 8, "bias_init": -0.2, **model_config}), shape, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        layers = layers_of_net(model)
        probe = LayerProbe(model, layers, opt, torch.randn(40, *shape))
        probe.taps._direct = probe.probe_set._direct = direct
        summariser, got = Summariser(layers, 16), []
        for step in range(6):
            x, y = torch.randn(16, *shape), torch.randint(0, 3, (16,))
            with probe.capturing(step, full=step == 0) as taken:
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            got.append(summariser.summarise(taken.capture))
        assert _hooks(model) == 0 and model.recorder is None
        events.append(got)
    assert events[0] == events[1]
    if not model_config.get("batchnorm"):  # (batchnorm leaves no unit dead)
        assert any(0 < layer["stats"]["dead_frac"] < 1 for event in events[0] for layer in event["layers"])


def test_a_validation_pass_inside_an_armed_step_is_not_recorded():
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=2, width=8), (4,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    probe = LayerProbe(model, layers_of_net(model), opt)
    with probe.capturing(0) as taken:
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            model(torch.randn(100, 4))  # an eval pass between backward and step
        opt.step()
    assert taken.capture.pre[0].shape[0] == 16


def test_weight_summaries_refresh_every_fourth_capture_and_say_when():
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=2, width=8), (4,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    layers = layers_of_net(model)
    probe, summariser = LayerProbe(model, layers, opt), Summariser(layers, 8)
    events = [captured(model, x, y, opt=opt, step=step, probe=probe, summariser=summariser)[1] for step in range(9)]
    taken = [e["layers"][0]["hist"]["weight"]["step"] for e in events]
    assert taken == [0, 0, 0, 0, 4, 4, 4, 4, 8]
    assert all(e["layers"][0]["weight_step"] == t for e, t in zip(events, taken, strict=True))
    assert events[4]["layers"][0]["hist"]["weight"] != events[0]["layers"][0]["hist"]["weight"]
    assert all(e["layers"][0]["hist"]["act"]["step"] == i for i, e in enumerate(events))  # the rest every time


@pytest.mark.parametrize("bins", [8, 20, 32, 128])
def test_compiled_histograms_match_numpy_on_hard_cases(bins):
    """Values exactly on edges, ReLU zeros at the lower bound, a constant (a padded range), a tight
    spread about a large mean, more values than one block, NaN and inf."""
    gen = torch.Generator().manual_seed(0)
    cases = [torch.randn(10_000, generator=gen), torch.relu(torch.randn(4097, generator=gen)), torch.full((50,), 2.0),
             torch.randn(301, generator=gen) * 1e-3 + 5, torch.arange(-100, 100) / 7, torch.linspace(-1, 1, bins + 1),
             torch.randn(9999, generator=gen) * 1e4 + 1e4, torch.zeros(7), torch.tensor([1.0, float("nan"), 3.0]),
             torch.tensor([1.0, float("inf")])]
    counts = np.zeros((len(cases), bins), np.int64)
    out = np.zeros((len(cases), 5))
    compiled.summarise(compiled.tensor_table(cases, [1] * len(cases)), bins, counts, out)
    for t, got, row in zip(cases, counts.tolist(), out.tolist(), strict=True):
        if not torch.isfinite(t).all():
            assert got == [0] * bins and row[:2] == [0.0, 0.0]
            continue
        lo, hi, expected = by_hand_hist(t, bins)
        assert got == expected.tolist() and row[:2] == [lo, hi]
        a = t.double().numpy()
        assert row[2] == pytest.approx(a.mean(), rel=1e-9, abs=1e-9) and row[3] == pytest.approx(a.std(), rel=1e-6, abs=1e-12)


def test_the_registrys_activations_are_known_to_the_kernels_as_the_registry_describes_them():
    for entry in ACTIVATIONS:
        act = activation_of(make_activation(entry.name, 0.1))
        assert act is not None, entry.name
        assert act.saturating == entry.meta.get("saturating", False), entry.name
        z = torch.linspace(-6, 6, 1201, dtype=torch.float64, requires_grad=True)
        a = make_activation(entry.name, 0.1)(z)
        (grad,) = torch.autograd.grad(a.sum(), z)
        from deepscope.engine.telemetry.layers import slope_of

        closed = slope_of(act.code, z.detach(), a.detach(), act.param)
        keep = z.detach().abs() > 1e-3  # the kink of ReLU-like functions
        assert torch.allclose(closed[keep], grad[keep], atol=1e-6), entry.name


def test_a_second_summary_thread_gives_the_same_events_and_is_used_only_on_an_accelerator(run_engine):
    """On the CPU the summary runs on the training thread by default; on a second thread (a GPU's default)
    every layers event is the same, in the same order."""
    from deepscope.engine.telemetry.session import on_accelerator

    config = {"data": {"dataset": "moons", "n_samples": 300}, "model": {"depth": 3, "width": 16},
              "train": {"epochs": 5}, "telemetry": {"every_steps": 1, "max_per_second": 0, "budget": 0}}
    events = {mode: [e for e in run_engine(config, background_telemetry=mode)[1] if e["type"] == "layers"]
              for mode in (None, True)}
    strip = [[{k: v for k, v in e.items() if k not in ("t", "ts", "seq")} for e in events[mode]] for mode in events]
    assert len(strip[0]) > 10
    assert strip[0] == strip[1]
    assert not on_accelerator(torch.nn.Linear(2, 2))


def test_a_weight_replaced_by_one_of_another_size_gets_new_snapshots_not_a_copy_past_the_old_ones():
    """The weights before an update are copied by a compiled kernel through raw addresses: a weight that
    no longer fits its snapshot (pruned, grown, moved) must get a new snapshot, never a copy past it."""
    from deepscope.engine.telemetry.probe import _copy_weights

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    weights = [model[0].weight, model[2].weight]
    snapshots = [w.detach().clone() for w in weights]
    tables: dict = {}
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    assert _copy_weights(weights, snapshots, tables) and torch.equal(snapshots[0], model[0].weight)
    model[0].weight = torch.nn.Parameter(torch.randn(16, 4))  # grown: the old snapshot holds 32 values
    guard = snapshots[0].clone()
    assert not _copy_weights([model[0].weight, model[2].weight], snapshots, tables)
    assert torch.equal(snapshots[0], guard)
