"""A CPU-sized study, end to end on the embedded default: regenerates docs/study/.

Starts the API and two workers (SQLite + filesystem broker under ./.state, one torch thread
each: one per core), pretrains the sweep's model digitally on digits 0-4
(examples/demo-pretrain.yaml with the sweep's model.arch), submits the sweep (default
examples/study-cpu-sweep.yaml) fine-tuning from it, follows it, and writes its report (JSON, CSV
and the figure), every job's curve (jobs.jsonl, with the perfect read of its trained weights)
and the tables of docs/study.md (tables.md) into --out. About 45 minutes on 2 cores for the
default sweep; the paper's study (examples/study-cpu-paper-*.yaml) about an hour per model.

    .venv/bin/python scripts/study_cpu.py [--sweep FILE] [--out docs/study] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from cttv2_client import Client
from demo import EXAMPLES, ROOT, console, embedded_stack, pretrain
from study_tables import load, tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "study")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sweep", type=Path, default=EXAMPLES / "study-cpu-sweep.yaml")
    parser.add_argument(
        "--attach",
        nargs=3,
        metavar=("URL", "TOKEN", "SWEEP_ID"),
        help="write the outputs of a sweep on a running server now (finished or not) and exit",
    )
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.attach:
        url, token, sweep_id = args.attach
        with Client(url, token) as client:
            write_outputs(client, int(sweep_id), args.out)
        return
    t0 = time.monotonic()
    # A state folder per sweep file: studies can run side by side, each with its own queue.
    state = ROOT / ".state" / "studies" / args.sweep.stem
    with embedded_stack("study", state / "logs", workers=args.workers, state=state) as client:
        arch = yaml.safe_load(args.sweep.read_text())["base"].get("model", {}).get("arch")
        pre = pretrain(client, arch)
        sweep = client.sweeps.submit(args.sweep, overrides={"base.model.pretrained": {"job": pre.id}})
        console.print(f"sweep {sweep.id}: {sweep.total_jobs} jobs")
        sweep = client.sweeps.wait(sweep.id, progress_bar=True)
        write_outputs(client, sweep.id, args.out)
    console.print(f"sweep {sweep.status} in {(time.monotonic() - t0) / 60:.1f} min; report in {args.out}")


def write_outputs(client: Client, sweep_id: int, out: Path) -> None:
    """The sweep's report (JSON, CSV, the figure), every job's curve (jobs.jsonl) and the tables
    (tables.md) into `out`; a sweep still running gives its finished jobs (the report says so)."""
    report = client.sweeps.report(sweep_id)
    (out / "report.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    (out / "report.csv").write_text(client.sweeps.report(sweep_id, format="csv"))
    (out / "figure.png").write_bytes(client.sweeps.report(sweep_id, format="png"))
    reference = report.model_dump(mode="json").get("reference")
    with open(out / "jobs.jsonl", "w") as fh:
        for job in client.sweeps.jobs(sweep_id):
            history = job.result.history if job.result else []
            record = {
                "id": job.id,
                "algorithm": job.algorithm,
                "is_baseline": job.is_baseline,
                "status": str(job.status),
                "seed": job.spec.get("training", {}).get("seed"),
                "point": (job.sweep_point or {}).get("grid", {}),
                "reference": reference,
                "curve": [h["test_accuracy"] for h in history if "test_accuracy" in h],
                # The trained weights through a perfect read (no read noise, no converters):
                # "learned worse" against "read worse".
                "perfect_read": getattr(job.result, "digital_test_accuracy", None),
                "wall_s": job.result.wall_s if job.result else None,
            }
            fh.write(json.dumps(record) + "\n")
    (out / "tables.md").write_text(tables(load(out / "jobs.jsonl")))


if __name__ == "__main__":
    main()
