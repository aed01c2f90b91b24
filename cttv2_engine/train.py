"""``run()``: one training job from a validated spec to a finished (or stopped) run.

``run`` is the algorithm: for each epoch, train it under the lr schedule, evaluate, report,
checkpoint. The plumbing (compute hardware, model and optimizers, checkpoint restore, final
weights) sits in named functions below it. Every epoch is checkpointed atomically;
should_stop() is checked at batch boundaries and leaves a checkpoint that resumes exactly
there (the batch order is a function of (seed, epoch), so the batches already done are skipped).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cttv2_engine import checkpoint as ckpt
from cttv2_engine.build import TrainModel, build_train_model
from cttv2_engine.data import Dataset, batches_per_epoch, load_dataset, to_model_input, train_batches
from cttv2_engine.errors import CheckpointError, DataError
from cttv2_engine.files import atomic_write, remove_partial_writes
from cttv2_engine.hardware import ComputeTarget, select_compute
from cttv2_engine.semantics import RESUMABLE_CHANGES, resume_differences, validate_spec_semantics
from cttv2_engine.spec import JobSpec
from cttv2_engine.types import Callbacks, NullCallbacks, Progress, RunContext, RunResult
from cttv2_engine.weights import evaluate_split, save_final_weights

PROGRESS_EVERY_S = 1.0


@dataclass
class RunState:
    """Where a run stands: what a checkpoint saves and restores, next to the model, the
    optimizers and the torch RNG."""

    epoch: int = 0  # 0-based epoch in progress
    batch: int = 0  # batches of it already done
    step: int = 0  # optimizer steps done
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per finished epoch
    best_accuracy: float = -1.0
    best_epoch: int = 0  # 1-based; 0 while no epoch was evaluated
    # The epoch in progress, for its mean train loss and its speed.
    epoch_loss_sum: float = 0.0
    epoch_images: int = 0
    epoch_train_s: float = 0.0

    def add_batch(self, loss: float, images: int, seconds: float) -> None:
        self.batch += 1
        self.epoch_loss_sum += loss * images
        self.epoch_images += images
        self.epoch_train_s += seconds

    def close_epoch(self, metrics: dict[str, float]) -> bool:
        """Record the finished epoch and move to the next one; True if it is the best so far."""
        self.history.append({"epoch": self.epoch + 1, "step": self.step, **metrics})
        is_best = "test_accuracy" in metrics and metrics["test_accuracy"] > self.best_accuracy
        if is_best:
            self.best_accuracy, self.best_epoch = metrics["test_accuracy"], self.epoch + 1
        self.epoch, self.batch = self.epoch + 1, 0
        self.epoch_loss_sum, self.epoch_images, self.epoch_train_s = 0.0, 0, 0.0
        return is_best

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's keys, as cttv2-checkpoint/1 has always had them."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "history": self.history,
            "best": {"test_accuracy": self.best_accuracy, "epoch": self.best_epoch},
            "accum": {"loss": self.epoch_loss_sum, "seen": self.epoch_images, "train_s": self.epoch_train_s},
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> RunState:
        best, accum = saved["best"], saved["accum"]
        return cls(
            epoch=saved["epoch"],
            batch=saved["batch"],
            step=saved["step"],
            history=saved["history"],
            best_accuracy=best["test_accuracy"],
            best_epoch=best["epoch"],
            epoch_loss_sum=accum["loss"],
            epoch_images=accum["seen"],
            epoch_train_s=accum["train_s"],
        )


def lr_factor(spec: JobSpec, step: int, total_steps: int) -> float:
    """Schedule multiplier for optimizer step ``step`` (1-based): a pure function of the
    step, so a resumed run continues the same curve."""
    t = (step - 1) / max(total_steps - 1, 1)
    schedule = spec.training.schedule
    if schedule == "constant":
        return 1.0
    if schedule == "step":  # x0.1 at half and at three quarters of the run
        return 0.1 ** ((t >= 0.5) + (t >= 0.75))
    floor = spec.training.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


# What run() writes into its workdir (each through files.atomic_write).
OUTPUTS = ("checkpoints/latest.pt", "checkpoints/best.pt", "weights.safetensors", "result.json")


def run(
    spec: JobSpec | dict[str, Any],
    *,
    workdir: Path | str,
    callbacks: Callbacks | None = None,
    resume_from: Path | str | None = None,
    context: RunContext | None = None,
) -> RunResult:
    """Train ``spec``; write checkpoints, weights.safetensors and result.json into ``workdir``."""
    spec = validate_spec_semantics(spec)
    cb = callbacks or NullCallbacks()
    context = context or default_context()
    t_start = time.time()
    compute = _use_compute(context, cb)
    saved = _load_resume_checkpoint(resume_from, spec) if resume_from else None
    data = _load_data(spec, context, saved, cb)
    tm, optimizers = _build_model_and_optimizers(spec, data.num_classes, context, compute, saved, cb)
    state = RunState.from_dict(saved) if saved else RunState()
    job = _Job(spec, Path(workdir), cb, compute, data, tm, optimizers, t_start)
    (job.workdir / "checkpoints").mkdir(parents=True, exist_ok=True)  # only once all checks passed
    for name in remove_partial_writes(job.workdir / out for out in OUTPUTS):
        cb.on_log(f"removed {name}, left half-written by a run that was killed")

    epochs, bs = spec.training.epochs, spec.training.batch_size
    steps_per_epoch = batches_per_epoch(data.train, bs)
    total_steps = steps_per_epoch * epochs
    meter = _ProgressMeter(epochs, total_steps, bs)
    tm.model.train()
    while state.epoch < epochs:
        for images, labels in train_batches(data.train, bs, spec.training.seed, state.epoch, state.batch):
            if cb.should_stop():
                _save_checkpoint(job, state)
                cb.on_log(f"stopped at epoch {state.epoch + 1}, batch {state.batch}/{steps_per_epoch}")
                return _finish(job, state, "stopped")
            t0 = time.perf_counter()
            state.step += 1
            _set_lr(optimizers, lr_factor(spec, state.step, total_steps))
            loss = _train_step(job, images, labels, state.step)
            dt = time.perf_counter() - t0
            state.add_batch(loss, len(labels), dt)
            if meter.add(len(labels), dt):
                cb.on_progress(meter.progress(state))

        metrics = _epoch_metrics(job, state)  # train loss, speed, lr; the test split when due
        cb.on_metrics(state.step, state.epoch + 1, metrics)
        cb.on_progress(meter.progress(state))
        cb.on_log(_epoch_line(state.epoch, epochs, metrics))
        is_best = state.close_epoch(metrics)
        _save_checkpoint(job, state, best=is_best)

    weights = _write_final_weights(job)
    return _finish(job, state, "completed", weights)


@dataclass
class _Job:
    """What run() builds once and then only reads."""

    spec: JobSpec
    workdir: Path
    cb: Callbacks
    compute: ComputeTarget
    data: Dataset
    tm: TrainModel
    optimizers: list[torch.optim.Optimizer]
    t_start: float


@dataclass
class FinalWeights:
    path: Path  # weights.safetensors
    digital_metrics: dict[str, float]  # the digital copy's test loss, accuracy and error


@dataclass
class _ProgressMeter:
    """This process's training speed, for the ETA (not checkpointed: a resumed run measures
    afresh), and the pacing of progress reports."""

    epochs: int
    total_steps: int
    batch_size: int
    images: int = 0
    train_s: float = 0.0
    last_report: float = 0.0

    def add(self, images: int, seconds: float) -> bool:
        """Count a batch; True when a progress report is due."""
        self.images += images
        self.train_s += seconds
        now = time.monotonic()
        if now - self.last_report < PROGRESS_EVERY_S:
            return False
        self.last_report = now
        return True

    def progress(self, state: RunState) -> Progress:
        ips = self.images / self.train_s if self.train_s > 0 else 0.0
        eta = (self.total_steps - state.step) * self.batch_size / ips if ips > 0 else None
        return Progress(
            epoch=state.epoch + 1,
            epochs=self.epochs,
            step=state.step,
            total_steps=self.total_steps,
            images_per_s=ips,
            eta_s=eta,
        )


def _set_lr(optimizers: list[torch.optim.Optimizer], factor: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * factor


def _train_step(job: _Job, images: torch.Tensor, labels: torch.Tensor, step: int) -> float:
    """One optimizer step on one batch; returns the batch's mean loss."""
    target = job.compute.torch_device
    x = to_model_input(images, job.spec.model.input_size, target)
    y = labels.to(target)
    loss = F.cross_entropy(job.tm.model(x), y)
    for opt in job.optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in job.optimizers:
        opt.step()
    if not torch.isfinite(loss):
        raise DataError(
            f"training diverged (loss {loss.item()}) at step {step}; lower training.lr", field="training.lr"
        )
    return loss.item()


def _epoch_metrics(job: _Job, state: RunState) -> dict[str, float]:
    """The epoch in progress (all its batches done): train loss, speed and lr, and the test
    split every eval_every epochs and after the last."""
    metrics = {
        "train_loss": state.epoch_loss_sum / max(state.epoch_images, 1),
        "images_per_s": state.epoch_images / max(state.epoch_train_s, 1e-9),
        "lr": job.optimizers[0].param_groups[0]["lr"],
    }
    done, training = state.epoch + 1, job.spec.training
    if done % training.eval_every == 0 or done == training.epochs:
        metrics.update(evaluate_split(job.tm.model, job.data.test, job.spec.model.input_size, job.compute.torch_device))
    return metrics


def _epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    line = f"epoch {epoch + 1}/{epochs}  train_loss {metrics['train_loss']:.4f}"
    if "test_accuracy" in metrics:
        line += f"  test_loss {metrics['test_loss']:.4f}  test_acc {100 * metrics['test_accuracy']:.2f}%"
    return line + f"  {metrics['images_per_s']:.0f} img/s"


def _save_checkpoint(job: _Job, state: RunState, *, best: bool = False) -> None:
    """checkpoints/latest.pt, copied to best.pt when ``best``."""
    latest = job.workdir / "checkpoints" / "latest.pt"
    ckpt.save_checkpoint(
        latest,
        {
            "spec": job.spec.model_dump(mode="json"),
            "spec_hash": job.spec.spec_hash(),
            "versions": versions(),
            "class_names": job.data.class_names,
            **state.to_dict(),
            "model": ckpt.capture_model_state(job.tm.model),
            "optimizers": [opt.state_dict() for opt in job.optimizers],
            "rng_torch": torch.get_rng_state(),
        },
    )
    job.cb.on_checkpoint(latest, "latest")
    if best:
        best_path = latest.with_name("best.pt")
        ckpt.copy_atomic(latest, best_path)
        job.cb.on_checkpoint(best_path, "best")


def _use_compute(context: RunContext, cb: Callbacks) -> ComputeTarget:
    """Thread counts and the CPU/CUDA choice, before aihwkit's native libraries load."""
    threads = max(1, int(context.num_threads))
    torch.set_num_threads(threads)
    # aihwkit bundles its own OpenMP/OpenBLAS, which read these when first loaded.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    compute = select_compute(context.compute)
    cb.on_log(f"device: {compute.describe()}, torch threads: {torch.get_num_threads()}")
    return compute


def _load_resume_checkpoint(path: Path | str, spec: JobSpec) -> dict[str, Any]:
    try:
        saved = ckpt.load_checkpoint(Path(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {Path(path).name}: {exc}") from None
    if saved.get("spec_hash") != spec.spec_hash():
        changed = resume_differences(saved.get("spec") or {}, spec)
        if changed:
            raise CheckpointError(
                "the checkpoint was written for a different spec (differs in "
                f"{', '.join(changed)}; only {', '.join(RESUMABLE_CHANGES)} may change)"
            )
    return saved


def _load_data(spec: JobSpec, context: RunContext, saved: dict[str, Any] | None, cb: Callbacks) -> Dataset:
    data = load_dataset(spec.data, Path(context.data_dir), spec.model.input_size)
    if saved is not None and saved["class_names"] != data.class_names:
        raise CheckpointError("the dataset's classes changed since the checkpoint was written")
    cb.on_log(
        f"data: {spec.data.dataset}, {data.num_classes} classes, {len(data.train)} train / {len(data.test)} test images"
    )
    return data


def _build_model_and_optimizers(
    spec: JobSpec,
    num_classes: int,
    context: RunContext,
    compute: ComputeTarget,
    saved: dict[str, Any] | None,
    cb: Callbacks,
) -> tuple[TrainModel, list[torch.optim.Optimizer]]:
    """The model (pretrained, or restored from a checkpoint) on ``compute`` and its optimizers."""
    torch.manual_seed(spec.training.seed)
    # Built and restored on the CPU, then moved: tiles take their saved state the same way
    # whatever hardware the checkpoint was written on.
    tm: TrainModel = build_train_model(
        spec,
        num_classes,
        context,
        torch.device("cpu"),
        log=cb.on_log,
        load_pretrained=saved is None,
    )
    if saved is not None:
        try:
            moved = ckpt.restore_model_state(tm.model, saved["model"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint does not fit the model: {exc}") from None
        if moved["moved"]:
            cb.on_log(
                f"warning: resume clipped {moved['moved']} of {moved['total']} analog "
                f"device states to their bounds (max shift {moved['max_shift']:.2g}; "
                "aihwkit 1.1.0 set_hidden_parameters)"
            )
    tm.model = tm.model.to(compute.torch_device)
    optimizers = tm.make_optimizers()  # after any restore: aihwkit swaps tile contexts on load
    if saved is not None:
        for opt, saved_opt in zip(optimizers, saved["optimizers"]):
            opt.load_state_dict(saved_opt)
        torch.set_rng_state(saved["rng_torch"])
    return tm, optimizers


def _write_final_weights(job: _Job) -> FinalWeights:
    """The trained model converted to digital, saved as weights.safetensors, and evaluated."""
    from aihwkit.nn.conversion import convert_to_digital

    spec, model, data = job.spec, job.tm.model, job.data
    digital = convert_to_digital(model.cpu() if job.compute.kind == "cpu" else model, inplace=False).cpu()
    path = job.workdir / "weights.safetensors"
    save_final_weights(
        path,
        digital,
        {
            "arch": spec.model.arch,
            "img_size": spec.model.input_size,
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "spec_hash": spec.spec_hash(),
            "algorithm": spec.algorithm,
            "dataset": spec.data.dataset,
            "format": "cttv2-weights/1",
        },
    )
    return FinalWeights(path, evaluate_split(digital, data.test, spec.model.input_size, torch.device("cpu")))


def _finish(job: _Job, state: RunState, status: str, weights: FinalWeights | None = None) -> RunResult:
    final = _final_metrics(state, weights, time.time() - job.t_start)
    result = RunResult(
        status=status,  # type: ignore[arg-type]
        final=final,
        history=state.history,
        weights_path=weights.path if weights else None,
        environment=environment(job.spec, job.compute, job.tm),
    )
    # The file is for users: the weights path relative to the job's folder, not the server's.
    _write_json(
        job.workdir / "result.json",
        {
            **asdict(result),
            "weights_path": weights.path.name if weights else None,
        },
    )
    if status == "completed":
        acc_text = f"{100 * final['test_accuracy']:.2f}%" if "test_accuracy" in final else "n/a"
        job.cb.on_log(f"done: test accuracy {acc_text} in {final['wall_s']:.1f} s")
    return result


def _final_metrics(state: RunState, weights: FinalWeights | None, wall_s: float) -> dict[str, float]:
    """The last evaluated epoch's test metrics, the last train loss, the best epoch, the wall
    time and (when completed) the digital copy's test metrics."""
    evaluated = [h for h in state.history if "test_accuracy" in h]
    last = evaluated[-1] if evaluated else {}
    final: dict[str, float] = {key: last[key] for key in ("test_accuracy", "test_error", "test_loss") if key in last}
    if state.history:
        final["train_loss"] = state.history[-1]["train_loss"]
    if state.best_epoch:
        final["best_epoch"] = state.best_epoch
        final["best_test_accuracy"] = state.best_accuracy
    final["wall_s"] = wall_s
    if weights is not None:
        final["digital_test_accuracy"] = weights.digital_metrics["test_accuracy"]
        final["digital_test_loss"] = weights.digital_metrics["test_loss"]
    return final


def versions() -> dict[str, str]:
    import aihwkit
    import timm

    return {
        "torch": str(torch.__version__),
        "aihwkit": str(aihwkit.__version__),
        "timm": str(timm.__version__),
        "python": platform.python_version(),
    }


def environment(spec: JobSpec, compute: ComputeTarget, tm: TrainModel) -> dict[str, Any]:
    # Public keys (result JSON, API, SDK): "device" is the compute hardware, cpu or cuda.
    return {
        **versions(),
        "device": compute.kind,
        "gpu_name": compute.gpu_name,
        "aihwkit_cuda_compiled": compute.aihwkit_cuda_compiled,
        "torch_cuda_available": compute.torch_cuda_available,
        "torch_threads": torch.get_num_threads(),
        "seed": spec.training.seed,
        "construction_seed": tm.construction_seed,
        "analog_layers": len(tm.analog_layers),
        "analog_tiles": tm.num_tiles,
        "parameters": tm.num_parameters,
        "trainable_digital_parameters": tm.num_trainable_digital,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "pid": os.getpid(),
    }


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def default_context() -> RunContext:
    return RunContext(
        data_dir=Path(os.environ.get("CTTV2_DATA_DIR", "data")),
        weights_dir=Path(os.environ.get("CTTV2_WEIGHTS_DIR", "weights")),
        compute=os.environ.get("CTTV2_DEVICE", "auto"),  # type: ignore[arg-type]
    )
