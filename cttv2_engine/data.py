"""Datasets as in-memory uint8 tensors, class subsets, and the (seed, epoch)-determined batch order.

Images stay at their stored size (uint8, N x 3 x H x W) and are resized per batch to the
model's input, so CIFAR at 224x224 costs no more memory than at 32x32.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cttv2_engine.errors import DataError
from cttv2_engine.semantics import select_classes
from cttv2_engine.spec import DataSpec

# timm's Swin models are trained with ImageNet statistics; use them for every dataset so a
# pretrained model and its fine-tuned descendants see the same input scaling.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x 3 x H x W
    labels: torch.Tensor  # int64, N, in 0..num_classes-1

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    train: Split
    test: Split
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(spec: DataSpec, data_dir: Path, img_size: int) -> Dataset:
    """Load the spec's dataset, select its classes and cap the per-class counts."""
    if spec.dataset == "digits":
        (xtr, ytr), (xte, yte), names = _digits()
    elif spec.dataset == "cifar10":
        (xtr, ytr), (xte, yte), names = _cifar10(Path(data_dir))
    elif spec.dataset == "cifar100":
        (xtr, ytr), (xte, yte), names = _cifar100(Path(data_dir))
    else:
        (xtr, ytr), (xte, yte), names = _imagefolder(Path(data_dir), spec.name or "", img_size)

    chosen = select_classes(names, spec, error=DataError)
    if len(chosen) < 2:
        raise DataError(f"{spec.dataset} has fewer than 2 classes", field="data")
    train = _subset(xtr, ytr, chosen, spec.train_per_class)
    test = _subset(xte, yte, chosen, spec.test_per_class)
    for split_name, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise DataError(f"the {split_name} split has no images for the chosen classes", field="data")
    return Dataset(train, test, [names[i] for i in chosen])


def _subset(x: np.ndarray, y: np.ndarray, chosen: list[int], per_class: int | None) -> Split:
    keep: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for new_label, old_label in enumerate(chosen):
        idx = np.flatnonzero(y == old_label)
        if per_class is not None:
            idx = idx[:per_class]
        keep.append(idx)
        labels.append(np.full(len(idx), new_label, dtype=np.int64))
    order = np.concatenate(keep)
    # Interleave classes by their original order so that the data file's order is kept.
    perm = np.argsort(order, kind="stable")
    return Split(
        torch.from_numpy(np.ascontiguousarray(x[order[perm]])),
        torch.from_numpy(np.concatenate(labels)[perm]),
    )


def _digits() -> tuple[tuple, tuple, list[str]]:
    """scikit-learn's bundled 8x8 digits: a fixed stratified 75/25 split, 3 channels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    images = np.repeat(images[:, None], 3, axis=1)
    xtr, xte, ytr, yte = train_test_split(images, bunch.target, test_size=0.25, stratify=bunch.target, random_state=0)
    return (xtr, ytr), (xte, yte), [str(i) for i in range(10)]


# The CIFAR python versions are pickles. pickle.load is unavoidable for that format; it is
# safe here only because the data dir is operator-controlled (CTTV2_DATA_DIR), never a user
# upload. User-supplied files never go through this module.
def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}", field="data.dataset")
    try:
        with open(path, "rb") as fh:
            raw = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - truncated or not a pickle
        raise DataError(f"cannot read {path}: {exc}", field="data.dataset") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a dict)", field="data.dataset")
    return raw


def _cifar_images(raw: dict) -> np.ndarray:
    try:
        return np.asarray(raw[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    except (KeyError, ValueError) as exc:
        raise DataError(f"malformed CIFAR batch ({exc})", field="data.dataset") from None


def _field(raw: dict, key: bytes, path: Path) -> Any:
    try:
        return raw[key]
    except KeyError:
        raise DataError(f"{path} lacks {key.decode()!r}", field="data.dataset") from None


def _cifar10(data_dir: Path):
    root = data_dir / "cifar-10-batches-py"
    _require_dir(root, "cifar10", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
    parts = [_unpickle(root / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(root / "test_batch")
    meta = root / "batches.meta"
    names = [n.decode() for n in _field(_unpickle(meta), b"label_names", meta)]
    xtr = np.concatenate([_cifar_images(p) for p in parts])
    ytr = np.concatenate([np.asarray(_field(p, b"labels", root)) for p in parts])
    return (xtr, ytr), (_cifar_images(test), np.asarray(_field(test, b"labels", root))), names


def _cifar100(data_dir: Path):
    root = data_dir / "cifar-100-python"
    _require_dir(root, "cifar100", "cifar-100-python/{train,test,meta}")
    train, test = _unpickle(root / "train"), _unpickle(root / "test")
    meta = root / "meta"
    names = [n.decode() for n in _field(_unpickle(meta), b"fine_label_names", meta)]
    return (
        (_cifar_images(train), np.asarray(_field(train, b"fine_labels", root / "train"))),
        (_cifar_images(test), np.asarray(_field(test, b"fine_labels", root / "test"))),
        names,
    )


def _imagefolder(data_dir: Path, name: str, img_size: int):
    from PIL import Image

    root = data_dir / name
    _require_dir(root, "imagefolder", f"{name}/{{train,test}}/<class>/*.png|jpg")
    class_dirs = sorted(p.name for p in (root / "train").iterdir() if p.is_dir()) if (root / "train").is_dir() else []
    if not class_dirs:
        raise DataError(f"no class folders in {root / 'train'}", field="data.name")
    splits = []
    for split in ("train", "test"):
        images, labels = [], []
        for label, cls in enumerate(class_dirs):
            folder = root / split / cls
            files = (
                sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if (folder.is_dir()) else []
            )
            for path in files:
                try:
                    with Image.open(path) as opened:
                        img = opened.convert("RGB").resize((img_size, img_size), Image.Resampling.BILINEAR)
                        images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                except OSError as exc:  # truncated or not an image
                    raise DataError(f"cannot read image {path}: {exc}", field="data.name") from None
                labels.append(label)
        if not images:
            raise DataError(f"no images in {root / split}", field="data.name")
        splits.append((np.stack(images), np.asarray(labels)))
    return splits[0], splits[1], class_dirs


def _require_dir(root: Path, dataset: str, layout: str) -> None:
    if not root.is_dir():
        raise DataError(
            f"{dataset} not found: expected {root} (layout: DATA_DIR/{layout}); the engine never downloads data",
            field="data.dataset",
        )


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: a function of (seed, epoch) only, so a resumed run can
    skip exactly the batches it already trained on."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen)


def train_batches(
    split: Split, batch_size: int, seed: int, epoch: int, start_batch: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = epoch_order(len(split), seed, epoch)
    for start in range(start_batch * batch_size, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]


def test_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        yield split.images[start : start + batch_size], split.labels[start : start + batch_size]


def batches_per_epoch(split: Split, batch_size: int) -> int:
    return (len(split) + batch_size - 1) // batch_size


def to_model_input(images: torch.Tensor, img_size: int, device: torch.device) -> torch.Tensor:
    """uint8 N x 3 x H x W -> normalized float at the model's input size."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std
