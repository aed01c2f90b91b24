"""scripts/study_tables.py: the tables of docs/study.md from per-job curves (no training)."""

from __future__ import annotations

import sys

from tests.support.stack import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from study_tables import tables  # noqa: E402

REF = {"device.transfer_noise": 0.06, "device.sp_skew": 0.0, "device.sp_variability": 0.05}


def _job(algorithm, curve, is_baseline=False, **point):
    return {
        "algorithm": algorithm,
        "is_baseline": is_baseline,
        "curve": curve,
        "point": {} if is_baseline else {"algorithm": algorithm, **REF, **point},
        "reference": REF,
    }


def test_reference_row_is_mean_and_std_over_seeds_and_the_gap_to_digital():
    jobs = [
        _job("fp", [0.9, 0.96], is_baseline=True),
        _job("fp", [0.9, 0.98], is_baseline=True),
        _job("c-ttv2", [0.5, 0.90, 0.92, 0.94]),
        _job("c-ttv2", [0.5, 0.90, 0.92, 0.96]),
        _job("c-ttv2", [0.5, 0.1, 0.1, 0.1], **{"device.sp_skew": 0.3}),
    ]  # not the reference
    text = tables(jobs)
    row = next(line for line in text.splitlines() if line.startswith("| c-ttv2 |"))
    # final 95.0 +- 1.4; last 3: 92.0 and 92.7 -> 92.3 +- 0.5; spread 96 - 90 = 6 points; 95 - 97 = -2.0
    assert row == "| c-ttv2 | 95.0 ± 1.4 | 92.3 ± 0.5 | 6.0 | -2.0 | 2 | - |"
    skew = next(line for line in text.split("## device.sp_skew")[1].splitlines() if line.startswith("| 0.3 |"))
    assert skew == "| 0.3 | 10.0 (n=1) | -87.0 |"  # the columns: the algorithms that ran
    change = next(line for line in text.splitlines() if line.startswith("| device.sp_skew |"))
    assert change == "| device.sp_skew | 0.0 | 0.3 | -85.0 |"  # 10.0 at 0.3 against 95.0 at the reference
    assert "| device.transfer_noise | 0.06 | 0.06 | - |" in text  # a knob never moved off its reference


def test_the_perfect_read_of_the_trained_weights_is_shown_beside_the_chip_read():
    jobs = [
        _job("fp", [0.97], is_baseline=True),
        {**_job("c-ttv2", [0.90, 0.94]), "perfect_read": 0.96},
        {**_job("c-ttv2", [0.90, 0.92]), "perfect_read": 0.98},
    ]
    row = next(line for line in tables(jobs).splitlines() if line.startswith("| c-ttv2 |"))
    assert row.endswith("| 97.0 ± 1.4 |")
