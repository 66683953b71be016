"""What ``GET /api/options`` answers: every config field with its type, default, limits, choices and
help, and when it applies. Built from the config model and the registries, never written by hand."""

from __future__ import annotations

from typing import Any

from engine.activations import ACTIVATIONS
from engine.config import SECTIONS, RunConfig, field_limits
from engine.datasets import DATASETS
from engine.inits import INITS
from engine.optimizers import OPTIMIZERS

CHOICE_HELP = {"model.activation": ACTIVATIONS, "model.init": INITS, "data.dataset": DATASETS,
               "train.optimizer": OPTIMIZERS}

_IMAGES = [e.name for e in DATASETS if e.meta["kind"] == "image"]
_SYNTHETIC = [e.name for e in DATASETS if e.meta.get("synthetic")]

# field -> (the field it depends on, the values that make it apply, why it is off otherwise)
APPLIES_WHEN: dict[str, tuple[str, list[Any], str]] = {
    "data.n_samples": ("data.dataset", _SYNTHETIC, "only generated datasets have a sample count to choose"),
    "data.noise": ("data.dataset", _SYNTHETIC, "only generated datasets have noise to choose"),
    "model.leaky_slope": ("model.activation", ["leaky_relu"], "the slope a belongs to leaky_relu"),
    "model.init_std": ("model.init", ["small_normal"], "only small_normal takes a std; the others derive it from the layer size"),
    "model.bn_momentum": ("model.batchnorm", [True], "the moving averages exist only with batchnorm"),
    "model.dropout_mode": ("model.dropout", "positive", "there is nothing to scale without dropout"),
    "train.momentum": ("train.optimizer", ["momentum"], "only the momentum optimizer keeps a velocity"),
    **{f"augment.{name}": ("data.dataset", _IMAGES, "augmentation applies to image datasets only")
       for name in ("hflip", "rotate_deg", "color_shift", "scale")},
}
APPLIES_WHEN["model.arch"] = ("data.dataset", _IMAGES, "cnn needs an image dataset")  # mlp is always allowed


def options() -> dict[str, Any]:
    defaults = RunConfig().model_dump()
    sections = []
    for section, model in SECTIONS.items():
        fields = []
        for name, info in model.model_fields.items():
            path = f"{section}.{name}"
            spec: dict[str, Any] = {"name": path, "default": defaults[section][name], "help": info.description,
                                    **field_limits(section, name)}
            if path in CHOICE_HELP:
                spec["choice_help"] = {e.name: e.help for e in CHOICE_HELP[path]}
            if path == "data.dataset":
                spec["choice_kind"] = {e.name: e.meta["kind"] for e in DATASETS}
            if path in APPLIES_WHEN:
                dep, values, why = APPLIES_WHEN[path]
                spec["applies_when"] = {"field": dep, "values": values, "reason": why}
                if path == "model.arch":
                    spec["applies_when"]["only_for"] = "cnn"
            fields.append(spec)
        sections.append({"name": section, "fields": fields})
    name = RunConfig.model_fields["name"]
    return {"sections": sections,
            "name": {"name": "name", "default": "", "help": name.description, **field_limits(None, "name")},
            "limits_note": "every field is checked on submit; a value out of range is refused with a 422 naming it"}
