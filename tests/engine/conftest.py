"""Engine test fixtures. One torch thread (the suite runs on 2 cores); real aihwkit throughout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    try:
        import torch
    except ImportError:  # torch-free tests still run
        return
    torch.set_num_threads(1)


class Recorder:
    """Engine callbacks that record everything; optionally stop after N batches."""

    def __init__(self, stop_after_batches: int | None = None) -> None:
        self.stop_after = stop_after_batches
        self.polls = 0
        self.progress: list = []
        self.metrics: list[tuple[int, int, dict]] = []
        self.checkpoints: list[tuple[Path, str]] = []
        self.logs: list[str] = []

    def on_progress(self, p) -> None:
        self.progress.append(p)

    def on_metrics(self, step: int, epoch: int, metrics: dict) -> None:
        self.metrics.append((step, epoch, dict(metrics)))

    def on_checkpoint(self, path: Path, kind: str) -> None:
        self.checkpoints.append((Path(path), kind))

    def on_log(self, line: str) -> None:
        self.logs.append(line)

    def should_stop(self) -> bool:
        self.polls += 1
        return self.stop_after is not None and self.polls > self.stop_after

    def metric_pairs(self, *keys: str) -> list[tuple[str, int, float]]:
        """(key, step, value) for the given keys, as a metrics store would keep them."""
        return [(k, step, m[k]) for step, _, m in self.metrics for k in keys if k in m]


@pytest.fixture
def recorder():
    return Recorder


@pytest.fixture
def context(tmp_path):
    from cttv2_engine.types import RunContext

    (tmp_path / "data").mkdir()
    (tmp_path / "weights").mkdir()
    return RunContext(data_dir=tmp_path / "data", weights_dir=tmp_path / "weights", compute="cpu")


def tiny_spec(**sections) -> dict:
    """A seconds-long digits job on swin_micro; sections override top-level keys."""
    spec = {
        "algorithm": "fp",
        "model": {"arch": "swin_micro", "analog_scope": "all", "digital_parts": "trained"},
        "data": {"dataset": "digits", "classes": [0, 1, 2], "train_per_class": 16, "test_per_class": 8},
        "training": {"epochs": 2, "batch_size": 16, "lr": 0.003, "seed": 1},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
