"""Datasets by name: every one works offline and is deterministic for a given seed.

A loader returns the whole set as numpy arrays; ``split_dataset`` splits it into training and
validation parts and normalises both with the training part's statistics.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepscope.engine.registry import Registry

if TYPE_CHECKING:  # torch loads when a run trains, not when the service reads the names
    import torch

    from deepscope.engine.config import DataConfig


@dataclass(frozen=True)
class RawSet:
    x: np.ndarray  # float32, (N, D) for points and sequences, (N, C, H, W) for images
    y: np.ndarray  # int64 class labels
    classes: list[str]


class DatasetUnavailable(ValueError):
    """A file-backed dataset whose files are not in the data directory."""


Loader = Callable[["DataConfig", np.random.Generator, Path], RawSet]

# meta: kind = points (2-D, decision boundary) | sequence | image; synthetic = honours n_samples/noise;
# shape = one input's shape; size = how many samples a fixed set has;
# files = what a file-backed set needs in DATA_DIR/<name>/.
DATASETS: Registry[Loader] = Registry("dataset")


@dataclass
class DataSplit:
    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: list[str]
    mean: np.ndarray  # what was subtracted, per feature or channel, to undo it for previews
    std: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.x_train, self.y_train, self.x_val, self.y_val))

    def to(self, device: torch.device) -> DataSplit:
        for attr in ("x_train", "y_train", "x_val", "y_val"):
            setattr(self, attr, getattr(self, attr).to(device))
        return self


def is_image(name: str) -> bool:
    return DATASETS.entry(name).meta["kind"] == "image"


# Generated sets kept per process (most recent first), so that a run's training does not generate again
# what its first look did, nor a lesson's second run what its first did: a shapes set took 100 ms, an
# MNIST-1D set 40. Bounded in bytes, because the workers' memory limits count resident memory; a set
# read from files is not kept (the files may change).
KEEP_GENERATED_BYTES = 16 * 2**20
_generated: OrderedDict[tuple[str, int], DataSplit] = OrderedDict()
_generated_lock = threading.Lock()


def load_dataset(cfg: DataConfig, seed: int, data_dir: Path) -> DataSplit:
    """The split of ``cfg``'s set for ``seed``: a split of its own (its tensors are shared with any other
    split of the same set and seed, and never written)."""
    if "find_files" in DATASETS.entry(cfg.dataset).meta:
        return split_dataset(cfg, seed, data_dir)
    key = (cfg.model_dump_json(), seed)
    with _generated_lock:
        kept = _generated.get(key)
        if kept is not None:
            _generated.move_to_end(key, last=False)
            return replace(kept)
    split = split_dataset(cfg, seed, data_dir)
    if split.nbytes <= KEEP_GENERATED_BYTES:
        with _generated_lock:
            _generated[key] = split
            _generated.move_to_end(key, last=False)
            while sum(s.nbytes for s in _generated.values()) > KEEP_GENERATED_BYTES:
                _generated.popitem()  # the least recently used
    return replace(split)


def split_dataset(cfg: DataConfig, seed: int, data_dir: Path) -> DataSplit:
    """The set generated (or read) for ``seed``, split into training and validation parts and normalised
    with the training part's statistics."""
    import torch

    rng = np.random.default_rng(seed)
    raw = DATASETS.get(cfg.dataset)(cfg, rng, data_dir)
    n = len(raw.y)
    order = rng.permutation(n)
    n_val = max(1, int(round(n * cfg.val_fraction)))
    if n - n_val < 1:
        raise ValueError(f"data.val_fraction leaves no training samples out of {n}")
    val, train = order[:n_val], order[n_val:]
    x_train, x_val = raw.x[train], raw.x[val]
    # Image statistics are per channel, everything else per feature.
    axes = (0, 2, 3) if x_train.ndim == 4 else (0,)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)
    meta = DATASETS.entry(cfg.dataset).meta
    return DataSplit(
        name=cfg.dataset,
        kind=meta["kind"],
        x_train=torch.from_numpy(((x_train - mean) / std).astype(np.float32)),
        y_train=torch.from_numpy(raw.y[train].astype(np.int64)),
        x_val=torch.from_numpy(((x_val - mean) / std).astype(np.float32)),
        y_val=torch.from_numpy(raw.y[val].astype(np.int64)),
        classes=raw.classes,
        mean=mean.reshape(-1),
        std=std.reshape(-1),
    )


def check_available(name: str, data_dir: Path) -> None:
    """Raise DatasetUnavailable, naming the files expected, when a file-backed set is absent."""
    finder = DATASETS.entry(name).meta.get("find_files")
    if finder is not None:
        finder(data_dir)


# Registration happens on import of the loader modules, in the order the choices are listed.
# isort: off
from deepscope.engine.datasets import synthetic  # noqa: E402,F401
from deepscope.engine.datasets import images  # noqa: E402,F401
from deepscope.engine.datasets import sequences  # noqa: E402,F401
from deepscope.engine.datasets import files  # noqa: E402,F401
# isort: on
