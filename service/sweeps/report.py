"""The sweep's answer: one row per grid point with the final test error over seeds.

Pure functions (no database): the service hands in each job's outcome. Only succeeded jobs
count as finished; while any job is queued or running the report says it is not complete and
how many are pending, and every number is over the seeds finished so far.

In one_at_a_time mode (see plan.points) there is one row per planned point, the reference point
once; each row's `knobs` names the curves it belongs to, so a knob's curve is the rows whose
`knobs` hold it (the reference point's jobs count for every knob).

Points not planned because a knob does not apply to their algorithm (plan.not_applicable, e.g.
device.transfer_noise for sgd) have no row; `not_applicable` lists those (algorithm, knob)
pairs. In one_at_a_time mode such an algorithm's reference row keeps the knob's reference value
in its point (so it lines up with the others) although its jobs ran without that field.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.jobs.models import TERMINAL_STATUSES, JobStatus
from service.sweeps.plan import (
    Mode,
    baseline_axes,
    knob_axes,
    knobs_of,
    not_applicable,
    point_key,
    points,
    reference,
)

STAT_COLUMNS = (
    "mean_test_error",
    "std_test_error",
    "delta_vs_baseline",
    "baseline_mean_test_error",
    "n_finished",
    "n_pending",
    "n_seeds",
)


@dataclass(frozen=True)
class JobOutcome:
    status: str
    is_baseline: bool
    grid: dict[str, Any]  # the job's sweep_point["grid"]
    test_error: float | None  # result.test_error of a succeeded job
    training: dict[str, Any] | None = None  # a baseline's {"lr", "epochs"} as it trained


def build_report(
    *,
    sweep_id: int,
    name: str | None,
    axes: list[str],
    grid: dict[str, list[Any]],
    baseline: bool,
    jobs: list[JobOutcome],
    mode: Mode = "grid",
    reference_only: Sequence[Any] = (),
    crossed: Sequence[str] = (),
) -> dict[str, Any]:
    b_axes = baseline_axes(axes)
    by_point: dict[tuple[str, ...], list[JobOutcome]] = {}
    by_baseline: dict[tuple[str, ...], list[JobOutcome]] = {}
    for job in jobs:
        if job.is_baseline:
            by_baseline.setdefault(point_key(job.grid, b_axes), []).append(job)
        else:
            by_point.setdefault(point_key(job.grid, axes), []).append(job)

    baselines = []
    if baseline:
        for point in points(grid, b_axes, mode, crossed=crossed):
            mine = by_baseline.get(point_key(point, b_axes), [])
            training = next((j.training for j in mine if j.training is not None), None)
            baselines.append({"point": point, **_stats(mine), "training": training})
    baseline_of = {point_key(b["point"], b_axes): b for b in baselines}

    rows = []
    for point in points(grid, axes, mode, reference_only, crossed):
        stats = _stats(by_point.get(point_key(point, axes), []))
        ref = baseline_of.get(point_key(point, b_axes))
        ref_mean = ref["mean_test_error"] if ref else None
        delta = None
        if stats["mean_test_error"] is not None and ref_mean is not None:
            delta = stats["mean_test_error"] - ref_mean
        rows.append(
            {
                "point": point,
                "mean_test_error": stats["mean_test_error"],
                "std_test_error": stats["std_test_error"],
                "delta_vs_baseline": delta,
                "baseline_mean_test_error": ref_mean,
                "n_finished": stats["n_finished"],
                "n_pending": stats["n_pending"],
                "n_seeds": stats["n_seeds"],
                "knobs": knobs_of(point, grid, axes, crossed) if mode == "one_at_a_time" else None,
            }
        )

    pending = sum(1 for j in jobs if j.status not in TERMINAL_STATUSES)
    return {
        "sweep_id": sweep_id,
        "name": name,
        "complete": pending == 0,
        "pending": pending,
        "total_jobs": len(jobs),
        "axes": axes,
        "mode": mode,
        "knobs": knob_axes(axes, crossed),
        "crossed": list(crossed),
        "reference": reference(grid, axes, crossed) if mode == "one_at_a_time" else None,
        "not_applicable": not_applicable(grid, axes, mode, reference_only, crossed),
        # The one baseline when no swept axis changes the task itself; else see `baselines`.
        "baseline": baselines[0] if len(baselines) == 1 and not b_axes else None,
        "baselines": baselines,
        "rows": rows,
    }


def _stats(jobs: list[JobOutcome]) -> dict[str, Any]:
    errors = [j.test_error for j in jobs if j.status == JobStatus.SUCCEEDED and j.test_error is not None]
    return {
        "mean_test_error": statistics.fmean(errors) if errors else None,
        "std_test_error": statistics.stdev(errors) if len(errors) >= 2 else None,  # sample std
        "n_finished": len(errors),
        "n_pending": sum(1 for j in jobs if j.status not in TERMINAL_STATUSES),
        "n_seeds": len(jobs),
    }


def to_csv(report: dict[str, Any]) -> str:
    """One row per grid point: a column per axis (named by its path), then the statistics; in
    one_at_a_time mode a last column `knobs` (the curves the row belongs to, joined by ";").
    Empty cells are nulls; non-scalar values are JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    one_at_a_time = report.get("mode") == "one_at_a_time"
    writer.writerow([*report["axes"], *STAT_COLUMNS, *(["knobs"] if one_at_a_time else [])])
    for row in report["rows"]:
        writer.writerow(
            [_cell(row["point"].get(a)) for a in report["axes"]]
            + [_cell(row[c]) for c in STAT_COLUMNS]
            + ([";".join(row.get("knobs") or [])] if one_at_a_time else [])
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return json.dumps(value, sort_keys=True)
    return str(value)
