"""Datasets: CIFAR pickle layout fixtures, imagefolder, digits, class subsets, batch order."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cttv2_engine.data import epoch_order, load_dataset, to_model_input, train_batches
from cttv2_engine.errors import DataError
from cttv2_engine.spec import DataSpec


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_class_train: int = 4, per_class_test: int = 2) -> None:
    """The standard cifar-10-batches-py layout, tiny: 10 classes, labels cycling."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    n = 10 * per_class_train
    labels = [i % 10 for i in range(n)]
    data = _images(n, 0)
    per_batch = n // 5
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        with open(d / f"data_batch_{b + 1}", "wb") as fh:
            pickle.dump({b"data": data[sl], b"labels": labels[sl]}, fh)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump(
            {b"data": _images(10 * per_class_test, 1), b"labels": [i % 10 for i in range(10 * per_class_test)]}, fh
        )
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names}, fh)


def write_cifar100(root: Path, per_class_train: int = 3, per_class_test: int = 2) -> None:
    from cttv2_engine.semantics import CIFAR100_CLASSES

    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        n = 100 * per
        with open(d / split, "wb") as fh:
            pickle.dump(
                {b"data": _images(n, 2), b"fine_labels": [i % 100 for i in range(n)], b"coarse_labels": [0] * n}, fh
            )
    with open(d / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [c.encode() for c in CIFAR100_CLASSES]}, fh)


def test_cifar10_layout_and_class_names(tmp_path):
    write_cifar10(tmp_path)
    ds = load_dataset(DataSpec(dataset="cifar10", classes=["cat", "ship"], train_per_class=3), tmp_path, 32)
    assert ds.class_names == ["cat", "ship"]
    assert len(ds.train) == 6 and len(ds.test) == 4
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (3, 32, 32)
    assert sorted(ds.train.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_cifar100_by_index_and_first_n(tmp_path):
    write_cifar100(tmp_path)
    ds = load_dataset(DataSpec(dataset="cifar100", classes=[99, 0], test_per_class=1), tmp_path, 32)
    assert ds.class_names == ["worm", "apple"]
    assert len(ds.train) == 6 and len(ds.test) == 2
    ds = load_dataset(DataSpec(dataset="cifar100", num_classes=5), tmp_path, 32)
    assert ds.class_names[:2] == ["apple", "aquarium_fish"] and len(ds.train) == 15


def test_missing_cifar_names_the_expected_path(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python") as info:
        load_dataset(DataSpec(dataset="cifar100"), tmp_path, 32)
    assert str(tmp_path) in str(info.value) and info.value.field == "data.dataset"
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset(DataSpec(dataset="cifar10"), tmp_path, 32)


def test_truncated_cifar_is_a_data_error(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset(DataSpec(dataset="cifar10"), tmp_path, 32)


def test_imagefolder(tmp_path):
    from PIL import Image

    for split, n in (("train", 3), ("test", 2)):
        for cls, color in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
            folder = tmp_path / "pets" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20 + i, 17), color).save(folder / f"{i}.png")
    ds = load_dataset(DataSpec(dataset="imagefolder", name="pets"), tmp_path, 32)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.train.images.shape == (6, 3, 32, 32) and len(ds.test) == 4
    red = ds.train.images[ds.train.labels == 0].float().mean(dim=(0, 2, 3))
    assert red[0] > 200 and red[2] < 50
    with pytest.raises(DataError, match="imagefolder not found"):
        load_dataset(DataSpec(dataset="imagefolder", name="nothere"), tmp_path, 32)


def test_digits_split_and_subsets():
    ds = load_dataset(DataSpec(dataset="digits", classes=[5, 6, 7, 8, 9]), Path("."), 32)
    assert ds.class_names == ["5", "6", "7", "8", "9"]
    assert 650 < len(ds.train) < 700 and 200 < len(ds.test) < 250
    assert ds.train.images.shape[1:] == (3, 8, 8)
    # the split is fixed: the same images every time, disjoint train/test
    again = load_dataset(DataSpec(dataset="digits", classes=[5, 6, 7, 8, 9]), Path("."), 32)
    assert torch.equal(ds.test.images, again.test.images)
    capped = load_dataset(
        DataSpec(dataset="digits", num_classes=3, train_per_class=10, test_per_class=4), Path("."), 32
    )
    assert len(capped.train) == 30 and len(capped.test) == 12
    with pytest.raises(DataError, match="has no class"):
        load_dataset(DataSpec(dataset="digits", classes=["five", "1"]), Path("."), 32)


def test_model_input_resized_and_normalized():
    images = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    x = to_model_input(images, 32, torch.device("cpu"))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.full_like(x[:, 0], (1 - 0.485) / 0.229))


def test_batch_order_is_a_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(50, 3, 1), epoch_order(50, 3, 1))
    assert not torch.equal(epoch_order(50, 3, 1), epoch_order(50, 3, 2))
    assert not torch.equal(epoch_order(50, 3, 1), epoch_order(50, 4, 1))
    ds = load_dataset(DataSpec(dataset="digits", num_classes=2, train_per_class=20), Path("."), 32)
    full = list(train_batches(ds.train, 8, seed=1, epoch=0))
    skipped = list(train_batches(ds.train, 8, seed=1, epoch=0, start_batch=2))
    assert len(full) == 5 and len(skipped) == 3
    for (a, la), (b, lb) in zip(full[2:], skipped):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_broken_image_is_a_data_error(tmp_path):
    for split in ("train", "test"):
        folder = tmp_path / "pets" / split / "cats"
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_dataset(DataSpec(dataset="imagefolder", name="pets"), tmp_path, 32)
