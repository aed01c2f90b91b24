"""What the engine hands back and calls out with. No torch here: the worker imports these freely."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol


@dataclass
class RunContext:
    """Where the engine finds things. Names from the spec are resolved only inside these dirs."""

    data_dir: Path
    weights_dir: Path
    # The compute hardware to train on (CTTV2_DEVICE, `cttv2 train --device`); the analog
    # cell is the spec's `device`.
    compute: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 1
    # Resolves model.pretrained = {job: N} to that job's final digital weights (a safetensors
    # file inside the service's own artifact store). None outside the service.
    job_weights: Callable[[int], Path] | None = None


@dataclass
class Progress:
    epoch: int  # 1-based epoch being trained
    epochs: int
    step: int  # global optimizer step, 1-based, counted across epochs
    total_steps: int
    images_per_s: float
    eta_s: float | None


class Callbacks(Protocol):
    """Everything the engine tells the outside world. All methods are optional to implement
    (see NullCallbacks); the engine calls them from the training thread."""

    def on_progress(self, progress: Progress) -> None: ...

    def on_metrics(self, step: int, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, path: Path, kind: Literal["latest", "best"]) -> None: ...

    def on_log(self, line: str) -> None: ...

    def should_stop(self) -> bool: ...


class NullCallbacks:
    def on_progress(self, progress: Progress) -> None:
        pass

    def on_metrics(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_checkpoint(self, path: Path, kind: Literal["latest", "best"]) -> None:
        pass

    def on_log(self, line: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass
class RunResult:
    # "completed": all epochs ran. "stopped": should_stop() said so; the latest checkpoint
    # holds everything needed to resume.
    status: Literal["completed", "stopped"]
    final: dict[str, float]  # test_accuracy, test_error, test_loss, train_loss, best_epoch, wall_s
    history: list[dict[str, float]]  # one dict per evaluated epoch
    weights_path: Path | None  # final digital weights (safetensors), when completed
    # versions, compute hardware (key "device"), gpu, seeds, threads
    environment: dict[str, Any] = field(default_factory=dict)
