"""Standard image sets read from files the user put in the data directory (never downloaded).

MNIST and Fashion-MNIST: the IDX files ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
(optionally ``.gz``) in ``DATA_DIR/mnist/`` or ``DATA_DIR/fashion_mnist/``.
CIFAR-10: the python pickle batches ``data_batch_1`` .. ``data_batch_5`` in ``DATA_DIR/cifar10/``
(or its ``cifar-10-batches-py/`` subfolder, as the archive unpacks).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from deepscope.engine.datasets import DATASETS, DatasetUnavailable, RawSet

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
FASHION = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _find_idx(folder: Path, name: str) -> list[Path]:
    found = []
    for stem in IDX_FILES:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            raise DatasetUnavailable(
                f"dataset {name!r} needs the files {', '.join(IDX_FILES)} (optionally .gz) in the folder {name}/ of "
                "the data directory (DEEPSCOPE_DATA_DIR); "
                "put them there, nothing is downloaded"
            )
        found.append(hit)
    return found


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetUnavailable(f"{path.parent.name}/{path.name} in the data directory is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_set(name: str, classes: list[str]):
    def finder(data_dir: Path) -> list[Path]:
        return _find_idx(data_dir / name, name)

    def load(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
        images_path, labels_path = finder(data_dir)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if len(images) != len(labels):
            raise DatasetUnavailable(f"{name}/{images_path.name} holds {len(images)} images but {name}/{labels_path.name} "
                                     f"{len(labels)} labels")
        x = images.astype(np.float32)[:, None] / 255.0
        return RawSet(x, labels.astype(np.int64), classes)

    return finder, load


def _cifar_finder(data_dir: Path) -> list[Path]:
    for folder in (data_dir / "cifar10" / "cifar-10-batches-py", data_dir / "cifar10"):
        batches = sorted(folder.glob("data_batch_[1-5]"))
        if batches:
            return batches
    raise DatasetUnavailable(
        "dataset 'cifar10' needs the python batches data_batch_1 .. data_batch_5 in the folder cifar10/ of the "
        "data directory (DEEPSCOPE_DATA_DIR); "
        "put them there, nothing is downloaded"
    )


def _load_cifar(cfg, rng: np.random.Generator, data_dir: Path) -> RawSet:
    xs, ys = [], []
    for path in _cifar_finder(data_dir):
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return RawSet(np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys), list(CIFAR))


_mnist_find, _mnist_load = _idx_set("mnist", [str(i) for i in range(10)])
_fashion_find, _fashion_load = _idx_set("fashion_mnist", FASHION)
DATASETS.register("mnist", "MNIST digits, 28x28 grey, read from IDX files in DATA_DIR/mnist",
                  kind="image", synthetic=False, shape=(1, 28, 28), size=60000, find_files=_mnist_find)(_mnist_load)
DATASETS.register("fashion_mnist", "Fashion-MNIST, 28x28 grey, read from IDX files in DATA_DIR/fashion_mnist",
                  kind="image", synthetic=False, shape=(1, 28, 28), size=60000, find_files=_fashion_find)(_fashion_load)
DATASETS.register("cifar10", "CIFAR-10, 3x32x32 colour, read from the python batches in DATA_DIR/cifar10",
                  kind="image", synthetic=False, shape=(3, 32, 32), size=50000, find_files=_cifar_finder)(_load_cifar)
