"""A few c-TTv2 training steps of swin_tiny_patch4_window7_224 at 224x224 on one device.

    python benchmarks/gpu_swin_tiny.py --device cuda --batch 32 --steps 5
    python benchmarks/gpu_swin_tiny.py --device cpu --batch 4 --steps 2 --max-seconds 120

Prints one table row (step times, images/s, memory) and, with --json, writes the same as JSON.
One device per process, so GPU memory figures belong to that run alone. Random images: this
measures speed, not learning (no dataset download, no pretrained weights).

The model and its analog conversion come from the engine (cttv2_engine.build) when it is
importable, so the benchmark times what a worker runs; otherwise from aihwkit directly, with
the engine's recipe (c-TTv2 on SoftBoundsReference, dw_min 0.01, fast_lr 0.5,
auto_granularity 1000, desired_bl 5, transfer_every scaled by tokens per sample). The row
says which path ran. scripts/gpu-check.sh runs this on a GPU machine after building aihwkit
with CUDA.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ARCH = "swin_tiny_patch4_window7_224"
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--img", type=int, default=224)
    p.add_argument(
        "--scope",
        default="all",
        choices=["all", "last_stage"],
        help="which layers are analog (the rest frozen digital)",
    )
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop timing after this long (at least one timed step runs)",
    )
    p.add_argument("--path", choices=["auto", "engine", "aihwkit"], default="auto")
    p.add_argument("--json", type=Path, help="also write the result here")
    return p.parse_args(argv)


# --- Building the analog model --------------------------------------------------------------


def build_with_engine(args: argparse.Namespace, device: torch.device):
    sys.path.insert(0, str(ROOT))
    from cttv2_engine.build import build_train_model
    from cttv2_engine.spec import JobSpec
    from cttv2_engine.types import RunContext

    spec = JobSpec.model_validate(
        {
            "algorithm": "c-ttv2",
            "model": {"arch": ARCH, "img_size": args.img, "analog_scope": args.scope},
            "training": {"batch_size": args.batch},
        }
    )
    scratch = Path(tempfile.mkdtemp(prefix="cttv2-bench-"))
    context = RunContext(data_dir=scratch, weights_dir=scratch, compute=args.device)
    tm = build_train_model(spec, args.num_classes, context, device, load_pretrained=False)
    return tm.model, tm.make_optimizers(), tm.num_tiles


def tokens_per_sample(model: nn.Module, img: int) -> dict[str, int]:
    """Mat-vecs each Linear/Conv2d does per image: aihwkit counts each as one update."""
    tokens: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, o, name=name: tokens.__setitem__(name, i[0].numel() // i[0].shape[0] // m.in_features)
                )
            )
        elif isinstance(module, nn.Conv2d):
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, o, name=name: tokens.__setitem__(name, o.shape[-1] * o.shape[-2])
                )
            )
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, img, img))
    for h in hooks:
        h.remove()
    model.train()
    return tokens


def build_with_aihwkit(args: argparse.Namespace, device: torch.device):
    import timm
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator.configs import build_config
    from aihwkit.simulator.configs.devices import SoftBoundsReferenceDevice
    from aihwkit.simulator.parameters import UpdateParameters

    model = timm.create_model(ARCH, pretrained=False, num_classes=args.num_classes, img_size=args.img)
    tokens = tokens_per_sample(model, args.img)
    config = build_config(
        "c-ttv2",
        SoftBoundsReferenceDevice(dw_min=0.01),
        up_parameters=UpdateParameters(desired_bl=5),
    )
    config.device.fast_lr = 0.5
    config.device.auto_granularity = 1000
    analog_prefixes = ("",) if args.scope == "all" else ("layers.3", "head")
    digital_layers = [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and not n.startswith(analog_prefixes)
    ]

    def per_layer(name: str, module: nn.Module, cfg):
        cfg = copy.deepcopy(cfg)
        cfg.device.transfer_every = cfg.device.transfer_every * max(1, tokens.get(name, 1))
        return cfg

    model = convert_to_analog(
        model,
        config,
        specific_rpu_config_fun=per_layer,
        exclude_modules=digital_layers,
        inplace=True,
    ).to(device)
    # As the engine does: analog tiles train with AnalogSGD, digital parameters inside the
    # analog scope (norms, biases of digital ops) with AdamW, everything else stays frozen.
    from aihwkit.optim.context import AnalogContext

    analog = [p for p in model.parameters() if isinstance(p, AnalogContext)]
    digital = []
    for name, param in model.named_parameters():
        if isinstance(param, AnalogContext):
            continue
        param.requires_grad_(name.startswith(analog_prefixes))
        if param.requires_grad:
            digital.append(param)
    optimizers = [AnalogSGD(analog, lr=1.0)]
    if digital:
        optimizers.append(torch.optim.AdamW(digital, lr=1e-3))
    return model, optimizers, sum(1 for _ in model.analog_tiles())


# --- Timing ------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: nn.Module, optimizers, x: torch.Tensor, y: torch.Tensor) -> float:
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for opt in optimizers:
        opt.step()
    return float(loss.detach())


def gpu_used_bytes() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


def run(args: argparse.Namespace) -> dict:
    import aihwkit
    from aihwkit.simulator.rpu_base import cuda as rpu_cuda

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not rpu_cuda.is_compiled():
            raise SystemExit("aihwkit has no CUDA compiled in: build it with scripts/build-aihwkit-cuda.sh")
        if not torch.cuda.is_available():
            raise SystemExit("torch sees no CUDA GPU")
        torch.cuda.reset_peak_memory_stats(device)
        used_before = gpu_used_bytes()

    torch.manual_seed(0)
    t0 = time.perf_counter()
    path, why_not_engine = args.path, None
    if path in ("auto", "engine"):
        try:
            model, optimizers, tiles = build_with_engine(args, device)
            path = "engine"
        except Exception as exc:  # the engine is optional here: say why, then go direct
            if args.path == "engine":
                raise
            why_not_engine = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            path = "aihwkit"
            if device.type == "cuda":  # whatever the failed attempt allocated is not this run's
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                used_before = gpu_used_bytes()
    if path == "aihwkit":
        model, optimizers, tiles = build_with_aihwkit(args, device)
    build_s = time.perf_counter() - t0
    model.train()

    x = torch.randn(args.batch, 3, args.img, args.img, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    for _ in range(args.warmup):
        train_step(model, optimizers, x, y)
    sync(device)

    times: list[float] = []
    losses: list[float] = []
    started = time.perf_counter()
    for _ in range(args.steps):
        t = time.perf_counter()
        losses.append(train_step(model, optimizers, x, y))
        sync(device)
        times.append(time.perf_counter() - t)
        if args.max_seconds and time.perf_counter() - started > args.max_seconds:
            break

    median = statistics.median(times)
    result = {
        "arch": ARCH,
        "img": args.img,
        "batch": args.batch,
        "scope": args.scope,
        "device": args.device,
        "path": path,
        "why_not_engine": why_not_engine,
        "analog_tiles": tiles,
        "build_s": round(build_s, 2),
        "warmup_steps": args.warmup,
        "step_s": [round(t, 4) for t in times],
        "median_step_s": round(median, 4),
        "images_per_s": round(args.batch / median, 2),
        "loss_finite": all(math.isfinite(v) for v in losses),
        "torch": torch.__version__,
        "aihwkit": aihwkit.__version__,
        "aihwkit_cuda_compiled": bool(rpu_cuda.is_compiled()),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        result.update(
            {
                "gpu": torch.cuda.get_device_name(device),
                "gpu_peak_torch_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
                "gpu_peak_torch_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 3),
                # aihwkit's own tile buffers are not all allocated through torch: count the device.
                "gpu_used_by_run_gib": round((gpu_used_bytes() - used_before) / 2**30, 3),
            }
        )
    return result


def print_row(r: dict) -> None:
    mem = (
        f"{r['gpu_used_by_run_gib']:.2f} GiB used (torch peak {r['gpu_peak_torch_allocated_gib']:.2f})"
        if r["device"] == "cuda"
        else "-"
    )
    print(
        f"| {r['device']:4} | {r.get('gpu', r['cpu'])} | {r['batch']:5} | {r['scope']} | "
        f"{r['analog_tiles']} | {r['median_step_s']:.3f} s | {r['images_per_s']:.1f} | {mem} | "
        f"{len(r['step_s'])} | {r['path']} |"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print("| device | chip | batch | analog | tiles | median step | images/s | memory | steps | path |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print_row(result)
    print("step times (s):", result["step_s"])
    if result["why_not_engine"]:
        print("engine path not used:", result["why_not_engine"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
