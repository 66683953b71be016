import gzip
import pickle
import struct

import numpy as np
import pytest

from deepscope.engine import datasets
from deepscope.engine.config import DataConfig
from deepscope.engine.datasets import (
    DATASETS,
    DatasetUnavailable,
    check_available,
    load_dataset,
    split_dataset,
)

BUILTIN = ["spiral", "circles", "moons", "xor", "gaussians", "digits", "shapes", "mnist1d"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_sets_are_offline_deterministic_split_and_normalised(name, tmp_path):
    cfg = DataConfig(dataset=name, n_samples=400, val_fraction=0.25)
    a, b = split_dataset(cfg, 3, tmp_path), split_dataset(cfg, 3, tmp_path)  # generated twice, not kept
    assert np.array_equal(a.x_train.numpy(), b.x_train.numpy())
    other = split_dataset(cfg, 4, tmp_path)
    assert not np.array_equal(a.x_train.numpy()[:50], other.x_train.numpy()[:50])
    n = len(a.y_train) + len(a.y_val)
    assert abs(len(a.y_val) - round(n * 0.25)) <= 1
    axes = (0, 2, 3) if a.x_train.ndim == 4 else (0,)
    x = a.x_train.numpy()
    assert np.allclose(x.mean(axis=axes), 0, atol=1e-4)
    std = x.std(axis=axes)
    assert np.allclose(std[std > 0], 1, atol=1e-3)
    assert a.y_train.max() < a.n_classes


def test_a_generated_set_is_kept_per_process_within_its_bound_and_each_load_gets_a_split_of_its_own(tmp_path, monkeypatch):
    cfg = DataConfig(dataset="mnist1d", n_samples=500)
    first, again = load_dataset(cfg, 0, tmp_path), load_dataset(cfg, 0, tmp_path)
    assert again is not first and again.x_train is first.x_train  # the tensors shared, the split its own
    assert np.array_equal(again.x_train.numpy(), split_dataset(cfg, 0, tmp_path).x_train.numpy())
    again.x_train = again.x_train[:10]  # what .to(device) does to a split: the kept one is untouched
    assert len(load_dataset(cfg, 0, tmp_path).x_train) == len(first.x_train)
    assert load_dataset(cfg, 1, tmp_path).x_train is not first.x_train  # another seed, another set
    # over the bound, the oldest go first; a set larger than the bound alone is not kept
    monkeypatch.setattr(datasets, "KEEP_GENERATED_BYTES", first.nbytes + 1)
    datasets._generated.clear()
    load_dataset(cfg, 0, tmp_path)
    load_dataset(cfg, 1, tmp_path)
    assert [seed for _, seed in datasets._generated] == [1]
    monkeypatch.setattr(datasets, "KEEP_GENERATED_BYTES", 100)
    load_dataset(cfg, 2, tmp_path)
    assert [seed for _, seed in datasets._generated] == [1]


def test_shapes_are_three_classes_of_colour_images(tmp_path):
    d = load_dataset(DataConfig(dataset="shapes", n_samples=300), 0, tmp_path)
    assert d.input_shape == (3, 32, 32) and d.classes == ["circle", "square", "triangle"]
    assert set(d.y_train.tolist()) == {0, 1, 2}


def test_mnist1d_is_forty_points_ten_classes(tmp_path):
    d = load_dataset(DataConfig(dataset="mnist1d", n_samples=500), 0, tmp_path)
    assert d.input_shape == (40,) and d.n_classes == 10


def write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("name, compress", [("mnist", False), ("fashion_mnist", True)])
def test_idx_files_are_read_from_the_data_dir(name, compress, tmp_path):
    folder = tmp_path / name
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 28, 28))
    labels = np.arange(30) % 10
    write_idx(folder / "train-images-idx3-ubyte", images, compress)
    write_idx(folder / "train-labels-idx1-ubyte", labels, compress)
    d = load_dataset(DataConfig(dataset=name, val_fraction=0.2), 0, tmp_path)
    assert d.input_shape == (1, 28, 28) and len(d.y_train) + len(d.y_val) == 30
    # The labels survive the round trip: every class is present.
    assert sorted(set(d.y_train.tolist()) | set(d.y_val.tolist())) == list(range(10))


def test_cifar_batches_are_read_from_the_data_dir(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 2):
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    d = load_dataset(DataConfig(dataset="cifar10"), 0, tmp_path)
    assert d.input_shape == (3, 32, 32) and len(d.y_train) + len(d.y_val) == 20


@pytest.mark.parametrize("name, expect", [("mnist", "train-images-idx3-ubyte"),
                                          ("fashion_mnist", "train-labels-idx1-ubyte"),
                                          ("cifar10", "data_batch_1")])
def test_missing_files_error_names_what_is_expected(name, expect, tmp_path):
    with pytest.raises(DatasetUnavailable, match=expect):
        check_available(name, tmp_path)
    assert DATASETS.entry(name).meta["kind"] == "image"
