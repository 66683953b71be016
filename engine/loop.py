"""The training loop: ``train(config, emit, should_stop)`` is the engine's one entry point.

It runs anywhere (a notebook, a test, a worker process), knows nothing of the web and reports
everything through ``emit(event)``: plain dicts, numbered by ``seq`` from 0, as the contract's
section 3 describes. A run ends in one terminal status: completed, diverged (a NaN or inf loss:
a result, not a crash), cancelled (``should_stop()`` said so) or failed (an exception).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import torch
from torch.nn import functional as F

from deepscope.engine.augment import augment_batch
from deepscope.engine.config import RunConfig
from deepscope.engine.datasets import DataSplit, load_dataset
from deepscope.engine.devices import pick_device
from deepscope.engine.doctor import Doctor
from deepscope.engine.doctor.nonfinite import first_nonfinite_layer
from deepscope.engine.events import EventType, Status, status_event
from deepscope.engine.memory import eval_chunk
from deepscope.engine.models import batch_statistics, build_model
from deepscope.engine.optimizers import make_optimizer
from deepscope.engine.paths import default_data_dir
from deepscope.engine.preview import SAMPLES, boundary_event, samples_event, training_points
from deepscope.engine.storage import StorageCap
from deepscope.engine.telemetry import Settings, Telemetry, layers_of_net, probe_summary
from deepscope.engine.telemetry.schedule import evenly_spread
from deepscope.engine.telemetry.units import probe_size
from deepscope.engine.theory import predicted_preact_std
from deepscope.engine.threads import release_kept_memory

Emit = Callable[[dict[str, Any]], None]
log = logging.getLogger("deepscope.engine")
MAX_STEP_EVENTS = 2000      # loss points per run; more only cost storage and bandwidth
STEP_EVENT_INTERVAL_S = 0.05  # and at most 20 a second: a page redraws a few times a second, and every
                              # step event goes to every viewer (100 viewers x 800 steps/s would be 80k sends/s)
# Boundaries a run draws, evenly spread (the capture floor's 50): a boundary event is 18 KB of JSON, and at
# four an epoch they were three quarters of what a lesson run stored and sent (benchmarks/workshop.py)
MAX_BOUNDARIES = 50
EVAL_TRAIN_SAMPLES = 2048   # training-set metrics are measured on a fixed subset in eval mode
EVAL_CHUNK = 1024


class _Emitter:
    """Numbers events and stamps them with seconds since the start (``t``) and the wall clock (``ts``, for
    measuring delivery latency); safe to call from two threads. ``seq`` is where numbering starts (after
    a first look's events); ``first_step_shown``: a first look sent step 0's events already, so the
    training's own, which are the same numbers, are not sent again."""

    def __init__(self, emit: Emit, seq: int = 0, first_step_shown: bool = False) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self.seq = seq
        self.skip_first_step = first_step_shown
        self.t0 = time.monotonic()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.skip_first_step and event.get("step") == 0 and event["type"] != EventType.STATUS.value:
            return
        with self._lock:
            event = {"seq": self.seq, **event, "t": round(time.monotonic() - self.t0, 4), "ts": round(time.time(), 4)}
            self.seq += 1
            self._emit(event)


class _Pacing:
    """When a step sends a loss point: every ``step_every`` steps, at most one per STEP_EVENT_INTERVAL_S;
    step 0 and each epoch's last step always. (When a step is captured is the telemetry schedule's call.)"""

    def __init__(self, step_every: int) -> None:
        self.step_every = step_every
        self.last_step_event = -1.0

    def step_event(self, step: int, last_of_epoch: bool) -> bool:
        now = time.monotonic()
        if (step % self.step_every == 0 and now - self.last_step_event >= STEP_EVENT_INTERVAL_S) \
                or step == 0 or last_of_epoch:
            self.last_step_event = now
            return True
        return False


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches an epoch takes; a last batch of one sample would break batchnorm and adds nothing: dropped."""
    bs = min(batch_size, n_train)
    return n_train // bs + (1 if n_train % bs >= 2 else 0)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             between: Callable[[], object] = lambda: None, chunk: int = EVAL_CHUNK) -> tuple[float, float]:
    """Loss and accuracy in eval mode, ``chunk`` samples at a time; ``between`` is called before each (the
    worker's limits)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), chunk):
        between()
        logits = model(x[i:i + chunk])
        loss_sum += float(F.cross_entropy(logits, y[i:i + chunk], reduction="sum"))
        correct += int((logits.argmax(1) == y[i:i + chunk]).sum())
    model.train()
    return loss_sum / len(x), correct / len(x)


@torch.no_grad()
def evaluate_batch_statistics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Accuracy with batchnorm using each batch's own statistics, as in training, instead of its running
    averages: the train-mode side of "batchnorm at test time"."""
    correct = 0
    with batch_statistics(model):
        for i in range(0, len(x) - 1, batch):  # a last batch of one sample has no variance: it is dropped
            xb, yb = x[i:i + batch], y[i:i + batch]
            if len(xb) > 1:
                correct += int((model(xb).argmax(1) == yb).sum())
    return correct / max(1, len(x) - (len(x) % batch == 1))


def train(config: RunConfig | dict[str, Any], emit: Emit, should_stop: Callable[[], bool | str] = lambda: False,
          data_dir: Path | None = None, background_telemetry: bool | None = None,
          max_stored_bytes: int | None = None, resume_seq: int = 0, first_step_shown: bool = False) -> dict[str, Any]:
    """Train one run, reporting through ``emit``. Returns the terminal status, summary and error.

    ``should_stop`` is asked before every step; a true value ends the run as cancelled, and a string
    says why (for example a time limit). ``background_telemetry`` summarises layer captures on a
    second thread while training goes on (``Telemetry``); None, the default, does so on an accelerator
    only (on the CPU the second thread costs more than it saves); False keeps the whole run on the
    calling thread. ``max_stored_bytes`` caps what its heavy events weigh: past it they thin evenly
    over the steps left (engine/storage.py). ``resume_seq`` and ``first_step_shown`` continue after a
    ``first_look`` of the same run.
    """
    out = _Emitter(emit, resume_seq, first_step_shown)
    summary: dict[str, Any] = {}
    run: _Run | None = None
    try:
        cfg = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
        run = _Run(cfg, out, summary, data_dir or default_data_dir(), max_stored_bytes, should_stop)
        status, message, extra = run.execute(should_stop, background_telemetry)
        summary["findings"] = run.doctor.final(status.value, summary.get("diverged_step"), run.nonfinite_layer)
    except Exception as exc:  # a run's failure is reported as an event, never raised into the worker
        # The event is public (every viewer gets it): one line. The traceback goes to the worker's log.
        log.exception("run failed")
        status, message, extra = Status.FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0][:300], {}
    out(status_event(status, message, summary=summary, **extra))
    run = None  # its tensors freed, the memory they leave goes back (engine/threads.py)
    release_kept_memory()
    return {"status": status.value, "summary": summary, "error": message if status == Status.FAILED else None}


def first_look(config: RunConfig | dict[str, Any], emit: Emit, data_dir: Path | None = None) -> tuple[int, bool]:
    """A queued run's step 0, ahead of its training, so that a student sees their network at once while
    it waits for a worker: a ``queued`` status with what a ``running`` one says, then step 0's loss
    point, capture and boundary. They are the numbers its training will compute at step 0 (same seed,
    same first batch); ``train(..., resume_seq=n, first_step_shown=True)`` then continues without
    sending them twice. It runs between the steps of another training, whose random stream it leaves
    as it was. Returns the number of events sent, and whether they are the whole of step 0 (not if it
    failed part-way: the training then fails with its reason, and sends its step 0 itself).
    """
    out = _Emitter(emit)
    # (between the steps, or inside an evaluation's no_grad: a first look trains a step, so it needs grad)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        try:
            cfg = config if isinstance(config, RunConfig) else RunConfig.model_validate(config)
            _Run(cfg, out, {}, data_dir or default_data_dir()).first_step()
        except Exception:  # a first look only shows; the training reports the failure
            log.exception("the first look failed")
            return out.seq, False
    return out.seq, True


class _Run:
    """One run's state; ``execute`` is the loop."""

    def __init__(self, cfg: RunConfig, out: _Emitter, summary: dict[str, Any], data_dir: Path,
                 max_stored_bytes: int | None = None, should_stop: Callable[[], bool | str] = lambda: False) -> None:
        # Asked between the phases too (loading, building, evaluating), where only its limits count: a
        # worker's memory limit raises from it wherever the run grows, not only between steps.
        self.limits = should_stop
        # 1) reproducibility, device, data
        self.cfg, self.out, self.summary = cfg, out, summary
        torch.manual_seed(cfg.train.seed)
        self.device = pick_device(cfg.train.device)
        self.data: DataSplit = load_dataset(cfg.data, cfg.train.seed, data_dir).to(self.device)
        self.limits()
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.train.seed)
        self.preview_gen = torch.Generator(device="cpu").manual_seed(cfg.train.seed)  # the training's own stays untouched

        # 2) model, optimizer, schedule of events
        self.model = build_model(cfg.model, self.data.input_shape, self.data.n_classes)
        if self.device.type != "cpu":  # (built on the CPU: moving there would still walk every parameter)
            self.model.to(self.device)
        self.model.train()
        self.limits()
        self.optimizer = make_optimizer(self.model.parameters(), cfg.train, fused=True)
        self.n_train = len(self.data.y_train)
        self.bs = min(cfg.train.batch_size, self.n_train)
        self.steps_per_epoch = steps_per_epoch(self.n_train, self.bs)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.step_every = max(1, math.ceil(self.total_steps / MAX_STEP_EVENTS))
        # The decision boundary at the steps the capture floor takes (the slider's own steps, so the boundary
        # shown is the shown step's), and once more after the last update
        self.boundary_steps = evenly_spread(self.total_steps, MAX_BOUNDARIES) if self.data.kind == "points" else frozenset()
        self.cap = StorageCap(max_stored_bytes, self.total_steps)
        self.eval_chunk = eval_chunk(cfg, self.data.input_shape)  # the widest layer's outputs stay bounded
        self.cpu0 = time.process_time()
        self.eval_idx = torch.randperm(self.n_train, generator=self.gen)[:EVAL_TRAIN_SAMPLES].to(self.device)
        self.doctor = Doctor(self.data.n_classes, out)
        self.nonfinite_layer: str | None = None
        self.last_layers: list[dict[str, Any]] | None = None  # the newest capture's

    def _started(self, status: Status, message: str, **extra: Any) -> dict[str, Any]:
        """The status event a page draws the run from: its config, its layers, its data."""
        cfg, data = self.cfg, self.data
        # The config without its name: one training's events serve every run that shares it, and a run's
        # name is its owner's (each run's own config and name are on its row).
        return status_event(status, message, **{
            "config": cfg.model_dump(exclude={"name"}), "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch, "device": self.device.type,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "layers": self.model.layer_names(), "input_shape": list(data.input_shape),
            "classes": data.classes, "n_train": self.n_train, "n_val": len(data.y_val),
            **({"points": training_points(data)} if data.kind == "points" else {}), **extra})

    def _telemetry(self, background: bool | None) -> Telemetry:
        probe_x = self.data.x_train[self.eval_idx[:probe_size(self.cfg.model.arch)]]
        self.layers = layers_of_net(self.model)
        return Telemetry(self.model, self.layers, Settings.of(self.cfg.telemetry), self.total_steps,
                         self._on_layers, self.optimizer, probe_x, background, lane=self.cap["layers"])

    def first_step(self) -> None:
        """``first_look``: the events of step 0 and nothing after (the order is the training's own)."""
        self.out(self._started(Status.QUEUED, "queued: its first step is shown while it waits for a worker",
                               first_look=True))
        with self._telemetry(background=False) as self.telemetry:
            order = torch.randperm(self.n_train, generator=self.gen).to(self.device)
            self._step(0, 0, order[:self.bs], 0, _Pacing(self.step_every))

    def execute(self, should_stop: Callable[[], bool | str], background: bool | None) -> tuple[str, str, dict[str, Any]]:
        self.out(self._started(Status.RUNNING, f"training on {self.device.type}"))
        with self._telemetry(background) as self.telemetry:
            try:
                return self._epochs(should_stop)
            finally:
                try:
                    self.telemetry.wait()
                    self.summary.update(self.telemetry.report(), **self.cap.report())
                finally:
                    if self.last_layers is not None:
                        self.summary["probe_end"] = probe_summary(self.last_layers)

    def _heavy(self, kind: str, event: dict[str, Any]) -> None:
        """Emit an event the storage cap counts (engine/storage.py)."""
        self.out(event)
        if self.cap.max_bytes is not None:
            self.cap[kind].stored(len(orjson.dumps(event)))

    def _on_layers(self, event: dict[str, Any]) -> None:
        if event["step"] == 0:
            event["theory_preact_std"] = self._theory_line(event["layers"])
        self._heavy("layers", event)
        self.doctor.observe_capture(event)
        if event["step"] == 0:
            self.summary["probe_start"] = probe_summary(event["layers"])
        self.last_layers = event["layers"]  # summarised once, at the end

    def _theory_line(self, layers: list[dict[str, Any]]) -> list[float] | None:
        """What Var(z') = n Var(w) E[f(z)^2] predicts for each hidden layer's pre-activation std at step 0,
        from the layer before (engine/theory.py)."""
        m = self.cfg.model
        hidden = [layer["stats"] for layer in layers if layer["kind"] != "output"]
        keys = ("preact_mean", "preact_std", "weight_std")
        if m.arch != "mlp" or m.batchnorm or any(s[k] is None for s in hidden for k in keys):
            return None
        fan_ins = [int(math.prod(self.data.input_shape))] + [m.width] * (len(hidden) - 1)
        return predicted_preact_std(m.activation, m.leaky_slope, m.dropout, m.dropout_mode,
                                    *([s[k] for s in hidden] for k in keys), fan_ins)

    def _epochs(self, should_stop: Callable[[], bool | str]) -> tuple[str, str, dict[str, Any]]:
        cfg, step = self.cfg, 0
        pacing = _Pacing(self.step_every)
        for epoch in range(cfg.train.epochs):
            order = torch.randperm(self.n_train, generator=self.gen).to(self.device)
            for b in range(self.steps_per_epoch):
                # 3) cancel check, then one step
                stop = should_stop()
                if stop:
                    self.summary.update(step=step, epoch=epoch)
                    reason = stop if isinstance(stop, str) else "cancelled"
                    return Status.CANCELLED, f"{reason} at step {step}", {"step": step}
                ended = self._step(step, epoch, order[b * self.bs:(b + 1) * self.bs], b, pacing)
                if ended:
                    return ended
                step += 1

            # 6) validation every epoch
            if not self._validate(epoch, step):
                return Status.DIVERGED, f"training loss became non-finite by step {step}", {"step": step}
        if self.boundary_steps and self.cap["boundary"].allows(step):
            self._heavy("boundary", boundary_event(self.model, self.data, step, cfg.train.epochs - 1))
        # training speed, for comparing the cost of activations (the lecture: exp is the expensive part)
        self.summary["steps_per_s"] = round(step / max(time.monotonic() - self.out.t0, 1e-9), 1)
        # what the training cost its process (its summary thread too): a class's CPU seconds add up from it
        self.summary["cpu_s"] = round(time.process_time() - self.cpu0, 3)
        return Status.COMPLETED, f"completed {self.total_steps} steps", {}

    def _step(self, step: int, epoch: int, idx: torch.Tensor, b: int,
              pacing: _Pacing) -> tuple[str, str, dict[str, Any]] | None:
        """One training step and its events; a terminal (status, message, extra) if the loss diverged."""
        cfg, data, model, out = self.cfg, self.data, self.model, self.out
        # 4) batch; forward, loss, divergence check; backward, update (captured when the schedule says so)
        xb = augment_batch(data.x_train[idx], cfg.augment, self.gen)
        yb = data.y_train[idx]
        # the same images every epoch and in every run, augmented as the batches
        if b == 0 and data.kind == "image" and self.cap["samples"].allows(step):
            shown = augment_batch(data.x_train[:SAMPLES], cfg.augment, self.preview_gen)
            self._heavy("samples", samples_event(shown, data.y_train[:SAMPLES], data, step, epoch))
        with self.telemetry.step(step):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                self.summary.update(diverged_step=step, step=step, epoch=epoch)
                self.nonfinite_layer = first_nonfinite_layer(model, self.layers, xb)
                return Status.DIVERGED, f"loss became {loss_value} at step {step}", {"step": step}
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

        # 5) the cheap events: loss points on a step schedule, thinned by time; the boundary
        if pacing.step_event(step, last_of_epoch=b == self.steps_per_epoch - 1):
            acc = float((logits.argmax(1) == yb).float().mean())
            out({"type": EventType.STEP.value, "step": step, "epoch": epoch, "loss": loss_value, "acc": acc,
                 "progress": round((step + 1) / self.total_steps, 4)})
        if step in self.boundary_steps and self.cap["boundary"].allows(step):
            self._heavy("boundary", boundary_event(model, data, step, epoch))
        return None

    def _validate(self, epoch: int, step: int) -> bool:
        data = self.data
        train_loss, train_acc = evaluate(self.model, data.x_train[self.eval_idx], data.y_train[self.eval_idx],
                                         self.limits, self.eval_chunk)
        val_loss, val_acc = evaluate(self.model, data.x_val, data.y_val, self.limits, self.eval_chunk)
        metrics = {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc}
        if self.cfg.model.batchnorm:
            metrics["val_acc_batch_stats"] = evaluate_batch_statistics(self.model, data.x_val, data.y_val, self.bs)
        clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
        event = {"type": EventType.EVAL.value, "epoch": epoch, "step": step, **clean}
        self.out(event)
        self.doctor.observe_eval(event)
        self.summary.update(clean, step=step, epoch=epoch)
        if clean["train_acc"] is not None and clean["val_acc"] is not None:
            self.summary["gap"] = clean["train_acc"] - clean["val_acc"]  # overfitting shows as large gaps
        if clean["train_loss"] is not None and clean["val_loss"] is not None:
            self.summary["loss_gap"] = clean["val_loss"] - clean["train_loss"]
        if not math.isfinite(train_loss):
            self.summary["diverged_step"] = step
            return False
        return True
