"""Every histogram and statistic equals the same number computed by hand on the same tensor."""

import numpy as np
import pytest
import torch

from deepscope.engine.config import ModelConfig
from deepscope.engine.models import build_model
from deepscope.engine.telemetry import STAT_NAMES, LayerProbe, bounds, duplicate_fraction


def armed_step(model, probe, x, y, lr=0.1, opt=None, step=0):
    """One training step with the probe armed; returns the capture and its layers event."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=lr)
    probe.armed = True
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    probe.before_step()
    opt.step()
    cap = probe.take(step)
    return cap, probe.summarise(cap)


def by_hand_hist(t, bins):
    a = t.detach().double().numpy().ravel()
    lo, hi = bounds(float(a.min()), float(a.max()))
    counts, _ = np.histogram(a, bins=bins, range=(lo, hi))
    return lo, hi, counts


@pytest.mark.parametrize("one_sync", [False, True], ids=["cpu-path", "gpu-path"])
@pytest.mark.parametrize("arch, shape, activation", [("mlp", (12,), "tanh"), ("mlp", (12,), "relu"),
                                                      ("cnn", (3, 8, 8), "sigmoid")])
def test_histograms_and_stats_match_numpy(arch, shape, activation, one_sync):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, depth=3, width=16, activation=activation, batchnorm=arch == "cnn")
    model = build_model(cfg, shape, 4)
    x, y = torch.randn(32, *shape), torch.randint(0, 4, (32,))
    # the derivative by hand, and the flat-tail threshold: 5% of the largest slope (1/4 for sigmoid)
    derivative = {"tanh": lambda z: 1 - np.tanh(z) ** 2, "sigmoid": lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2,
                  "relu": lambda z: (z > 0).astype(float)}[activation]
    peak = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}[activation]
    saturating = activation != "relu"
    with LayerProbe(model, bins=20, saturating=saturating) as probe:
        probe.one_sync = one_sync  # the GPU's way (one sync per capture) runs on the CPU too
        w_before = [p.detach().clone() for p in (*[b.weights.weight for b in model.blocks], model.head.weight)]
        cap, event = armed_step(model, probe, x, y)
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
        w_after = (*[b.weights.weight for b in model.blocks], model.head.weight)[i].detach().numpy()
        ratio = np.linalg.norm(w_after - w_before[i].numpy()) / np.linalg.norm(w_before[i].numpy())
        assert stats["update_ratio"] == pytest.approx(ratio, rel=1e-4)
        if layer["kind"] != "output":
            over = (0, 2, 3) if act.ndim == 4 else (0,)
            dead = (act == 0).all(axis=over).mean()
            assert stats["dead_frac"] == pytest.approx(dead)
            slope = derivative(pre)
            assert stats["slope_mean"] == pytest.approx(slope.mean(), rel=1e-3, abs=1e-6)
            sat = (np.abs(slope) < 0.05 * peak).mean() if saturating else 0.0  # units in a flat tail, per sample
            assert stats["saturated_frac"] == pytest.approx(sat)


@pytest.mark.parametrize("init, activation", [("he_normal", "relu"), ("zeros", "sigmoid"), ("small_normal", "tanh")])
def test_the_gpu_path_gives_the_cpu_paths_event(init, activation):
    # Zero init makes constant tensors (a padded range), ReLU puts half a layer at the lower bound, and a
    # NaN makes a tensor's histogram all zeros: the two ways of counting agree on each, to the last count.
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=4, width=32, init=init, activation=activation), (10,), 3)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    with LayerProbe(model, bins=32, saturating=activation != "relu") as probe:
        probe.armed = True
        torch.nn.functional.cross_entropy(model(x), y).backward()
        probe.before_step()
        cap = probe.take(0)
    cap.pre[1] = cap.pre[1].clone()
    cap.pre[1][3, 4] = float("nan")
    events = []
    for one_sync in (False, True):
        probe._weights = None
        probe.one_sync = one_sync
        events.append(probe.summarise(cap))
    assert events[0] == events[1]
    assert sum(events[1]["layers"][1]["hist"]["preact"]["counts"]) == 0
    assert sum(events[1]["layers"][1]["hist"]["act"]["counts"]) == 64 * 32


def test_precision_of_std_when_mean_dwarfs_spread():
    # A deep sigmoid layer: every value near 0.5, spread 1e-5. A one-pass E[x^2] - E[x]^2 in float32 gives 0.
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=1, width=64), (8,), 2)
    with LayerProbe(model, bins=16) as probe:
        probe.armed = True
        model(torch.randn(64, 8)).sum().backward()
        probe.before_step()
        cap = probe.take(0)
    tight = 0.5 + 1e-5 * torch.randn(64, 64)
    cap.act[0] = tight
    event = probe.summarise(cap)
    assert event["layers"][0]["stats"]["act_std"] == pytest.approx(tight.double().std(correction=0).item(), rel=1e-2)


def test_duplicate_fraction_counts_units_sharing_incoming_weights():
    w = torch.randn(6, 5)
    assert duplicate_fraction(w).item() == 0
    w[1] = w[0]
    w[4] = w[0]
    w[3] = w[2]
    assert duplicate_fraction(w).item() == pytest.approx(5 / 6)
    assert duplicate_fraction(torch.zeros(10, 3)).item() == 1.0


def test_constant_tensor_gets_a_narrow_range_and_all_counts_in_one_bin():
    lo, hi = bounds(0.0, 0.0)
    assert lo < 0 < hi
    counts, _ = np.histogram(np.zeros(10), bins=8, range=(lo, hi))
    assert counts.max() == 10


def test_probe_removes_its_hooks_twice_safely():
    model = build_model(ModelConfig(depth=2, width=4), (3,), 2)
    probe = LayerProbe(model, bins=8).attach()
    assert sum(len(b.act._forward_hooks) for b in model.blocks) == 0  # an ordinary step runs no hook
    probe.armed = True
    assert sum(len(b.act._forward_hooks) for b in model.blocks) == 2
    assert len(model.head._forward_hooks) == 1
    probe.armed = False
    assert sum(len(b.act._forward_hooks) for b in model.blocks) == 0
    probe.armed = True
    probe.remove()
    probe.remove()
    assert sum(len(b.act._forward_hooks) for b in model.blocks) == 0
    assert len(model.head._forward_hooks) == 0


def test_weight_summaries_refresh_every_fourth_capture_and_say_when():
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=2, width=8), (4,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    events = []
    with LayerProbe(model, bins=8) as probe:
        for step in range(9):
            events.append(armed_step(model, probe, x, y, opt=opt, step=step)[1])
    taken = [e["layers"][0]["hist"]["weight"]["step"] for e in events]
    assert taken == [0, 0, 0, 0, 4, 4, 4, 4, 8]
    assert all(e["layers"][0]["weight_step"] == t for e, t in zip(events, taken, strict=True))
    assert events[4]["layers"][0]["hist"]["weight"] != events[0]["layers"][0]["hist"]["weight"]
    assert all(e["layers"][0]["hist"]["act"]["step"] == i for i, e in enumerate(events))  # the rest every time


def test_histograms_split_across_chunks_still_match_numpy(monkeypatch):
    """Small chunks force every case of the chunked count: a tensor split over several chunks, several
    equal-size tensors in one chunk (rows of one matrix), an odd size, ReLU zeros, NaN and a constant."""
    from deepscope.engine.telemetry import kernels

    monkeypatch.setattr(kernels, "HIST_CHUNK", 1000)
    gen = torch.Generator().manual_seed(0)
    flat = [torch.randn(2500, generator=gen), *[torch.relu(torch.randn(300, generator=gen)) for _ in range(4)],
            torch.randn(301, generator=gen) * 1e-3 + 5, torch.full((50,), 2.0), torch.tensor([1.0, float("nan"), 3.0]),
            torch.rand(999, generator=gen)]
    ranges = kernels.all_bounds(flat)
    counts = kernels.batched_histograms(flat, ranges, 16, kernels.HistogramBuffers())
    for t, got in zip(flat[:-2] + flat[-1:], counts[:-2] + counts[-1:], strict=True):
        assert got == by_hand_hist(t, 16)[2].tolist()
    assert counts[-2] == [0] * 16  # NaN inside: zero counts


def test_moments_of_stacked_runs_match_each_tensor():
    from deepscope.engine.telemetry import kernels

    gen = torch.Generator().manual_seed(1)
    tensors = [torch.randn(64, 8, generator=gen), *[torch.randn(512, 300, generator=gen) * k for k in (1, 2, 3)],
               torch.randn(10, generator=gen) + 1e4]
    mean, std = kernels.moments_of(tensors)
    for t, m, s in zip(tensors, mean.tolist(), std.tolist(), strict=True):
        a = t.double().numpy().ravel()
        assert m == pytest.approx(a.mean(), rel=1e-5, abs=1e-6) and s == pytest.approx(a.std(), rel=1e-4)
