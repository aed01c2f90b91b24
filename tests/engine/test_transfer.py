"""The proof that the engine does transfer learning with analog training (issue 3, proof 1).

Pretrain a small Swin digitally on digits 0-4, then fine-tune on digits 5-9 on a
SoftBoundsReference device with realistic non-idealities:

- fp and c-TTv2 with the last Swin stage + head analog: c-TTv2 ends within 5 points of fp;
- c-TTv2 and plain in-memory SGD (engine default lr) with every layer analog, on the same
  device with noisy writes (cycle-to-cycle step noise as large as the step): c-TTv2 ends
  clearly above SGD. SGD writes every noisy pulse straight into the weights; c-TTv2 gathers
  the gradient on its fast tile and moves only what passes the transfer threshold. With only
  the last stage analog, SGD keeps up at this size; its failure shows where layers see many
  tokens per image (stage 0: 64 per image).

"Ends" = mean of the last two evaluations (analog reads are noisy at test time as well).
Margins come from repeated runs on this machine (8 epochs, all analog, noisy writes), c-TTv2
minus SGD at the end, fine-tuning seeds 0-6: +0.076 +0.116 +0.172 +0.152 +0.201 +0.127 +0.145
(c-TTv2 0.83-0.88, SGD 0.67-0.78). With the realistic device's milder write noise (0.3) the
gap is real but small and seed-dependent (+0.025..+0.17), too close to the runs' own spread
for a test. The simulator's pulse noise is not seedable, so a seed fixes the data order and
initialisation, not the outcome: the margin leaves room for that spread.
Slow: about 5 minutes on one core.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cttv2_engine import RunContext, run

# Realistic for the study: ~200 states in [-1, 1], device-to-device spreads of step size and
# bounds (30%), cycle-to-cycle step noise (30%), symmetry-point spread 0.1 after calibration,
# read noise 0.06 and 7-bit DAC / 9-bit ADC on every read.
REALISTIC_DEVICE = {
    "family": "SoftBoundsReference",
    "dw_min": 0.01,
    "dw_min_dtod": 0.3,
    "w_max_dtod": 0.3,
    "dw_min_std": 0.3,
    "sp_variability": 0.1,
    "out_noise": 0.06,
    "dac_bits": 7,
    "adc_bits": 9,
}
# Write noise as large as the step itself: where in-memory SGD visibly pays for writing every
# update, and the c-TTv2 claim is about exactly that.
NOISY_WRITES_DEVICE = REALISTIC_DEVICE | {"dw_min_std": 1.0}
# The fine-tuning seed (data order, head init); the pretrained base is always seed 0.
MARGIN_OVER_SGD = 0.05
SEED = int(os.environ.get("CTTV2_PROOF_SEED", "0"))


def pretrain(root: Path, seed: int = 0) -> RunContext:
    """Digits 0-4, digital, from scratch; its weights become weights/base.safetensors."""
    (root / "weights").mkdir(parents=True, exist_ok=True)
    ctx = RunContext(data_dir=root, weights_dir=root / "weights", device="cpu")
    result = run(
        {"algorithm": "fp", "model": {"arch": "swin_micro"},
         "data": {"dataset": "digits", "classes": [0, 1, 2, 3, 4]},
         "training": {"kind": "pretrain", "epochs": 15, "batch_size": 16, "lr": 2e-3,
                      "seed": seed}},
        workdir=root / "pretrain", context=ctx)
    assert result.final["test_accuracy"] > 0.9, result.final
    (root / "pretrain" / "weights.safetensors").rename(root / "weights" / "base.safetensors")
    return ctx


def finetune(ctx: RunContext, algorithm: str, scope: str, *, epochs: int, seed: int,
             lr: float | None = None, device: dict = REALISTIC_DEVICE) -> dict:
    spec = {
        "algorithm": algorithm,
        "model": {"arch": "swin_micro", "pretrained": {"weights": "base.safetensors"},
                  "analog_scope": scope, "digital_parts": "frozen"},
        "data": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed, "schedule": "cosine"},
    }
    if lr is not None:
        spec["training"]["lr"] = lr
    if algorithm != "fp":
        spec["device"] = device
    name = f"{algorithm}-{scope}-{seed}"
    result = run(spec, workdir=Path(ctx.weights_dir).parent / name, context=ctx)
    curve = [h["test_accuracy"] for h in result.history]
    # Analog reads are noisy at test time too (a few images flip between evaluations): judge
    # the end of training by its last two evaluations.
    return {"name": name, "final": curve[-1], "end": sum(curve[-2:]) / 2, "curve": curve,
            "wall_s": result.final["wall_s"]}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> RunContext:
    return pretrain(tmp_path_factory.mktemp("transfer"), seed=0)


def _report(*runs: dict) -> None:
    for r in runs:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                          if k != "curve"} | {"curve": [round(c, 3) for c in r["curve"]]}))


@pytest.mark.slow
def test_cttv2_fine_tunes_within_5_points_of_fp(pretrained):
    fp = finetune(pretrained, "fp", "last_stage", epochs=12, seed=SEED, lr=3e-3)
    cttv2 = finetune(pretrained, "c-ttv2", "last_stage", epochs=12, seed=SEED)
    _report(fp, cttv2)
    assert fp["end"] > 0.85  # the digital baseline transfers
    assert cttv2["end"] >= fp["end"] - 0.05, (cttv2, fp)


@pytest.mark.slow
def test_cttv2_clearly_beats_in_memory_sgd_on_the_same_device(pretrained):
    cttv2 = finetune(pretrained, "c-ttv2", "all", epochs=8, seed=SEED, device=NOISY_WRITES_DEVICE)
    sgd = finetune(pretrained, "sgd", "all", epochs=8, seed=SEED, device=NOISY_WRITES_DEVICE)  # default lr 0.1
    _report(cttv2, sgd)
    assert cttv2["end"] >= sgd["end"] + MARGIN_OVER_SGD, (cttv2, sgd)
