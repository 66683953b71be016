"""What ``GET /api/options`` answers: every config field with its type, default, limits, choices and
help, and when it applies. Built from the config model and the registries, never written by hand."""

from __future__ import annotations

from typing import Any

from deepscope.app.statuses import ACTIVE_STATUSES, FINISHED, STATUSES, CloseCode
from deepscope.engine.activations import ACTIVATIONS
from deepscope.engine.config import SECTIONS, RunConfig, field_limits
from deepscope.engine.datasets import DATASETS
from deepscope.engine.events import EventType
from deepscope.engine.inits import INITS
from deepscope.engine.optimizers import OPTIMIZERS

CHOICE_HELP = {"model.activation": ACTIVATIONS, "model.init": INITS, "data.dataset": DATASETS,
               "train.optimizer": OPTIMIZERS}


def _registry_rules() -> dict[str, tuple[str, list[Any], str]]:
    """Fields that only some registry entries read (meta ``takes``): they apply when one of those is chosen."""
    rules: dict[str, tuple[str, list[Any], str]] = {}
    for choice, registry in CHOICE_HELP.items():
        section = choice.split(".")[0]
        for entry in registry:
            for param, why in entry.meta.get("takes", {}).items():
                _, names, _ = rules.get(f"{section}.{param}", (choice, [], why))
                rules[f"{section}.{param}"] = (choice, [*names, entry.name], why)
    return rules


_IMAGES = [e.name for e in DATASETS if e.meta["kind"] == "image"]
_SYNTHETIC = [e.name for e in DATASETS if e.meta.get("synthetic")]

# field -> (the field it depends on, the values that make it apply, why it is off otherwise)
APPLIES_WHEN: dict[str, tuple[str, list[Any], str]] = {
    "data.n_samples": ("data.dataset", _SYNTHETIC, "only generated datasets have a sample count to choose"),
    "data.noise": ("data.dataset", _SYNTHETIC, "only generated datasets have noise to choose"),
    **_registry_rules(),
    "model.bn_momentum": ("model.batchnorm", [True], "the moving averages exist only with batchnorm"),
    "model.dropout_mode": ("model.dropout", "positive", "there is nothing to scale without dropout"),
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
            "statuses": {"all": list(STATUSES), "active": sorted(ACTIVE_STATUSES), "finished": sorted(FINISHED)},
            "close_codes": {code.name.lower(): code.value for code in CloseCode},
            "event_types": [t.value for t in EventType],
            "activations": {e.name: {k: v for k, v in e.meta.items() if k != "takes"} for e in ACTIVATIONS},
            "name": {"name": "name", "default": "", "help": name.description, **field_limits(None, "name")},
            "limits_note": "every field is checked on submit; a value out of range is refused with a 422 naming it"}
