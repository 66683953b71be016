"""The loop's contract: events, first capture at step 0, divergence, cancel, images and augmentation."""

import torch

from deepscope.engine.augment import augment_batch
from deepscope.engine.config import AugmentConfig
from deepscope.engine.telemetry.schedule import KEEP
from tests.conftest import layers_events


def test_events_follow_the_contract(run_engine):
    result, events = run_engine({"train": {"epochs": 2},
                                 "telemetry": {"every_steps": 7, "bins": 16, "max_per_second": 0, "budget": 0}})
    assert result["status"] == "completed"
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "status" and events[0]["status"] == "running"
    assert events[0]["config"]["telemetry"]["bins"] == 16
    assert events[-1]["type"] == "status" and events[-1]["status"] == "completed"
    layers = layers_events(events)
    total = events[0]["total_steps"]
    steps = [e["step"] for e in layers]
    # the evenly spread floor (50 captures: here every step) and, without a budget, every 7th step
    assert steps[0] == 0 and steps[-1] == total - 1 and steps == sorted(set(steps))
    assert len(steps) >= min(50, total) and set(range(0, total, 7)) <= set(steps)
    for layer in layers[0]["layers"]:
        assert set(layer["hist"]) == {"preact", "act", "grad", "weight"}
        assert all(len(h["counts"]) == 16 for h in layer["hist"].values())
    assert layers[0]["layers"][-1]["kind"] == "output"
    assert sum(e["type"] == "eval" for e in events) == 2
    assert any(e["type"] == "boundary" for e in events)
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(result["summary"])


def test_first_capture_is_at_step_zero_whatever_every_steps(run_engine):
    _, events = run_engine({"train": {"epochs": 1}, "telemetry": {"every_steps": 1000, "captures": 2}})
    last = events[-1]["summary"]["step"] - 1
    assert [e["step"] for e in layers_events(events)] == [0, last]  # the first and the final state, always
    _, events = run_engine({"train": {"epochs": 1}, "telemetry": {"every_steps": 0}})
    assert layers_events(events) == [] and any(e["type"] == "step" for e in events)


def test_capture_rate_is_capped_in_time(run_engine):
    _, events = run_engine({"model": {"depth": 3}, "train": {"epochs": 80},
                            "telemetry": {"every_steps": 1, "max_per_second": 5, "budget": 0, "captures": 2}})
    layers = layers_events(events)
    duration = events[-1]["t"] - events[0]["t"]
    assert layers[0]["step"] == 0 and len(layers) <= duration * 5 + 2
    regular = layers[:-1]  # the last step's capture comes whatever the rate: the run's final state
    gaps = sorted(b["t"] - a["t"] for a, b in zip(regular, regular[1:], strict=False))
    # 1/5 s between captures. An event's time is when its summary was emitted, on the summary thread: one
    # delayed summary on a busy machine makes the next gap short, so the typical gap is what is checked.
    assert gaps[len(gaps) // 2] >= 0.15
    _, events = run_engine({"model": {"depth": 3}, "train": {"epochs": 2},
                            "telemetry": {"every_steps": 1, "max_per_second": 0, "budget": 0}})
    assert len(layers_events(events)) == events[-1]["summary"]["step"]


def test_divergence_is_a_result_with_its_step(run_engine):
    result, events = run_engine({"model": {"depth": 10}, "train": {"lr": 10.0, "epochs": 3}})
    assert result["status"] == "diverged"
    assert events[-1]["status"] == "diverged" and isinstance(events[-1]["step"], int)
    assert result["summary"]["diverged_step"] == events[-1]["step"]


def test_cancel_lands_within_one_step(tmp_path):
    from deepscope.engine import train

    events: list[dict] = []
    steps = []

    def should_stop():  # asked before every step (and between the phases before the first)
        if events:  # the run has started: from here on, once a step
            steps.append(1)
        return len(steps) > 5

    result = train({"train": {"epochs": 50}}, events.append, should_stop, data_dir=tmp_path)
    assert result["status"] == "cancelled" and events[-1]["step"] == 5
    assert max(e.get("step", 0) for e in events if e["type"] == "step") <= 4


def test_failure_is_reported_as_an_event(run_engine):
    result, events = run_engine({"data": {"dataset": "mnist"}})
    assert result["status"] == "failed" and "train-images-idx3-ubyte" in result["error"]
    assert events[-1]["status"] == "failed"


def test_cnn_on_shapes_with_augmentation_emits_samples(run_engine):
    result, events = run_engine({"data": {"dataset": "shapes", "n_samples": 200},
                                 "model": {"arch": "cnn", "depth": 3, "width": 8, "batchnorm": True},
                                 "augment": {"hflip": True, "rotate_deg": 30, "color_shift": 0.2, "scale": 0.2},
                                 "train": {"epochs": 2, "batch_size": 32}})
    assert result["status"] == "completed"
    samples = [e for e in events if e["type"] == "samples"]
    assert len(samples) == 2 and samples[0]["images"][0].startswith("data:image/png;base64,")
    assert [layer["kind"] for layer in layers_events(events)[0]["layers"]] == ["conv"] * 3 + ["output"]


def test_augmentation_flips_exactly_and_leaves_validation_untouched():
    x = torch.randn(64, 3, 8, 8)
    out = augment_batch(x, AugmentConfig(hflip=True), torch.Generator().manual_seed(0))
    flipped = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    assert (flipped | same).all() and 10 < flipped.sum() < 54
    assert augment_batch(x, AugmentConfig(), torch.Generator()) is x


def test_rotation_and_colour_shift_are_per_sample():
    x = torch.zeros(16, 3, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0
    out = augment_batch(x, AugmentConfig(rotate_deg=90, color_shift=0.5), torch.Generator().manual_seed(1))
    per_sample = out.flatten(1)
    assert not torch.allclose(per_sample[0], per_sample[1])
    shift = out[:, :, 0, 0]  # a background pixel: only the colour shift moves it
    assert shift.abs().max() <= 0.5 + 1e-6 and shift.std() > 0.05


def test_the_budget_spaces_extra_captures_and_the_summary_reports_the_share(run_engine):
    # Capturing every step with no rate cap: only the budget stands between the run and a capture a step.
    config = {"data": {"dataset": "digits"}, "model": {"depth": 10, "width": 64}, "train": {"epochs": 40},
              "telemetry": {"every_steps": 1, "max_per_second": 0, "budget": 0.03, "captures": 2}}
    result, events = run_engine(config, background_telemetry=False)
    steps = result["summary"]["step"]
    captured = [e["step"] for e in layers_events(events)]
    assert captured[0] == 0 and captured[-1] == steps - 1  # the first and the final state, always
    assert 2 <= len(captured) < steps / 3
    assert result["summary"]["telemetry_share"] <= 0.03 * 1.5  # within the budget (one capture's cost over)
    assert result["summary"]["capture_rate"] > 0 and result["summary"]["captures"] == len(captured)
    assert "telemetry_note" not in result["summary"]
    unlimited, events = run_engine({**config, "telemetry": {**config["telemetry"], "budget": 0}},
                                   background_telemetry=False)
    # no budget: a capture on every step of the grid a run keeps at most KEEP captures on
    assert steps / 2 <= len(layers_events(events)) <= KEEP + 2 and unlimited["summary"]["telemetry_share"] > 0.03


def test_the_density_floor_is_kept_over_a_tight_budget_and_the_summary_says_so(run_engine):
    config = {"data": {"dataset": "digits"}, "model": {"depth": 10, "width": 64}, "train": {"epochs": 10},
              "telemetry": {"budget": 0.001}}
    result, events = run_engine(config, background_telemetry=False)
    captured = [e["step"] for e in layers_events(events)]
    assert len(captured) == 50 == result["summary"]["captures"]
    assert "telemetry.budget" in result["summary"]["telemetry_note"]


def test_the_workers_limits_are_asked_in_every_phase_not_only_between_steps(tmp_path):
    """A worker's memory limit raises from should_stop: it must be asked while the data loads, the model
    is built and the epoch is evaluated, where a run's memory grows too."""
    from deepscope.engine import train

    events: list[dict] = []
    asked: list[tuple[int, str | None]] = []  # (events sent so far, the type of the last one)

    def should_stop() -> bool:
        asked.append((len(events), events[-1]["type"] if events else None))
        return False

    train({"train": {"epochs": 2}}, events.append, should_stop, data_dir=tmp_path, background_telemetry=False)
    assert sum(1 for n, _ in asked if n == 0) >= 2  # before the first event: loading, then building
    first_eval = next(i for i, e in enumerate(events) if e["type"] == "eval")
    during_eval = [n for n, _ in asked if n == first_eval]
    assert during_eval and events[first_eval - 1]["type"] != "eval"  # asked after the epoch's last step, before its eval


def test_a_memory_limit_passed_while_evaluating_fails_the_run_with_its_reason(tmp_path):
    from deepscope.app.executors import MemoryLimitExceeded
    from deepscope.engine import train

    events: list[dict] = []

    def should_stop() -> bool:
        if any(e["type"] == "step" and e.get("progress", 0) >= 0.5 for e in events):  # the first epoch's end
            raise MemoryLimitExceeded("the run used 9999 MB, over this server's limit")
        return False

    result = train({"train": {"epochs": 2}}, events.append, should_stop, data_dir=tmp_path)
    assert result["status"] == "failed" and "over this server's limit" in result["error"]
    assert not [e for e in events if e["type"] == "eval"]  # it failed inside the first evaluation


def test_the_nets_train_and_eval_reach_every_module():
    """``Net.train`` writes the flags itself: every module follows, and dropout and batchnorm behave."""
    from deepscope.engine.config import ModelConfig
    from deepscope.engine.models import build_model

    net = build_model(ModelConfig(depth=3, width=8, batchnorm=True, dropout=0.5), (4,), 2)
    x = torch.randn(16, 4)
    assert net.eval() is net and not any(m.training for m in net.modules())
    assert torch.equal(net(x), net(x))  # dropout off, batchnorm on its running averages
    net.train()
    assert all(m.training for m in net.modules())
    assert not torch.equal(net(x), net(x))  # dropout on again
