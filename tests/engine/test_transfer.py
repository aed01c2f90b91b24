"""The proof that the engine does transfer learning with analog training (issue 3, proof 1).

Pretrain a small Swin digitally on digits 0-4, then fine-tune on digits 5-9 on a
SoftBoundsReference device with realistic non-idealities:

- fp and c-TTv2 with the last Swin stage + head analog: c-TTv2 ends within 5 points of fp;
- c-TTv2 and plain in-memory SGD (each at its recipe) with every layer analog, on the same
  device with very noisy writes (cycle-to-cycle step noise twice the step): c-TTv2 ends far
  above SGD. SGD writes every noisy pulse straight into the weights; c-TTv2 gathers the
  gradient on its fast tile and moves only what passes the transfer threshold;
- c-TTv2 at the CPU study's largest SP skew stays within 10 points of skew 0, and in-memory
  SGD does not improve when the symmetry points spread or skew (the physics: its weights
  drift towards their devices' symmetry points with every pulse).

"Ends" = mean of the last two evaluations for the fp comparison; for the SGD comparisons, the
mean of the second half of training (last 4 of 8 evaluations), because all-analog runs swing
between evaluations (noisy analog reads, weights still moving; SGD by up to 15 points).

Why these margins (measured on this machine at the calibrated recipe, 8 epochs, all analog,
mean of the last 4 evaluations): write noise 2x the step, seeds 0-2: c-TTv2 0.90 / 0.90 / 0.93,
SGD 0.40 / 0.42 / 0.45 (gaps +0.48..+0.50), so one seed and a margin of 0.25 suffice. (At the
old defaults the gap was +0.09..+0.27 and needed three seeds.) The simulator's pulse noise is
not seedable, so a seed fixes the data order and initialisation, not the outcome: the margins
leave room for that spread. Slow: about 7 minutes on one core.
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
# Write noise twice the step: where in-memory SGD visibly pays for writing every update, and
# the c-TTv2 claim is about exactly that.
NOISY_WRITES_DEVICE = REALISTIC_DEVICE | {"dw_min_std": 2.0}
MARGIN_OVER_SGD = 0.25  # on the late-training gap
# The first fine-tuning seed (data order, head init); the pretrained base is always seed 0.
SEED = int(os.environ.get("CTTV2_PROOF_SEED", "0"))


def pretrain(root: Path, seed: int = 0, arch: str = "swin_micro") -> RunContext:
    """Digits 0-4, digital, from scratch; its weights become weights/base.safetensors."""
    (root / "weights").mkdir(parents=True, exist_ok=True)
    ctx = RunContext(data_dir=root, weights_dir=root / "weights", compute="cpu")
    result = run(
        {
            "algorithm": "fp",
            "model": {"arch": arch},
            "data": {"dataset": "digits", "classes": [0, 1, 2, 3, 4]},
            "training": {"kind": "pretrain", "epochs": 15, "batch_size": 16, "lr": 2e-3, "seed": seed},
        },
        workdir=root / "pretrain",
        context=ctx,
    )
    assert result.final["test_accuracy"] > 0.9, result.final
    (root / "pretrain" / "weights.safetensors").rename(root / "weights" / "base.safetensors")
    return ctx


def finetune(
    ctx: RunContext,
    algorithm: str,
    scope: str,
    *,
    epochs: int,
    seed: int,
    lr: float | None = None,
    device: dict = REALISTIC_DEVICE,
    digital_parts: str = "frozen",
    arch: str = "swin_micro",
) -> dict:
    spec = {
        "algorithm": algorithm,
        "model": {
            "arch": arch,
            "pretrained": {"weights": "base.safetensors"},
            "analog_scope": scope,
            "digital_parts": digital_parts,
        },
        "data": {"dataset": "digits", "classes": [5, 6, 7, 8, 9]},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed, "schedule": "cosine"},
    }
    if lr is not None:
        spec["training"]["lr"] = lr
    if algorithm != "fp":
        spec["device"] = device
    name = f"{arch}-{algorithm}-{scope}-{seed}-{abs(hash(json.dumps(device, sort_keys=True))) % 10**6}"
    result = run(spec, workdir=Path(ctx.weights_dir).parent / name, context=ctx)
    curve = [h["test_accuracy"] for h in result.history]
    # Analog reads are noisy at test time too (a few images flip between evaluations): judge
    # the end of training by its last two evaluations, or by its second half.
    late = curve[len(curve) // 2 :]
    return {
        "name": name,
        "final": curve[-1],
        "end": sum(curve[-2:]) / 2,
        "late": sum(late) / len(late),
        "curve": curve,
        "wall_s": result.final["wall_s"],
    }


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> RunContext:
    return pretrain(tmp_path_factory.mktemp("transfer"), seed=0)


def _report(*runs: dict) -> None:
    for r in runs:
        print(
            json.dumps(
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "curve"}
                | {"curve": [round(c, 3) for c in r["curve"]]}
            )
        )


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
    sgd = finetune(pretrained, "sgd", "all", epochs=8, seed=SEED, device=NOISY_WRITES_DEVICE)
    _report(cttv2, sgd)
    assert cttv2["late"] - sgd["late"] >= MARGIN_OVER_SGD, (cttv2, sgd)


# The CPU study's reference device (examples/study-cpu-sweep.yaml) and its largest SP skew.
STUDY_DEVICE = {
    "family": "SoftBoundsReference",
    "dw_min": 0.01,
    "sp_variability": 0.05,
    "out_noise": 0.06,
    "dac_bits": 7,
    "adc_bits": 9,
}
STUDY_MAX_SKEW = 0.3


@pytest.mark.slow
def test_cttv2_survives_the_studys_largest_sp_skew(pretrained):
    """At the recipe's defaults, every layer analog: no divergence at SP skew 0.3 (it gave NaN
    on every seed before the recipe was calibrated) and within 10 points of skew 0. Measured
    (docs/study.md): 3-seed means 94.6% at skew 0, 91.5% at 0.3 for seed 0. ~2.5 minutes
    (~3.5 when a second seed decides, below)."""
    runs = {
        skew: finetune(
            pretrained,
            "c-ttv2",
            "all",
            epochs=8,
            seed=SEED,
            digital_parts="trained",
            device=STUDY_DEVICE | {"sp_skew": skew},
        )
        for skew in (0.0, STUDY_MAX_SKEW)
    }
    _report(*runs.values())
    for run_ in runs.values():
        assert all(0.0 <= c <= 1.0 for c in run_["curve"]), run_  # finite: no NaN, no divergence
    assert runs[0.0]["end"] > 0.85, runs[0.0]
    # The claim is about the mean over seeds, and aihwkit's noise is not seedable: one run in a
    # clean-clone CI run of 2026-12-01 dipped to 59% at epoch 3 and ended at 80.8% against
    # 92.2% at skew 0 (still rising). When one run misses, a second seed decides, by the mean.
    skewed = [runs[STUDY_MAX_SKEW]]
    if skewed[0]["end"] < runs[0.0]["end"] - 0.10:
        device = STUDY_DEVICE | {"sp_skew": STUDY_MAX_SKEW}
        skewed.append(
            finetune(pretrained, "c-ttv2", "all", epochs=8, seed=SEED + 1, digital_parts="trained", device=device)
        )
        _report(skewed[-1])
        assert all(0.0 <= c <= 1.0 for c in skewed[-1]["curve"]), skewed[-1]
    mean_end = sum(r["end"] for r in skewed) / len(skewed)
    assert mean_end >= runs[0.0]["end"] - 0.10, (mean_end, runs, skewed)


def _weight_scale(ctx: RunContext, run_: dict) -> float:
    """Mean over the body's weight matrices of std(fine-tuned) / std(pretrained)."""
    from safetensors.torch import load_file

    base = load_file(str(Path(ctx.weights_dir) / "base.safetensors"))
    tuned = load_file(str(Path(ctx.weights_dir).parent / run_["name"] / "weights.safetensors"))
    ratios = [
        (tuned[k].std() / w.std()).item()
        for k, w in base.items()
        if w.dim() >= 2 and not k.startswith("head.") and tuned[k].shape == w.shape
    ]
    return sum(ratios) / len(ratios)


@pytest.mark.slow
def test_knobs_move_in_sgd_the_way_the_physics_says(pretrained):
    """In-memory SGD writes every token's update as pulses onto the weights themselves, and a
    soft-bounds device drifts towards its symmetry point (SP) with every pulse.

    - SP skew: every weight drifts towards the same offset, so the weights do not grow the way
      they do with spread SPs, and skew does not get the spread's gain. Whether skew 0.3 is a
      little worse or a little better than the reference is not decidable from one seed: over
      seeds the study has 58.8 +- 4.8 (reference) vs 57.6 +- 8.9 (skew 0.3) (docs/study.md),
      and one clean-clone CI run had 48.5 (skew) vs 40.7 (reference). So the test compares
      skew with the spread device, whose gain (~+25 points) is far beyond that noise.
    - SP variability: SGD does train *better* with spread SPs (study: see docs/study.md), and
      the weights show why. On the reference device (SPs within 0.05 of zero) the drift pulls
      every weight towards zero: the fine-tuned weights end at ~0.75x the pretrained std, and
      the signal through the noisy periphery (read noise 0.06, 9-bit ADC) shrinks with them.
      With SPs spread 0.3 the drift targets are random values of that size: the weights end
      at ~1.6x the pretrained std (correlating less with them, 0.30 vs 0.58), larger than
      the read noise, and the task is learned again on top. Measured, one seed: accuracy 52%
      vs 84%, weight std ratio 0.75 vs 1.63. The test pins that mechanism. ~2 minutes.
    """
    reference = finetune(pretrained, "sgd", "all", epochs=8, seed=SEED, digital_parts="trained", device=STUDY_DEVICE)
    spread = finetune(
        pretrained,
        "sgd",
        "all",
        epochs=8,
        seed=SEED,
        digital_parts="trained",
        device=STUDY_DEVICE | {"sp_variability": 0.3},
    )
    skewed = finetune(
        pretrained, "sgd", "all", epochs=8, seed=SEED, digital_parts="trained", device=STUDY_DEVICE | {"sp_skew": 0.3}
    )
    scales = {
        name: _weight_scale(pretrained, r)
        for name, r in (("reference", reference), ("spread", spread), ("skewed", skewed))
    }
    _report(reference, spread, skewed)
    print(json.dumps({"weight_std_ratio": scales}))
    assert scales["skewed"] < scales["spread"] - 0.3, scales  # one common drift target: no growth
    assert skewed["late"] < spread["late"] - 0.1, (skewed, spread)  # nor the spread's gain
    assert scales["reference"] < 0.95, scales  # pulled towards the symmetry point at ~zero
    assert scales["spread"] > scales["reference"] + 0.3, scales  # pulled towards spread SPs


# -- ResNet: the same transfer on the other model family of the paper ----------------------------
@pytest.fixture(scope="module")
def pretrained_resnet(tmp_path_factory) -> RunContext:
    return pretrain(tmp_path_factory.mktemp("transfer-resnet"), seed=0, arch="resnet_micro")


RESNET_MARGIN = 0.06


@pytest.mark.slow
def test_resnet_cttv2_fine_tunes_near_digital_and_survives_the_largest_sp_skew(pretrained_resnet):
    """resnet_micro (every conv and the classifier analog, BatchNorm digital), the CPU study's
    reference device and the calibrated recipe: c-TTv2 ends within RESNET_MARGIN of the digital
    fine-tune on one seed, and at the study's largest SP skew it does not diverge (finite, above
    chance). Measured (docs/study.md, "ResNet"), seed 0, mean of the last two evaluations:
    digital 98.9%, c-TTv2 97.3% (lr 1 / 10: 96.7 / 96.0); at SP skew 0.3 c-TTv2 loses most of
    the pretrained weights in its first epoch (25%) and climbs back to 49% by epoch 8: the test
    pins "no divergence", not the robustness Swin shows there (docs/study.md says why).
    ~2 minutes."""
    ctx = pretrained_resnet
    kw = {"epochs": 8, "seed": SEED, "digital_parts": "trained", "arch": "resnet_micro"}
    fp = finetune(ctx, "fp", "all", lr=3e-3, device={}, **kw)
    cttv2 = finetune(ctx, "c-ttv2", "all", device=STUDY_DEVICE, **kw)
    skewed = finetune(ctx, "c-ttv2", "all", device=STUDY_DEVICE | {"sp_skew": STUDY_MAX_SKEW}, **kw)
    _report(fp, cttv2, skewed)
    assert fp["end"] > 0.95, fp  # the digital fine-tune transfers
    assert cttv2["end"] >= fp["end"] - RESNET_MARGIN, (cttv2, fp)
    assert all(0.0 <= c <= 1.0 for c in skewed["curve"]), skewed  # finite: no NaN, no divergence
    assert skewed["end"] > 0.3, skewed  # above chance (0.2) and learning: 25% -> 49% measured
