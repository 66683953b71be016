"""A queued run's first look (engine.loop.first_look): its step 0 ahead of its training, the same numbers
the training computes, and a training continued after it that sends nothing twice."""

from __future__ import annotations

from deepscope.engine.loop import first_look, train

CONFIG = {"model": {"depth": 4, "width": 16, "dropout": 0.8}, "train": {"epochs": 2, "seed": 3}}
OTHER = {"model": {"depth": 6, "width": 32, "activation": "tanh"}, "train": {"epochs": 1, "seed": 9}}
VOLATILE = ("seq", "t", "ts")


def comparable(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in VOLATILE}


def test_a_first_look_shows_the_step_0_its_training_computes(tmp_path):
    looked: list[dict] = []
    n, whole = first_look(CONFIG, looked.append, data_dir=tmp_path)
    assert whole and n == len(looked) and [e["seq"] for e in looked] == list(range(n))
    status = looked[0]
    assert status["type"] == "status" and status["status"] == "queued" and status["first_look"]
    assert {"layers", "config", "total_steps", "points"} <= set(status)
    assert {e["type"] for e in looked[1:]} >= {"step", "layers", "boundary"}
    assert all(e["step"] == 0 for e in looked[1:])
    trained: list[dict] = []
    train(CONFIG, trained.append, data_dir=tmp_path)
    step0 = [comparable(e) for e in trained if e.get("step") == 0 and e["type"] != "status"]
    by_type = lambda events: sorted(events, key=lambda e: e["type"])  # noqa: E731 - the capture is summarised on its own thread in training
    assert by_type(comparable(e) for e in looked[1:]) == by_type(step0)


def test_the_training_after_a_first_look_goes_on_from_it_and_sends_nothing_twice(tmp_path):
    looked: list[dict] = []
    n, _ = first_look(CONFIG, looked.append, data_dir=tmp_path)
    resumed: list[dict] = []
    result = train(CONFIG, resumed.append, data_dir=tmp_path, resume_seq=n, first_step_shown=True)
    plain: list[dict] = []
    expected = train(CONFIG, plain.append, data_dir=tmp_path)
    assert [e["seq"] for e in resumed] == list(range(n, n + len(resumed)))
    assert resumed[0]["status"] == "running"
    assert not [e for e in resumed if e.get("step") == 0 and e["type"] != "status"]
    evals = lambda es: [comparable(e) for e in es if e["type"] == "eval"]  # noqa: E731 - loss points are paced by time
    assert evals(resumed) == evals(plain)
    for key in ("val_acc", "val_loss", "train_loss"):
        assert result["summary"][key] == expected["summary"][key]


def test_a_first_look_between_steps_leaves_the_training_it_interrupts_unchanged(tmp_path):
    """Dropout draws from torch's global random stream; a first look in the middle must not move it."""
    calls = 0

    def look_at_step_5() -> bool:
        nonlocal calls
        calls += 1
        if calls == 6:
            first_look(OTHER, lambda e: None, data_dir=tmp_path)
        return False

    interrupted = train(CONFIG, lambda e: None, look_at_step_5, data_dir=tmp_path)
    alone = train(CONFIG, lambda e: None, data_dir=tmp_path)
    assert calls > 6
    assert interrupted["summary"]["val_loss"] == alone["summary"]["val_loss"]
    assert interrupted["summary"]["train_loss"] == alone["summary"]["train_loss"]


def test_a_first_look_inside_an_evaluation_still_trains_its_step(tmp_path):
    """The worker serves first looks from should_stop, which an evaluation asks under no_grad."""
    import torch

    looked: list[dict] = []
    with torch.no_grad():
        n, whole = first_look(CONFIG, looked.append, data_dir=tmp_path)
    assert whole and any(e["type"] == "layers" for e in looked)
