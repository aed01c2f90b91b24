"""Sweep planning, the report's numbers, the CSV and the figure, on synthetic data (no server)."""

from __future__ import annotations

import csv
import io
import statistics

import numpy as np
import pytest
from PIL import Image

from cttv2_engine.spec import JobSpec
from service.core.errors import Invalid
from service.sweeps import plan, plots
from service.sweeps.report import JobOutcome, build_report, to_csv
from tests.support.specs import TINY_CTTV2

BASE = JobSpec.model_validate(TINY_CTTV2).model_dump(mode="json")


# -- paths and axes ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "algorithm",
        "device.transfer_noise",
        "device.sp_skew",
        "data.num_classes",
        "training.digital_lr",
        "model.analog_scope",
        "model.analog_scope.last_n_blocks",
        "algorithm_options.fast_lr",
        "device",
    ],
)
def test_known_paths(path):
    assert plan.path_problem(path) is None


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("device.sp_skw", "device has no field 'sp_skw'"),
        ("nonsense", "the job spec has no field 'nonsense'"),
        ("algorithm.fast_lr", "algorithm is a value"),
        ("training.epochs.x", "training.epochs is a value"),
    ],
)
def test_unknown_paths_say_why(path, says):
    assert says in plan.path_problem(path)


def test_check_axes_names_the_axis():
    with pytest.raises(Invalid) as err:
        plan.check_axes({"device.sp_skew": [0, 0.0]}, None)  # the same value twice
    assert err.value.fields[0]["field"] == "grid.device.sp_skew" and "listed twice" in err.value.message
    with pytest.raises(Invalid) as err:
        plan.check_axes({"training.seed": [1, 2]}, None)
    assert err.value.fields[0]["field"] == "grid.training.seed"
    with pytest.raises(Invalid) as err:
        plan.check_axes({"a": [1]}, ["b"])
    assert err.value.fields[0]["field"] == "axes"
    assert plan.check_axes({"algorithm": ["sgd"], "device.sp_skew": [0]}, ["device.sp_skew", "algorithm"]) == [
        "device.sp_skew",
        "algorithm",
    ]


# -- expansion --------------------------------------------------------------------------------
def test_plan_points_seeds_and_a_baseline_per_task():
    grid = {"device.sp_skew": [0, 0.1], "data.num_classes": [3, 4], "algorithm": ["c-ttv2", "sgd"]}
    base = {
        **BASE,
        "data": {**BASE["data"], "classes": None},
        "training": {**BASE["training"], "lr": 0.7, "digital_lr": 0.002},
    }
    axes = list(grid)
    jobs = plan.plan(base, grid, axes, seeds=[5, 6], baseline=True, label="s")
    assert plan.count_jobs(grid, axes, 2, True) == (16, 4)
    grid_jobs = [j for j in jobs if not j.is_baseline]
    baselines = [j for j in jobs if j.is_baseline]
    assert len(grid_jobs) == 16 and len(baselines) == 4
    # Seed by seed, the seed's baselines first.
    assert [j.seed for j in jobs] == [5] * 10 + [6] * 10 and jobs[0].is_baseline and jobs[1].is_baseline
    for j in grid_jobs:
        s = j.spec
        assert s["device"]["sp_skew"] == j.grid["device.sp_skew"]
        assert s["data"]["num_classes"] == j.grid["data.num_classes"]
        assert s["algorithm"] == j.grid["algorithm"] and s["training"]["seed"] == j.seed
        assert s["training"]["lr"] == 0.7
        JobSpec.model_validate(s)
    # The baseline: digital, one per task (num_classes) and seed; device axes do not apply.
    assert sorted((j.grid["data.num_classes"], j.seed) for j in baselines) == [(3, 5), (3, 6), (4, 5), (4, 6)]
    for j in baselines:
        assert set(j.grid) == {"data.num_classes"}
        s = j.spec
        assert s["algorithm"] == "fp" and s["device"] is None and "algorithm_options" not in s
        assert s["training"]["lr"] == 0.002 and s["training"]["digital_lr"] is None  # AdamW lr
        assert s["data"]["num_classes"] == j.grid["data.num_classes"]
        JobSpec.model_validate(s)
    assert len({j.spec["name"] for j in jobs}) == len(jobs)


def test_baseline_lr_follows_a_digital_lr_axis():
    jobs = plan.plan(
        BASE, {"training.digital_lr": [0.001, 0.003]}, ["training.digital_lr"], seeds=[0], baseline=True, label="s"
    )
    lrs = {j.grid["training.digital_lr"]: j.spec["training"]["lr"] for j in jobs if j.is_baseline}
    assert lrs == {0.001: 0.001, 0.003: 0.003}


def test_no_axes_is_one_point():
    jobs = plan.plan(BASE, {}, [], seeds=[0, 1], baseline=False, label="s")
    assert [(j.grid, j.seed) for j in jobs] == [({}, 0), ({}, 1)]


# -- status -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({"queued": 4}, "queued"),
        ({"queued": 3, "running": 1}, "running"),
        ({"queued": 3, "succeeded": 1}, "running"),  # between two jobs
        ({"succeeded": 4}, "succeeded"),
        ({"succeeded": 3, "failed": 1}, "partial"),
        ({"succeeded": 1, "cancelled": 3}, "partial"),
        ({"cancelled": 3, "failed": 1}, "cancelled"),
        ({"failed": 4}, "failed"),
    ],
)
def test_sweep_status_from_counts(counts, status):
    from service.sweeps.service import derive_status

    full = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, **counts}
    assert derive_status(full) == status


# -- report -----------------------------------------------------------------------------------
def _outcomes(grid, axes, errors, baseline_errors, status_of=lambda point, seed: "succeeded"):
    """errors(point, seed) -> test error; one job per point x seed (seeds 0, 1, 2)."""
    jobs = []
    for point in plan.points(grid, axes):
        for seed in range(3):
            st = status_of(point, seed)
            jobs.append(JobOutcome(st, False, point, errors(point, seed) if st == "succeeded" else None))
    for point in plan.points(grid, plan.baseline_axes(axes)):
        for seed in range(3):
            jobs.append(JobOutcome("succeeded", True, point, baseline_errors(point, seed)))
    return jobs


def test_report_means_stds_and_deltas_per_matching_baseline():
    grid = {"algorithm": ["c-ttv2", "sgd"], "data.num_classes": [3, 5]}
    axes = list(grid)

    def err(p, s):
        return 0.1 * (p["algorithm"] == "sgd") + 0.01 * p["data.num_classes"] + 0.001 * s

    def base_err(p, s):
        return 0.02 * p["data.num_classes"] + 0.002 * s

    jobs = _outcomes(grid, axes, err, base_err)
    rep = build_report(sweep_id=7, name="x", axes=axes, grid=grid, baseline=True, jobs=jobs)
    assert rep["complete"] and rep["pending"] == 0 and rep["total_jobs"] == 18
    assert rep["baseline"] is None and len(rep["baselines"]) == 2  # one per num_classes
    assert [r["point"] for r in rep["rows"]] == plan.points(grid, axes)
    for row in rep["rows"]:
        p = row["point"]
        errors = [err(p, s) for s in range(3)]
        base = statistics.fmean(base_err(p, s) for s in range(3))
        assert row["mean_test_error"] == pytest.approx(statistics.fmean(errors))
        assert row["std_test_error"] == pytest.approx(statistics.stdev(errors))
        assert row["delta_vs_baseline"] == pytest.approx(statistics.fmean(errors) - base)
        assert row["baseline_mean_test_error"] == pytest.approx(base)
        assert (row["n_finished"], row["n_pending"], row["n_seeds"]) == (3, 0, 3)


def test_partial_report_counts_only_finished_seeds():
    grid = {"device.sp_skew": [0, 0.1]}

    def status(p, s):
        return {0: "succeeded", 1: "failed", 2: "running"}[s] if p["device.sp_skew"] else "queued"

    jobs = _outcomes(grid, ["device.sp_skew"], lambda p, s: 0.25, lambda p, s: 0.2, status)
    rep = build_report(sweep_id=1, name=None, axes=["device.sp_skew"], grid=grid, baseline=True, jobs=jobs)
    assert not rep["complete"] and rep["pending"] == 4
    first, second = rep["rows"]
    assert first["mean_test_error"] is None and first["delta_vs_baseline"] is None
    assert (first["n_finished"], first["n_pending"], first["n_seeds"]) == (0, 3, 3)
    assert second["mean_test_error"] == 0.25 and second["std_test_error"] is None  # one seed: no std
    assert second["delta_vs_baseline"] == pytest.approx(0.05)
    assert (second["n_finished"], second["n_pending"]) == (1, 1)
    assert rep["baseline"]["mean_test_error"] == pytest.approx(0.2) and rep["baseline"]["std_test_error"] == 0


def test_csv_has_a_column_per_axis_and_the_stats():
    grid = {"algorithm": ["c-ttv2", "sgd"], "model.analog_scope": ["head", {"last_n_blocks": 1}]}
    jobs = _outcomes(grid, list(grid), lambda p, s: 0.1 + s / 100, lambda p, s: 0.05)
    rep = build_report(sweep_id=1, name=None, axes=list(grid), grid=grid, baseline=True, jobs=jobs)
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert list(rows[0]) == [
        "algorithm",
        "model.analog_scope",
        "mean_test_error",
        "std_test_error",
        "delta_vs_baseline",
        "baseline_mean_test_error",
        "n_finished",
        "n_pending",
        "n_seeds",
    ]
    assert len(rows) == 4
    assert rows[1]["model.analog_scope"] == '{"last_n_blocks": 1}'
    assert float(rows[0]["mean_test_error"]) == pytest.approx(0.11)
    assert float(rows[0]["delta_vs_baseline"]) == pytest.approx(0.06)
    assert rows[0]["n_finished"] == "3"


# -- figures ----------------------------------------------------------------------------------
def _decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"))


def assert_not_blank(pixels: np.ndarray) -> None:
    assert pixels.std() > 20, "the figure is (nearly) one colour"
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50


def _colour_share(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> float:
    return float((np.abs(pixels.astype(int) - rgb).sum(axis=2) < tol).mean())


@pytest.mark.parametrize(
    ("grid", "kind", "size"),
    [
        ({"algorithm": ["c-ttv2", "ttv2"], "device.transfer_noise": [0, 0.1, 0.2]}, "line", (960, 600)),
        ({"data.num_classes": [3, 5, 10]}, "line", (960, 600)),
        ({"device.sp_skew": [0, 0.1], "device.sp_variability": [0, 0.05, 0.1]}, "heatmap", (640, 560)),
        (
            {"algorithm": ["c-ttv2", "ttv2", "sgd"], "device.sp_skew": [0, 0.1], "device.sp_variability": [0, 0.1]},
            "heatmap",
            (1600, 560),
        ),
        ({}, "bars", (960, 600)),
        ({"algorithm": ["c-ttv2", "sgd"]}, "bars", (960, 600)),
        (
            {"device.sp_skew": [0, 0.1], "device.sp_variability": [0, 0.1], "device.transfer_noise": [0, 0.1]},
            "bars",
            (960, 600),
        ),
    ],
)
def test_figures(grid, kind, size):
    axes = list(grid)

    def err(p, s):
        numbers = [v for v in p.values() if isinstance(v, (int, float))]
        return 0.1 + 0.3 * sum(numbers) / 10 + 0.05 * (p.get("algorithm") in ("ttv2", "sgd")) + 0.01 * s

    jobs = _outcomes(grid, axes, err, lambda p, s: 0.08 + 0.005 * s)
    rep = build_report(sweep_id=3, name="study", axes=axes, grid=grid, baseline=True, jobs=jobs)
    assert plots.figure_kind(rep) == kind
    assert plots.figure_size(rep, "c-ttv2") == size
    pixels = _decode(plots.render_png(rep, base_algorithm="c-ttv2"))
    assert pixels.shape == (size[1], size[0], 3)
    assert_not_blank(pixels)
    if kind == "line":  # the first algorithm's line is tab10 blue
        assert _colour_share(pixels, (31, 119, 180)) > 0.001


@pytest.mark.parametrize(
    "grid",
    [
        {"device.sp_skew": [0, 0.1]},
        {"device.sp_skew": [0, 0.1], "device.sp_variability": [0, 0.1]},
        {"algorithm": ["c-ttv2", "sgd"]},
    ],
)
def test_figure_of_a_sweep_with_nothing_finished_yet(grid):
    jobs = _outcomes(grid, list(grid), lambda p, s: 0.0, lambda p, s: 0.0, lambda p, s: "queued")
    jobs = [j if not j.is_baseline else JobOutcome("queued", True, j.grid, None) for j in jobs]
    rep = build_report(sweep_id=3, name=None, axes=list(grid), grid=grid, baseline=True, jobs=jobs)
    pixels = _decode(plots.render_png(rep, base_algorithm="c-ttv2"))
    w, h = plots.figure_size(rep, "c-ttv2")
    assert pixels.shape == (h, w, 3) and not rep["complete"]
    assert pixels.std() > 5  # axes, title and the "no finished jobs yet" note


# -- the examples -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "n_jobs"),
    [
        ("study-sweep.yaml", 51),
        ("demo-sweep.yaml", 14),
        ("study-cpu-sweep.yaml", 84),
        ("study-cpu-paper-swin.yaml", 96),
        ("study-cpu-paper-resnet.yaml", 96),
        # 2 models x 2 subsets x (23 + 23 + 21 points) x 3 seeds + a baseline per model, subset, seed
        ("study-paper-sweep.yaml", 816),
    ],
)
def test_examples_expand_to_valid_jobs(name, n_jobs):
    import yaml

    from cttv2_engine import validate_spec_semantics
    from service.core.config import Settings
    from service.jobs.schemas import JobCreate
    from service.sweeps.schemas import SweepCreate
    from tests.support.stack import ROOT

    body = SweepCreate.model_validate(yaml.safe_load((ROOT / "examples" / name).read_text()))
    axes = plan.check_axes(body.grid, body.axes)
    base = body.base.model_dump(mode="json", exclude=set(JobCreate.NOT_SPEC))
    jobs = plan.plan(
        base,
        body.grid,
        axes,
        body.seeds,
        body.baseline,
        label=body.name,
        mode=body.mode,
        baseline_training=body.baseline_training,
        reference_only=body.reference_only,
        crossed=body.crossed,
    )
    counted = plan.count_jobs(
        body.grid, axes, len(body.seeds), body.baseline, body.mode, body.reference_only, body.crossed
    )
    assert len(jobs) == sum(counted) == n_jobs
    # The GPU-sized paper study says which limits a server needs raised for it (in its comments).
    limit = Settings.model_fields["max_sweep_jobs"].default
    assert n_jobs <= limit or f"CTTV2_MAX_SWEEP_JOBS >= {n_jobs}" in (ROOT / "examples" / name).read_text()
    for job in jobs:
        validate_spec_semantics(job.spec)
