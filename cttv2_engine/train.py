"""``run()``: one training job from a validated spec to a finished (or stopped) run.

The loop is kept short and visible; building the model, the optimizers and the checkpoints
live in their own modules. Every epoch is checkpointed atomically; should_stop() is checked at
batch boundaries and leaves a checkpoint that resumes exactly there (the batch order is a
function of (seed, epoch), so the batches already done are skipped).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cttv2_engine import checkpoint as ckpt
from cttv2_engine.build import TrainModel, build_train_model
from cttv2_engine.data import batches_per_epoch, load_dataset, to_model_input, train_batches
from cttv2_engine.errors import CheckpointError, DataError
from cttv2_engine.hardware import select_device
from cttv2_engine.semantics import RESUMABLE_CHANGES, resume_differences, validate_spec_semantics
from cttv2_engine.spec import JobSpec
from cttv2_engine.types import Callbacks, NullCallbacks, Progress, RunContext, RunResult
from cttv2_engine.weights import evaluate_split, save_final_weights

PROGRESS_EVERY_S = 1.0


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
    workdir = Path(workdir)
    t_start = time.time()

    hardware = _use_hardware(context, cb)
    device = torch.device(hardware.device)
    state = _load_resume_state(resume_from, spec) if resume_from else None
    img_size = spec.model.input_size
    data = load_dataset(spec.data, Path(context.data_dir), img_size)
    if state is not None and state["class_names"] != data.class_names:
        raise CheckpointError("the dataset's classes changed since the checkpoint was written")
    cb.on_log(f"data: {spec.data.dataset}, {data.num_classes} classes, "
              f"{len(data.train)} train / {len(data.test)} test images")
    tm, optimizers = _build_model_and_optimizers(spec, data.num_classes, context, device, state, cb)
    (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)  # only once all checks passed

    # ---- the loop -------------------------------------------------------------------------
    bs, epochs = spec.training.batch_size, spec.training.epochs
    steps_per_epoch = batches_per_epoch(data.train, bs)
    total_steps = steps_per_epoch * epochs
    epoch = state["epoch"] if state else 0  # 0-based epoch in progress
    batch = state["batch"] if state else 0  # batches of it already done
    step = state["step"] if state else 0  # optimizer steps done
    history: list[dict[str, float]] = state["history"] if state else []
    best = state["best"] if state else {"test_accuracy": -1.0, "epoch": 0}
    acc = state["accum"] if state else {"loss": 0.0, "seen": 0, "train_s": 0.0}
    run_images, run_train_s = 0, 0.0  # this process only: for the ETA
    last_progress = 0.0

    def checkpoint_payload() -> dict[str, Any]:
        return {
            "spec": spec.model_dump(mode="json"),
            "spec_hash": spec.spec_hash(),
            "versions": versions(),
            "class_names": data.class_names,
            "epoch": epoch, "batch": batch, "step": step,
            "history": history, "best": best, "accum": dict(acc),
            "model": ckpt.capture_model_state(tm.model),
            "optimizers": [opt.state_dict() for opt in optimizers],
            "rng_torch": torch.get_rng_state(),
        }

    def save_latest() -> Path:
        path = workdir / "checkpoints" / "latest.pt"
        ckpt.save_checkpoint(path, checkpoint_payload())
        cb.on_checkpoint(path, "latest")
        return path

    tm.model.train()
    while epoch < epochs:
        for images, labels in train_batches(data.train, bs, spec.training.seed, epoch, batch):
            if cb.should_stop():
                save_latest()
                cb.on_log(f"stopped at epoch {epoch + 1}, batch {batch}/{steps_per_epoch}")
                return _finish(workdir, "stopped", spec, history, best, None, hardware,
                               context, tm, t_start, cb)
            t0 = time.perf_counter()
            step += 1
            factor = lr_factor(spec, step, total_steps)
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * factor
            x = to_model_input(images, img_size, device)
            y = labels.to(device)
            loss = F.cross_entropy(tm.model(x), y)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            if not torch.isfinite(loss):
                raise DataError(f"training diverged (loss {loss.item()}) at step {step}; "
                                "lower training.lr", field="training.lr")
            dt = time.perf_counter() - t0
            batch += 1
            acc["loss"] += loss.item() * len(labels)
            acc["seen"] += len(labels)
            acc["train_s"] += dt
            run_images += len(labels)
            run_train_s += dt
            now = time.monotonic()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                cb.on_progress(_progress(epoch, epochs, step, total_steps, run_images,
                                         run_train_s, bs))

        # ---- end of epoch: evaluate, report, checkpoint --------------------------------
        images_per_s = acc["seen"] / max(acc["train_s"], 1e-9)
        metrics = {
            "train_loss": acc["loss"] / max(acc["seen"], 1),
            "images_per_s": images_per_s,
            "lr": optimizers[0].param_groups[0]["lr"],
        }
        evaluate_now = (epoch + 1) % spec.training.eval_every == 0 or epoch + 1 == epochs
        if evaluate_now:
            metrics.update(evaluate_split(tm.model, data.test, img_size, device))
        history.append({"epoch": epoch + 1, "step": step, **metrics})
        cb.on_metrics(step, epoch + 1, metrics)
        cb.on_progress(_progress(epoch, epochs, step, total_steps, run_images, run_train_s, bs))
        line = f"epoch {epoch + 1}/{epochs}  train_loss {metrics['train_loss']:.4f}"
        if evaluate_now:
            line += (f"  test_loss {metrics['test_loss']:.4f}  "
                     f"test_acc {100 * metrics['test_accuracy']:.2f}%")
        cb.on_log(line + f"  {images_per_s:.0f} img/s")

        is_best = evaluate_now and metrics["test_accuracy"] > best["test_accuracy"]
        if is_best:
            best = {"test_accuracy": metrics["test_accuracy"], "epoch": epoch + 1}
        epoch, batch = epoch + 1, 0
        acc = {"loss": 0.0, "seen": 0, "train_s": 0.0}
        latest = save_latest()
        if is_best:
            best_path = workdir / "checkpoints" / "best.pt"
            ckpt.copy_atomic(latest, best_path)
            cb.on_checkpoint(best_path, "best")

    weights_path = _write_final_weights(workdir, spec, tm, data, hardware)
    return _finish(workdir, "completed", spec, history, best, weights_path, hardware, context,
                   tm, t_start, cb)


def _progress(epoch: int, epochs: int, step: int, total_steps: int, images: int,
              train_s: float, bs: int) -> Progress:
    ips = images / train_s if train_s > 0 else 0.0
    eta = (total_steps - step) * bs / ips if ips > 0 else None
    return Progress(epoch=epoch + 1, epochs=epochs, step=step, total_steps=total_steps,
                    images_per_s=ips, eta_s=eta)


def _use_hardware(context: RunContext, cb: Callbacks):
    """Thread counts and the CPU/CUDA choice, before aihwkit's native libraries load."""
    threads = max(1, int(context.num_threads))
    torch.set_num_threads(threads)
    # aihwkit bundles its own OpenMP/OpenBLAS, which read these when first loaded.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    hardware = select_device(context.device)
    cb.on_log(f"device: {hardware.describe()}, torch threads: {torch.get_num_threads()}")
    return hardware


def _build_model_and_optimizers(spec: JobSpec, num_classes: int, context: RunContext, device: torch.device,
                                state: dict[str, Any] | None, cb: Callbacks) -> tuple[TrainModel, list]:
    """The model (pretrained, or restored from a checkpoint) on ``device`` and its optimizers."""
    torch.manual_seed(spec.training.seed)
    # Built and restored on the CPU, then moved: tiles take their saved state the same way
    # whatever device the checkpoint was written on.
    tm: TrainModel = build_train_model(
        spec, num_classes, context, torch.device("cpu"), log=cb.on_log,
        load_pretrained=state is None,
    )
    if state is not None:
        try:
            moved = ckpt.restore_model_state(tm.model, state["model"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint does not fit the model: {exc}") from None
        if moved["moved"]:
            cb.on_log(f"warning: resume clipped {moved['moved']} of {moved['total']} analog "
                      f"device states to their bounds (max shift {moved['max_shift']:.2g}; "
                      "aihwkit 1.1.0 set_hidden_parameters)")
    tm.model = tm.model.to(device)
    optimizers = tm.make_optimizers()  # after any restore: aihwkit swaps tile contexts on load
    if state is not None:
        for opt, saved in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(saved)
        torch.set_rng_state(state["rng_torch"])
    return tm, optimizers


def _load_resume_state(path: Path | str, spec: JobSpec) -> dict[str, Any]:
    try:
        state = ckpt.load_checkpoint(Path(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {Path(path).name}: {exc}") from None
    if state.get("spec_hash") != spec.spec_hash():
        changed = resume_differences(state.get("spec") or {}, spec)
        if changed:
            raise CheckpointError(
                "the checkpoint was written for a different spec (differs in "
                f"{', '.join(changed)}; only {', '.join(RESUMABLE_CHANGES)} may change)"
            )
    return state


def _write_final_weights(workdir: Path, spec: JobSpec, tm: TrainModel, data, hardware) -> Path:
    from aihwkit.nn.conversion import convert_to_digital

    digital = convert_to_digital(tm.model.cpu() if hardware.device == "cpu" else tm.model,
                                 inplace=False).cpu()
    tm.digital_model = digital
    path = workdir / "weights.safetensors"
    save_final_weights(path, digital, {
        "arch": spec.model.arch,
        "img_size": spec.model.input_size,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "spec_hash": spec.spec_hash(),
        "algorithm": spec.algorithm,
        "dataset": spec.data.dataset,
        "format": "cttv2-weights/1",
    })
    tm.digital_metrics = evaluate_split(digital, data.test, spec.model.input_size,
                                        torch.device("cpu"))
    return path


def _finish(workdir: Path, status: str, spec: JobSpec, history: list, best: dict,
            weights_path: Path | None, hardware, context: RunContext, tm: TrainModel,
            t_start: float, cb: Callbacks) -> RunResult:
    evaluated = [h for h in history if "test_accuracy" in h]
    last = evaluated[-1] if evaluated else {}
    final: dict[str, float] = {}
    for key in ("test_accuracy", "test_error", "test_loss"):
        if key in last:
            final[key] = last[key]
    if history:
        final["train_loss"] = history[-1]["train_loss"]
    if best["epoch"]:
        final["best_epoch"] = best["epoch"]
        final["best_test_accuracy"] = best["test_accuracy"]
    final["wall_s"] = time.time() - t_start
    if getattr(tm, "digital_metrics", None):
        final["digital_test_accuracy"] = tm.digital_metrics["test_accuracy"]
        final["digital_test_loss"] = tm.digital_metrics["test_loss"]
    result = RunResult(
        status=status,  # type: ignore[arg-type]
        final=final,
        history=history,
        weights_path=weights_path,
        environment=environment(spec, hardware, context, tm),
    )
    # The file is for users: the weights path relative to the job's folder, not the server's.
    _write_json(workdir / "result.json", {
        **asdict(result),
        "weights_path": weights_path.name if weights_path is not None else None,
    })
    if status == "completed":
        acc_text = f"{100 * final['test_accuracy']:.2f}%" if "test_accuracy" in final else "n/a"
        cb.on_log(f"done: test accuracy {acc_text} in {final['wall_s']:.1f} s")
    return result


def versions() -> dict[str, str]:
    import aihwkit
    import timm

    return {"torch": str(torch.__version__), "aihwkit": str(aihwkit.__version__),
            "timm": str(timm.__version__), "python": platform.python_version()}


def environment(spec: JobSpec, hardware, context: RunContext, tm: TrainModel) -> dict[str, Any]:
    return {
        **versions(),
        "device": hardware.device,
        "gpu_name": hardware.gpu_name,
        "aihwkit_cuda_compiled": hardware.aihwkit_cuda_compiled,
        "torch_cuda_available": hardware.torch_cuda_available,
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
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def default_context() -> RunContext:
    return RunContext(
        data_dir=Path(os.environ.get("CTTV2_DATA_DIR", "data")),
        weights_dir=Path(os.environ.get("CTTV2_WEIGHTS_DIR", "weights")),
        device=os.environ.get("CTTV2_DEVICE", "auto"),  # type: ignore[arg-type]
    )
