"""Engine overhead benchmark (not a test): time per training step through ``cttv2_engine.run``
versus a bare hand-written aihwkit loop on the same model, batches and RPU config.

    PYTHONPATH=. python benchmarks/engine.py [--scope last_stage|all|head] [--batch 16]

Each measurement runs in its own process (clean peak memory, one torch thread). A step is
timed wall-clock between consecutive batch starts, so everything the engine does per batch
(batching, lr schedule, callbacks, should_stop) counts; the first steps are warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALGORITHMS = ("fp", "sgd", "c-ttv2")
WARMUP = 3


def job_spec(algorithm: str, scope: str, batch: int, per_class: int) -> dict:
    spec = {
        "algorithm": algorithm,
        "model": {"arch": "swin_micro", "analog_scope": scope, "digital_parts": "frozen"},
        "data": {"dataset": "digits", "classes": [0, 1, 2, 3, 4], "train_per_class": per_class, "test_per_class": 2},
        "training": {"epochs": 1, "batch_size": batch, "seed": 0, "schedule": "constant"},
    }
    if algorithm != "fp":
        spec["device"] = {"family": "SoftBoundsReference", "sp_variability": 0.05}
    return spec


def measure_engine(spec: dict) -> list[float]:
    """Batch-start times seen by should_stop(), which the engine polls before every batch."""
    from cttv2_engine import RunContext, run

    starts: list[float] = []

    class Timer:
        def on_progress(self, p):
            pass

        def on_metrics(self, step, epoch, metrics):
            pass

        def on_checkpoint(self, path, kind):
            pass

        def on_log(self, line):
            pass

        def should_stop(self) -> bool:
            starts.append(time.perf_counter())
            return False

    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(data_dir=Path(tmp), weights_dir=Path(tmp), compute="auto")
        run(spec, workdir=Path(tmp) / "job", callbacks=Timer(), context=ctx)
    return starts


def measure_bare(spec: dict) -> list[float]:
    """The same model, config and batches in a plain loop: the floor the engine is held to."""
    import torch
    import torch.nn.functional as F
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.optim import AnalogSGD

    from cttv2_engine import models
    from cttv2_engine.data import load_dataset, to_model_input, train_batches
    from cttv2_engine.devices import build_rpu_config, per_layer_config
    from cttv2_engine.hardware import select_compute
    from cttv2_engine.presets import DEFAULT_LR
    from cttv2_engine.spec import JobSpec

    js = JobSpec.model_validate(spec)
    device = select_compute("auto").torch_device
    data = load_dataset(js.data, Path("."), 32)
    torch.manual_seed(0)
    model = models.build_model("swin_micro", 32, data.num_classes)
    prefixes = models.scope_prefixes("swin_micro", js.model.analog_scope)
    if js.algorithm == "fp":
        params = models.digital_parameters(model, prefixes, False)
        optimizers = [torch.optim.AdamW(params, lr=DEFAULT_LR["fp"])]
    else:
        names = models.analog_layer_names(model, prefixes)
        tokens = models.tokens_per_sample(model, 32, names)
        config = build_rpu_config(js.algorithm, js.device, js.algorithm_options)
        exclude = [n for n, m in model.named_modules() if isinstance(m, models.ANALOG_CAPABLE) and n not in names]
        model = convert_to_analog(
            model,
            config,
            exclude_modules=exclude,
            inplace=True,
            specific_rpu_config_fun=lambda n, m, c: per_layer_config(c, tokens.get(n, 1)),
        )
        digital = models.digital_parameters(model, prefixes, False)
        optimizers = [
            torch.optim.AdamW(digital, lr=1e-3),
            AnalogSGD(models.analog_parameters(model), lr=DEFAULT_LR[js.algorithm]),
        ]
    model = model.to(device).train()
    starts = []
    for images, labels in train_batches(data.train, js.training.batch_size, 0, 0):
        starts.append(time.perf_counter())
        loss = F.cross_entropy(model(to_model_input(images, 32, device)), labels.to(device))
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        loss.item()
    starts.append(time.perf_counter())
    return starts


def one(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    spec = job_spec(args.one, args.scope, args.batch, args.per_class)
    starts = (measure_engine if args.impl == "engine" else measure_bare)(spec)
    steps = [b - a for a, b in itertools.pairwise(starts)][WARMUP:]
    step_s = sorted(steps)[len(steps) // 2]  # median: robust to a stray slow step
    peak_gpu = (torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None
    print(
        json.dumps(
            {
                "step_ms": 1000 * step_s,
                "images_per_s": args.batch / step_s,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_gpu_mb": peak_gpu,
                "steps": len(steps),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scope", default="last_stage", choices=["head", "last_stage", "all"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--per-class", type=int, default=64, help="train images per class")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pair")
    parser.add_argument("--one", choices=ALGORITHMS, help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["engine", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args)

    print(
        f"swin_micro, digits 0-4 ({5 * args.per_class} images), batch {args.batch}, "
        f"analog scope {args.scope}, 1 torch thread; median step after {WARMUP} warm-up, "
        f"best of {args.rounds} alternating rounds"
    )
    header = (
        f"{'algorithm':<10} {'engine img/s':>13} {'bare img/s':>11} {'time engine/bare':>17} "
        f"{'step ms':>8} {'peak RSS MB (engine/bare)':>27}"
    )
    print(header)
    print("-" * len(header))
    for algorithm in ALGORITHMS:
        best: dict[str, dict] = {}
        # Alternate engine and bare runs and keep each one's best round: on a shared machine
        # the slowest rounds measure the neighbours, not the code.
        for _ in range(args.rounds):
            for impl in ("engine", "bare"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    algorithm,
                    "--impl",
                    impl,
                    "--scope",
                    args.scope,
                    "--batch",
                    str(args.batch),
                    "--per-class",
                    str(args.per_class),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                if impl not in best or res["images_per_s"] > best[impl]["images_per_s"]:
                    best[impl] = res
        e, b = best["engine"], best["bare"]
        print(
            f"{algorithm:<10} {e['images_per_s']:>13.1f} {b['images_per_s']:>11.1f} "
            f"{b['images_per_s'] / e['images_per_s']:>17.3f} {e['step_ms']:>8.1f} "
            f"{e['peak_rss_mb']:>15.0f} / {b['peak_rss_mb']:.0f}"
        )
        if e.get("peak_gpu_mb") is not None:
            print(f"{'':<10} peak GPU MB engine {e['peak_gpu_mb']:.0f} / bare {b['peak_gpu_mb']:.0f}")


if __name__ == "__main__":
    main()
