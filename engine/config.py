"""The run configuration: one pydantic model shared by the form, the API, the CLI and the engine.

Every field has a default (so ``{}`` is a valid run), a limit and a description that says what it
does to training; the page shows the descriptions as help text and ``/api/options`` lists them.
Names of datasets, activations, inits and optimizers come from the registries, nowhere else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepscope.engine.activations import ACTIVATIONS
from deepscope.engine.datasets import DATASETS, is_image
from deepscope.engine.inits import INITS
from deepscope.engine.optimizers import OPTIMIZERS


def _choices(registry) -> Any:
    return Literal[registry.names()]  # type: ignore[valid-type]


class ConfigRuleError(ValueError):
    """A rule across fields; ``field`` is the dotted path the message is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Section(BaseModel):
    # strict: "10" is not a depth, true is not a number, "yes" is not a bool (an int is a float, though)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class DataConfig(_Section):
    dataset: _choices(DATASETS) = Field("spiral", description="which data to learn; 2-D sets show a decision boundary, image sets allow a CNN and augmentation")
    n_samples: int = Field(2000, ge=100, le=20000, description="how many samples to generate (generated sets only); fewer samples overfit sooner")
    noise: float = Field(0.1, ge=0.0, le=2.0, description="how noisy the generated samples are (generated sets only)")
    val_fraction: float = Field(0.2, ge=0.05, le=0.9, description="share of samples held out to measure generalisation")


class ModelConfig(_Section):
    arch: Literal["mlp", "cnn"] = Field("mlp", description="mlp: fully connected blocks; cnn: 3x3 conv blocks (image sets only)")
    depth: int = Field(10, ge=1, le=100, description="hidden layers (mlp) or conv blocks (cnn); deep nets show vanishing and exploding signals")
    width: int = Field(64, ge=1, le=512, description="units per hidden layer (mlp) or channels per block (cnn)")
    activation: _choices(ACTIVATIONS) = Field("relu", description="the non-linearity f after each layer; its slope decides how gradients flow back")
    leaky_slope: float = Field(0.01, ge=0.0, le=1.0, description="a in max(ax, x) for leaky_relu; a = 1 makes the whole net linear")
    init: _choices(INITS) = Field("he_normal", description="how weights start; the right scale keeps activation variance steady with depth")
    init_std: float = Field(0.03, gt=0.0, le=10.0, description="sigma of small_normal: weights are N(0,1) * sigma")
    bias_init: float = Field(0.0, ge=-10.0, le=10.0, description="starting value of every bias; a negative bias can kill ReLU units")
    batchnorm: bool = Field(False, description="normalise each pre-activation over the batch, then scale by gamma and shift by beta")
    bn_momentum: float = Field(0.1, gt=0.0, le=1.0, description="alpha of the moving averages: mu <- (1 - alpha) mu + alpha mu_batch, used at test time")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="probability of dropping a unit while training (keep probability p = 1 - dropout)")
    dropout_mode: Literal["inverted", "classic"] = Field("inverted", description="inverted: scale kept units by 1/p while training; classic: no scaling in training, multiply by p at test")


class AugmentConfig(_Section):
    hflip: bool = Field(False, description="mirror each training image left-right with probability 1/2")
    rotate_deg: float = Field(0.0, ge=0.0, le=180.0, description="rotate each training image by an angle uniform in [-deg, deg]")
    color_shift: float = Field(0.0, ge=0.0, le=1.0, description="add a per-channel shift uniform in [-c, c] (in units of the channel's std)")
    scale: float = Field(0.0, ge=0.0, le=0.9, description="zoom each training image by a factor uniform in [1 - s, 1 + s]")

    @property
    def active(self) -> bool:
        return self.hflip or self.rotate_deg > 0 or self.color_shift > 0 or self.scale > 0


class TrainConfig(_Section):
    optimizer: _choices(OPTIMIZERS) = Field("sgd", description="sgd: plain steps; momentum: steps that build up speed; adam: per-weight step sizes")
    lr: float = Field(0.05, gt=0.0, le=10.0, description="learning rate: the step size; too large diverges, too small crawls")
    momentum: float = Field(0.9, ge=0.0, le=0.999, description="how much of the last step the momentum optimizer keeps")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty pulling weights toward 0")
    epochs: int = Field(20, ge=1, le=500, description="passes over the training set")
    batch_size: int = Field(64, ge=1, le=4096, description="samples per step; batchnorm needs more than 1")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="same seed and config give the same numbers on the same machine")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU")
    fresh: bool = Field(False, description="train even if an identical run (same config and seed) exists; "
                                           "by default such a request shares that run's training and events")


class TelemetryConfig(_Section):
    every_steps: int = Field(10, ge=0, le=100000, description="beyond the evenly spread captures, capture every layer again at most every N steps while the budget allows (0: loss curves only, no per-layer telemetry)")
    bins: int = Field(32, ge=8, le=128, description="bins per histogram")
    max_per_second: float = Field(10.0, ge=0.0, le=1000.0, description="at most this many extra captures per second of training, whatever every_steps says, so a fast net stays cheap to watch (0: no limit)")
    budget: float = Field(0.03, ge=0.0, le=1.0, description="the share of the run's CPU time extra captures may take (training and summary threads together); the evenly spread captures are taken whatever it says (0: no limit)")
    captures: int = Field(50, ge=2, le=500, description="captures spread evenly over the run, step 0 and the last step included, so every layer can be watched changing over time")


class RunConfig(_Section):
    name: str = Field("", max_length=80, description="a label for the run; empty picks one from the config")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="after")
    def _rules_across_fields(self) -> RunConfig:
        images = [e.name for e in DATASETS if e.meta["kind"] == "image"]
        if self.model.arch == "cnn" and not is_image(self.data.dataset):
            raise ConfigRuleError("model.arch", f"model.arch 'cnn' needs an image dataset ({', '.join(images)}); "
                                  f"data.dataset is {self.data.dataset!r}")
        if self.augment.active and not is_image(self.data.dataset):
            raise ConfigRuleError("augment", f"augment applies to image datasets only ({', '.join(images)}); "
                                  f"data.dataset is {self.data.dataset!r}: set every augment field to 0/false")
        if self.model.batchnorm and self.train.batch_size < 2:
            raise ConfigRuleError("train.batch_size", "train.batch_size must be at least 2 with model.batchnorm "
                                  "(a batch of one has no variance)")
        return self

    def display_name(self) -> str:
        if self.name:
            return self.name
        m = self.model
        tricks = "".join(["+bn" if m.batchnorm else "", f"+do{m.dropout:g}" if m.dropout else "",
                          "+aug" if self.augment.active else ""])
        return f"{self.data.dataset} {m.arch}{m.depth}x{m.width} {m.activation} {m.init}{tricks}"


SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig, "model": ModelConfig, "augment": AugmentConfig,
    "train": TrainConfig, "telemetry": TelemetryConfig,
}


# --------------------------------------------------------------------------------------------
# Limits and readable errors, derived from the models above so they can never disagree.

def field_limits(section: str | None, name: str) -> dict[str, Any]:
    """Type, default, choices and bounds of one field, e.g. ``field_limits("model", "depth")``."""
    model = RunConfig if section is None else SECTIONS[section]
    info = model.model_fields[name]
    out: dict[str, Any] = {}
    for m in info.metadata:
        for bound in ("ge", "gt", "le", "lt", "max_length"):
            if getattr(m, bound, None) is not None:
                out[bound] = getattr(m, bound)
    ann = info.annotation
    if getattr(ann, "__origin__", None) is Literal:
        out["type"], out["choices"] = "choice", list(ann.__args__)
    else:
        out["type"] = {bool: "bool", int: "int", float: "float", str: "str"}.get(ann, "object")
    return out


def _range_text(lim: dict[str, Any]) -> str:
    lo = f"{lim['ge']:g}" if "ge" in lim else (f"more than {lim['gt']:g}" if "gt" in lim else None)
    hi = f"{lim['le']:g}" if "le" in lim else (f"less than {lim['lt']:g}" if "lt" in lim else None)
    if "ge" in lim and "le" in lim:
        return f"between {lo} and {hi}"
    parts = [p for p in (lo if "gt" in lim else (f"at least {lo}" if lo else None),
                         hi if "lt" in lim else (f"at most {hi}" if hi else None)) if p]
    return " and ".join(parts)


def _short(value: Any, limit: int = 60) -> str:
    """A value as the error echoes it: never more than ``limit`` characters of what the client sent."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def explain_error(loc: tuple[Any, ...], err_type: str, msg: str, value: Any, ctx: dict | None) -> tuple[str, str]:
    """(dotted field, message naming the field and the allowed values) for one pydantic error."""
    field = ".".join(str(p) for p in loc) or "config"
    error = (ctx or {}).get("error")
    if isinstance(error, ConfigRuleError):
        return error.field, str(error)
    section, name = (None, loc[0]) if len(loc) == 1 else (loc[0], loc[-1]) if len(loc) == 2 else (None, None)
    try:
        lim = field_limits(section, name) if name is not None else {}
    except KeyError:
        lim = {}
    if err_type == "extra_forbidden":
        model = RunConfig if section is None else SECTIONS.get(section, RunConfig)
        where = f"of {section} " if section else ""
        return field, f"{field} is not a field; the fields {where}are {', '.join(model.model_fields)}"
    got = f" (got {_short(value)})" if value is not None and not isinstance(value, dict) else ""
    if "choices" in lim:
        return field, f"{field} must be one of {', '.join(map(str, lim['choices']))}{got}"
    if err_type == "string_too_long":
        return field, f"{field} must be at most {lim.get('max_length')} characters"
    bounds = _range_text(lim)
    kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(lim.get("type", ""))
    if kind and bounds:
        return field, f"{field} must be {kind} {bounds}{got}"
    if kind:
        return field, f"{field} must be {kind}{got}"
    return field, f"{field}: {msg[:200]}{got}"


def describe_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors with ``field`` and a ``msg`` that says what is allowed."""
    out = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        field, msg = explain_error(loc, e["type"], e["msg"], e.get("input"), e.get("ctx"))
        out.append({"loc": list(e["loc"]), "field": field, "msg": msg, "type": e["type"]})
    return out
