"""Pretrain -> fine-tune: train a model digitally, then fine-tune its weights with an analog
algorithm (and digitally, for comparison), against a running cttv2 server.

    python examples/chain.py          # the study: Swin-T, CIFAR-10 -> CIFAR-100 subset (GPU-sized)
    python examples/chain.py --pretrain examples/demo-pretrain.yaml --finetune examples/demo-job.yaml   # CPU-sized

Connects with $CTTV2_URL / $CTTV2_TOKEN or `cttv2 login`'s config. --set PATH=VALUE changes a
field of both jobs (e.g. --set training.epochs=2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from cttv2_client import Client, CTTV2Error

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain", type=Path, default=HERE / "study-pretrain.yaml")
    ap.add_argument("--finetune", type=Path, default=HERE / "study-job.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE")
    ap.add_argument("--no-baseline", action="store_true", help="skip the digital fine-tuning")
    args = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.sets)}

    with Client() as client:
        pre = client.jobs.wait(client.jobs.submit(args.pretrain, overrides=overrides), label="pretrain")
        # Start from the pretrained job's weights instead of the weights file the YAML names.
        start = {**overrides, "model.pretrained": {"job": pre.id}}
        finetune = client.jobs.submit(args.finetune, overrides=start)
        baseline = None
        if not args.no_baseline:
            # Digital fine-tuning trained to convergence, as the sweeps' baseline: the fp recipe's
            # lr (training.lr unset) for twice the analog job's epochs.
            epochs = 2 * finetune.spec["training"]["epochs"]
            baseline = client.jobs.submit(
                args.finetune,
                overrides={
                    **start,
                    "algorithm": "fp",
                    "training.lr": None,
                    "training.epochs": epochs,
                    "name": f"{finetune.name or 'finetune'}-fp",
                },
            )
        results = [pre, client.jobs.wait(finetune, label=f"fine-tune {finetune.algorithm}")]
        if baseline is not None:
            results.append(client.jobs.wait(baseline, label="fine-tune fp"))

    print(f"{'job':>6}  {'name':32} {'algorithm':10} {'test accuracy':>13}")
    for job in results:
        print(f"{job.id:>6}  {job.name or '-':32} {job.algorithm:10} {100 * job.result.test_accuracy:12.1f}%")


if __name__ == "__main__":
    try:
        main()
    except CTTV2Error as exc:  # JobFailed, a validation error, no server...: one line
        raise SystemExit(f"chain: {exc}") from None
