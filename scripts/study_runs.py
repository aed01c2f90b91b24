"""Measurements behind the recipes and the headline, run on the engine directly (no service).

Each named set is a list of fine-tuning runs on the CPU study's task (a model pretrained
digitally on digits 0-4, fine-tuned on digits 5-9, every layer analog, the reference device).
Every run is appended to OUT/runs.jsonl as it finishes (a rerun skips the runs already there),
with its test curve, the final accuracy read through the chip's noisy periphery, and the same
trained weights read perfectly (no read noise, no converters: ``digital_test_accuracy``), so a
gap to digital splits into "learned worse" and "read worse". Then OUT/tables.md and the set's
figure are written from runs.jsonl alone.

    .venv/bin/python scripts/study_runs.py headline [--workers 2]        (docs/study/headline)
    .venv/bin/python scripts/study_runs.py resnet-recipe [--workers 2]   (docs/study/resnet-recipe)
    .venv/bin/python scripts/study_runs.py headline --report-only

Sets:
- headline: c-TTv2 against TTv2 at 8, 16 and 32 epochs (3 seeds; 32 epochs: 2); c-TTv2 with
  regular choppers (every column flips after every 10 full reads of A, all at once) against
  random ones at the same rate; the digital baseline (AdamW 3e-3, 16 epochs); swin_micro.
- transfer-floor: c-TTv2 and TTv2 with every layer's A read at least once per update (the
  recipe's period rounds to no transfer at all in layers with fewer than 8 tokens per image).
- transfer-rate: c-TTv2 at twice the recipe's transfer lr (the choppers halve what reaches the
  slow tile), at the reference device and at SP skew 0.3.
- resnet-recipe: the recipe's lr on resnet_micro around Swin's values (c-TTv2, SGD, digital).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The CPU study's reference device (examples/study-cpu-paper-*.yaml).
REFERENCE_DEVICE = {
    "family": "SoftBoundsReference",
    "n_states": 200,
    "sp_variability": 0.05,
    "out_noise": 0.06,
    "dac_bits": 7,
    "adc_bits": 9,
}
SEEDS = (0, 1, 2)


def finetune(arch: str, algorithm: str, epochs: int = 8, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """A run of the CPU study's task: `extra` sets lr, device and algorithm_options."""
    spec: dict[str, Any] = {
        "algorithm": algorithm,
        "model": {"arch": arch, "pretrained": {"weights": f"{arch}.safetensors"}, "analog_scope": "all"},
        "data": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed, "schedule": "cosine"},
    }
    spec["model"]["digital_parts"] = "trained"
    if algorithm != "fp":
        spec["device"] = REFERENCE_DEVICE | extra.get("device", {})
        spec["algorithm_options"] = extra.get("options", {})
    if "lr" in extra:
        spec["training"]["lr"] = extra["lr"]
    return spec


def _label(arch: str, algorithm: str, epochs: int, seed: int, **extra: Any) -> str:
    parts = [arch, algorithm, f"{epochs}ep", f"seed{seed}"]
    for key in ("lr", "device", "options"):
        if key in extra:
            parts.append(f"{key}={json.dumps(extra[key], sort_keys=True)}")
    return " ".join(parts)


def runs_of(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, arch, spec) of every run of a set, most telling first."""
    out: list[tuple[str, str, dict[str, Any]]] = []

    def add(arch: str, algorithm: str, epochs: int = 8, seed: int = 0, floor: bool = False, **extra: Any) -> None:
        label = _label(arch, algorithm, epochs, seed, **extra) + (" floor" if floor else "")
        spec = finetune(arch, algorithm, epochs, seed, **extra)
        if floor:
            spec["_floor"] = True  # taken out by one_run: not a spec field
        out.append((label, arch, spec))

    if name == "headline":
        arch = "swin_micro"
        for seed in SEEDS:
            add(arch, "fp", 16, seed, lr=3e-3)
        # 32 epochs: 2 seeds (a third did not fit the CPU time of the session that measured it).
        for epochs, seeds in ((8, SEEDS), (16, SEEDS), (32, SEEDS[:2])):
            for seed in seeds:
                for algorithm in ("c-ttv2", "ttv2"):
                    add(arch, algorithm, epochs, seed)
            if epochs == 8:
                for seed in SEEDS:
                    add(arch, "c-ttv2", 8, seed, options={"in_chop_random": False})
    elif name == "resnet-recipe":
        arch = "resnet_micro"
        for lr in (1e-3, 3e-3, 1e-2):
            add(arch, "fp", 16, 0, lr=lr)
        for lr in (1.0, 3.0, 10.0):
            add(arch, "c-ttv2", 8, 0, lr=lr)
        for lr in (0.03, 0.1, 0.3, 1.0):
            add(arch, "sgd", 8, 0, lr=lr)
        add(arch, "c-ttv2", 8, 0, device={"sp_skew": 0.3})
        add(arch, "ttv2", 8, 0)
        add(arch, "c-ttv2", 8, 1)
    elif name == "transfer-floor":
        # Layers with fewer than 8 tokens (pixels) per image: the recipe's transfer_every of 1/16
        # image rounds to 0 updates in aihwkit 1.1.0 (roundf), and their slow tile C never gets a
        # transfer. "floor" reads A at least once per update there, at the same transfer rate.
        for seed in (0, 1):
            for algorithm in ("c-ttv2", "ttv2"):
                add("swin_micro", algorithm, 8, seed, floor=True)
        add("swin_micro", "c-ttv2", 8, 2, floor=True)
        for seed in (0, 1):  # the robustness the recipe must keep: the largest SP skew
            add("swin_micro", "c-ttv2", 8, seed, floor=True, device={"sp_skew": 0.3})
    elif name == "transfer-rate":
        # The choppers halve what reaches the slow tile under a steady gradient (at the recipe's
        # in_chop_prob, tests/engine/test_chopper.py): c-TTv2 at twice the recipe's transfer lr.
        for seed in SEEDS:
            add("swin_micro", "c-ttv2", 8, seed, lr=6.0)
        for seed in (0, 1):
            add("swin_micro", "c-ttv2", 8, seed, lr=6.0, device={"sp_skew": 0.3})
    else:
        raise SystemExit(f"unknown set {name!r} (headline, resnet-recipe, transfer-floor, transfer-rate)")
    return out


def pretrain(root: Path, arch: str) -> None:
    """The model digitally pretrained on digits 0-4 as examples/demo-pretrain.yaml does it."""
    import yaml

    from cttv2_engine import RunContext, run

    target = root / "weights" / f"{arch}.safetensors"
    if target.exists():
        return
    spec = yaml.safe_load((ROOT / "examples" / "demo-pretrain.yaml").read_text())
    spec["model"]["arch"] = arch
    ctx = RunContext(data_dir=root, weights_dir=root / "weights", compute="cpu")
    result = run(spec, workdir=root / f"pretrain-{arch}", context=ctx)
    print(f"pretrained {arch}: {100 * result.final['test_accuracy']:.1f}% on digits 0-4", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    (root / f"pretrain-{arch}" / "weights.safetensors").rename(target)


def one_run(root: str, label: str, spec: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from cttv2_engine import RunContext, run

    ctx = RunContext(data_dir=Path(root), weights_dir=Path(root) / "weights", compute="cpu")
    if spec.pop("_floor", False):
        _floor_transfer_period()
    workdir = Path(root) / "work" / label.replace(" ", "_").replace('"', "").replace("/", "_")[:150]
    result = run(spec, workdir=workdir, context=ctx)
    return {
        "label": label,
        "spec": spec,
        "curve": [h["test_accuracy"] for h in result.history if "test_accuracy" in h],
        "final": result.final.get("test_accuracy"),
        "perfect_read": result.final.get("digital_test_accuracy"),
        "wall_s": result.final.get("wall_s"),
    }


def _floor_transfer_period() -> None:
    """This process's engine reads A at least once per update in every layer (an experiment, not
    the recipe): a period below half an update rounds to no transfer at all in aihwkit 1.1.0.
    It patches the pool process for good: a set has floored runs only (transfer-floor)."""
    from cttv2_engine import devices

    scale = devices.per_layer_config

    def floored(config: Any, tokens: int) -> Any:
        config = scale(config, tokens)
        device = getattr(config, "device", None)
        if device is not None and hasattr(device, "transfer_every"):
            device.transfer_every = max(1.0, device.transfer_every)
        return config

    devices.per_layer_config = floored


def load(path: Path) -> list[dict[str, Any]]:
    """The finished runs, the first of each label (two processes side by side may both run one)."""
    if not path.exists():
        return []
    runs: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            runs.setdefault(record["label"], record)
    return list(runs.values())


# -- the report ----------------------------------------------------------------------------------
def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f} (n=1)"


def _group(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs by their label less the seed, ordered by model, algorithm, then epochs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        key = " ".join(p for p in r["label"].split(" ") if not p.startswith("seed"))
        out.setdefault(key, []).append(r)

    def order(key: str) -> tuple[str, int, int, str]:
        arch, algorithm, epochs, *rest = key.split(" ")
        rank = {"fp": 0, "c-ttv2": 1, "ttv2": 2}.get(algorithm, 3)
        return arch, rank, int(epochs.removesuffix("ep")), " ".join(rest)

    return {key: out[key] for key in sorted(out, key=order)}


def digital_means(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each model's digital baseline (AdamW 3e-3, 16 epochs): the mean of its runs' final accuracy."""
    out = {}
    for key, rs in _group(runs).items():
        arch, algorithm, *rest = key.split(" ")
        if algorithm == "fp" and "16ep" in rest and "lr=0.003" in rest:
            out[arch] = statistics.fmean(r["final"] for r in rs)
    return out


def tables(runs: list[dict[str, Any]], baselines: list[dict[str, Any]] = ()) -> str:
    """One row per setting (runs less their seed); the gaps against each model's digital
    baseline among `runs` or, failing that, `baselines` (the headline set's and ResNet's)."""
    groups = _group(runs)
    digital = digital_means(list(baselines)) | digital_means(runs)
    lines = [
        "| setting | seeds | final, noisy read (%) | last 3 (%) | largest last-3 spread | perfect read (%) | "
        "minus digital, noisy | minus digital, perfect read |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, rs in groups.items():
        d_mean = digital.get(key.split(" ")[0])
        finals = [r["final"] for r in rs]
        perfect = [r["perfect_read"] for r in rs if r.get("perfect_read") is not None]
        last3 = [statistics.fmean(r["curve"][-3:]) for r in rs]
        spread = max(max(r["curve"][-3:]) - min(r["curve"][-3:]) for r in rs)
        gap = f"{100 * (statistics.fmean(finals) - d_mean):+.1f}" if d_mean is not None else "-"
        gap_p = f"{100 * (statistics.fmean(perfect) - d_mean):+.1f}" if d_mean is not None and perfect else "-"
        cells = [key, str(len(rs)), _pm(finals), _pm(last3), f"{100 * spread:.1f}", _pm(perfect), gap, gap_p]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(runs: list[dict[str, Any]], path: Path) -> None:
    """Gap to digital against epochs, c-TTv2 and TTv2 (noisy and perfect read), seed std bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _group(runs)
    digital = [r["final"] for key, rs in groups.items() if " fp 16ep" in key and "lr=0.003" in key for r in rs]
    if not digital:
        return
    d_mean = statistics.fmean(digital)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for algorithm, colour in (("c-ttv2", "tab:blue"), ("ttv2", "tab:orange")):
        for read, style in (("final", "-o"), ("perfect_read", "--s")):
            xs, ys, es, ns = [], [], [], []
            for epochs in (8, 16, 32):
                rs = groups.get(f"swin_micro {algorithm} {epochs}ep", [])
                vals = [r[read] for r in rs if r.get(read) is not None]
                if vals:
                    xs.append(epochs)
                    ns.append(len(vals))
                    ys.append(100 * (statistics.fmean(vals) - d_mean))
                    es.append(100 * statistics.stdev(vals) if len(vals) > 1 else 0.0)
            if xs:
                label = f"{algorithm}, {'chip read' if read == 'final' else 'perfect read of its weights'}"
                ax.errorbar(xs, ys, yerr=es, fmt=style, color=colour, capsize=3, label=label)
                if read == "final":  # how many seeds each point is
                    for x, y, n in zip(xs, ys, ns):
                        ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=7)
    band = 100 * statistics.stdev(digital) if len(digital) > 1 else 0.0
    ax.axhspan(-band, band, color="grey", alpha=0.2, label=f"digital ({100 * d_mean:.1f}%, ± 1 std)")
    ax.axhline(-1.2, color="grey", ls=":", label="the paper's -1.2")
    ax.set_xscale("log", base=2)
    ax.set_xticks([8, 16, 32], ["8", "16", "32"])
    ax.set_xlabel("analog epochs (digital baseline: 16)")
    ax.set_ylabel("accuracy minus digital (points)")
    ax.set_title("swin_micro, digits 5-9, every layer analog (n: seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=["headline", "resnet-recipe", "transfer-floor", "transfer-rate"])
    parser.add_argument("--out", type=Path, default=None, help="default: docs/study/<set>")
    parser.add_argument("--work", type=Path, default=ROOT / ".state" / "study-runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--reverse", action="store_true", help="take the runs last first (a second process beside a first one)"
    )
    args = parser.parse_args()
    out = args.out or ROOT / "docs" / "study" / args.set
    out.mkdir(parents=True, exist_ok=True)
    results = out / "runs.jsonl"
    if not args.report_only:
        done = {r["label"] for r in load(results)}
        todo = [r for r in runs_of(args.set) if r[0] not in done][:: -1 if args.reverse else 1]
        args.work.mkdir(parents=True, exist_ok=True)
        for arch in sorted({arch for _, arch, _ in todo}):
            pretrain(args.work, arch)
        print(f"{len(todo)} runs to do ({len(done)} done)", flush=True)
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(one_run, str(args.work), label, spec): label for label, _, spec in todo}
            for fut in as_completed(futures):
                record = fut.result()
                with results.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                print(f"{record['label']}: {100 * record['final']:.1f}% ({record['wall_s']:.0f} s)", flush=True)
    runs = load(results)
    baselines = [r for name in ("headline", "resnet-recipe") for r in load(out.parent / name / "runs.jsonl")]
    (out / "tables.md").write_text(tables(runs, baselines))
    if args.set == "headline":
        figure(runs, out / "gap-vs-epochs.png")
    print((out / "tables.md").read_text())


if __name__ == "__main__":
    main()
