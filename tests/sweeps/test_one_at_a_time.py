"""One-at-a-time sweeps, the baseline's training overrides and the knob figure, on synthetic
data (no server, no training)."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
from pydantic import ValidationError

from cttv2_engine.recipes import RECIPES
from cttv2_engine.spec import JobSpec
from service.core.errors import Invalid, validation_fields
from service.sweeps import plan, plots, service
from service.sweeps.report import JobOutcome, build_report, to_csv
from service.sweeps.schemas import SweepCreate, SweepReport
from tests.support.specs import TINY_CTTV2, TINY_FP
from tests.sweeps.test_plan_report import BASE, _decode, assert_not_blank

# (ttv2, not sgd: sgd has no transfer, see the not-applicable tests at the end)
GRID = {"algorithm": ["c-ttv2", "ttv2"], "device.transfer_noise": [0, 0.1, 0.2], "device.sp_skew": [0, 0.1]}
AXES = list(GRID)


# -- planning ---------------------------------------------------------------------------------
def test_points_vary_one_knob_at_a_time_around_the_reference():
    pts = plan.points(GRID, AXES, "one_at_a_time")
    knobs = [{"device.transfer_noise": t, "device.sp_skew": s} for t, s in [(0, 0), (0.1, 0), (0.2, 0), (0, 0.1)]]
    assert pts == [{"algorithm": a, **k} for a in ["c-ttv2", "ttv2"] for k in knobs]
    assert all(list(p) == AXES for p in pts)  # every axis's value, in axis order
    assert plan.count_points(GRID, AXES, "one_at_a_time") == len(pts) == 8
    assert plan.count_points(GRID, AXES) == len(plan.points(GRID, AXES)) == 12  # grid unchanged
    # The reference is the first value listed, not the smallest; algorithm listed last varies fastest.
    grid = {"device.sp_skew": [0.1, 0], "device.transfer_noise": [0.2, 0], "algorithm": ["ttv2", "c-ttv2"]}
    pts = plan.points(grid, list(grid), "one_at_a_time")
    assert [tuple(p.values()) for p in pts] == [
        (0.1, 0.2, "ttv2"),
        (0.1, 0.2, "c-ttv2"),
        (0, 0.2, "ttv2"),
        (0, 0.2, "c-ttv2"),
        (0.1, 0, "ttv2"),
        (0.1, 0, "c-ttv2"),
    ]


@pytest.mark.parametrize(
    "grid",
    [
        {},
        {"algorithm": ["sgd", "c-ttv2"]},
        {"device.sp_skew": [0, 0.1]},
        {"device.sp_skew": [0, 0.1], "algorithm": ["sgd", "c-ttv2"]},
    ],
)
def test_one_knob_or_none_is_the_same_as_grid(grid):
    assert plan.points(grid, list(grid), "one_at_a_time") == plan.points(grid, list(grid))


def test_plan_runs_the_reference_once_and_counts_match():
    # (sgd has no transfer: any transfer_noise, even 0, is rejected for it)
    grid = {**GRID, "algorithm": ["c-ttv2", "ttv2"], "data.num_classes": [3, 4]}
    axes = list(grid)
    base = {**BASE, "data": {**BASE["data"], "classes": None}}
    jobs = plan.plan(base, grid, axes, seeds=[5, 6], baseline=True, label="s", mode="one_at_a_time")
    # Per algorithm: reference + 2 transfer_noise + 1 sp_skew + 1 num_classes = 5 points.
    assert plan.count_jobs(grid, axes, 2, True, "one_at_a_time") == (2 * 5 * 2, 2 * 2)
    grid_jobs = [j for j in jobs if not j.is_baseline]
    baselines = [j for j in jobs if j.is_baseline]
    assert len(grid_jobs) == 20 and len(baselines) == 4
    ref = {"device.transfer_noise": 0, "device.sp_skew": 0, "data.num_classes": 3}
    for algo in grid["algorithm"]:
        for seed in (5, 6):
            at_ref = [j for j in grid_jobs if j.grid == {"algorithm": algo, **ref} and j.seed == seed]
            assert len(at_ref) == 1
    for j in grid_jobs:
        JobSpec.model_validate(j.spec)
        assert j.spec["device"]["transfer_noise"] == j.grid["device.transfer_noise"]
        assert j.spec["data"]["num_classes"] == j.grid["data.num_classes"]
    assert sorted((j.grid["data.num_classes"], j.seed) for j in baselines) == [(3, 5), (3, 6), (4, 5), (4, 6)]
    assert len({j.spec["name"] for j in jobs}) == len(jobs)


def test_size_check_counts_the_mode():
    big = {"device.sp_skew": [i / 100 for i in range(30)], "device.sp_variability": [i / 100 for i in range(20)]}
    body = SweepCreate.model_validate({"base": TINY_CTTV2, "grid": big, "seeds": [0], "baseline": True})
    with pytest.raises(Invalid) as err:
        service._check_size(body, list(big), [0])
    assert "601 jobs" in err.value.message
    body = body.model_copy(update={"mode": "one_at_a_time"})
    service._check_size(body, list(big), [0])  # 49 points + 1 baseline
    body = body.model_copy(update={"grid": {**big, "device.transfer_noise": [i / 1000 for i in range(460)]}})
    with pytest.raises(Invalid) as err:
        service._check_size(body, list(body.grid), [0])
    assert "509 jobs (508 grid points x 1 seed + 1 baseline job)" in err.value.message


def test_mode_is_validated_by_name():
    with pytest.raises(ValidationError) as err:
        SweepCreate.model_validate({"base": TINY_CTTV2, "mode": "one-at-a-time"})
    assert validation_fields(err.value.errors())[0]["field"] == "mode"
    assert SweepCreate.model_validate({"base": TINY_CTTV2}).mode == "grid"


def test_idempotency_hash_of_an_old_body_is_unchanged():
    body = SweepCreate.model_validate({"base": TINY_CTTV2, "grid": {"device.sp_skew": [0, 0.1]}})
    assert "mode" not in service._hashed(body) and "baseline_training" not in service._hashed(body)
    assert service._hashed(body.model_copy(update={"mode": "one_at_a_time"}))["mode"] == "one_at_a_time"


# -- the digital baseline's training ----------------------------------------------------------
def test_baseline_training_comes_from_the_engine_then_the_overrides(monkeypatch):
    seen = []

    def recipe(training):
        seen.append(dict(training))
        return {**training, "lr": 0.004, "digital_lr": None, "epochs": 9}

    monkeypatch.setattr(plan, "digital_baseline_training", recipe)
    base = {**BASE, "training": {**BASE["training"], "lr": 0.7, "digital_lr": 0.002}}
    (job,) = [j for j in plan.plan(base, {}, [], [3], True, "s") if j.is_baseline]
    assert seen[0]["digital_lr"] == 0.002 and seen[0]["seed"] == 3
    t = job.spec["training"]
    assert (t["lr"], t["epochs"], t["digital_lr"], t["seed"]) == (0.004, 9, None, 3)
    (job,) = [
        j
        for j in plan.plan(base, {}, [], [3], True, "s", baseline_training={"epochs": 16, "lr": 0.005})
        if j.is_baseline
    ]
    t = job.spec["training"]
    assert (t["lr"], t["epochs"], t["seed"]) == (0.005, 16, 3)
    JobSpec.model_validate(job.spec)
    grid_job = next(
        j for j in plan.plan(base, {}, [], [3], True, "s", baseline_training={"epochs": 16}) if not j.is_baseline
    )
    assert grid_job.spec["training"]["epochs"] == BASE["training"]["epochs"]  # the baseline only


def test_the_engine_placeholder_keeps_todays_baseline_lr():
    base = {**BASE, "training": {**BASE["training"], "lr": 0.7, "digital_lr": 0.002}}
    t = plan.make_digital(base)["training"]
    assert (t["lr"], t["digital_lr"]) == (0.002, None)
    fp = JobSpec.model_validate(TINY_FP).model_dump(mode="json")
    t = plan.make_digital(fp, {"epochs": 7})["training"]
    assert (t["lr"], t["digital_lr"], t["epochs"]) == (0.003, None, 7)  # an fp base keeps its lr


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"epochz": 3}, "baseline_training.epochz"), ({"lr": 0.01, "seed": 4}, "baseline_training.seed")],
)
def test_unknown_baseline_training_key_is_a_422_naming_it(overrides, field):
    body = SweepCreate.model_validate({"base": TINY_CTTV2, "baseline": True, "baseline_training": overrides})
    with pytest.raises(Invalid) as err:
        service.create(None, None, body, None)  # rejected before any database work
    assert err.value.status_code == 422 and err.value.code == "validation_error"
    assert err.value.fields[0]["field"] == field and err.value.message.startswith(field)


def test_bad_baseline_training_value_names_the_key():
    jobs = plan.plan(BASE, {}, [], [0], True, "s", baseline_training={"lr": -1})
    with pytest.raises(Invalid) as err:
        service._validate(None, None, jobs[0], {"lr": -1})
    assert jobs[0].is_baseline and err.value.fields[0]["field"] == "baseline_training.lr"


def test_report_says_how_the_baseline_trained():
    fp_lr = RECIPES["fp"].lr  # an unset lr trained at the fp recipe's
    assert service.baseline_training({"training": {"lr": None, "epochs": 16}}) == {"lr": fp_lr, "epochs": 16}
    jobs = [
        JobOutcome("succeeded", True, {}, 0.1, {"lr": 0.005, "epochs": 16}),
        JobOutcome("succeeded", False, {}, 0.2),
    ]
    rep = build_report(sweep_id=1, name=None, axes=[], grid={}, baseline=True, jobs=jobs)
    assert rep["baseline"]["training"] == {"lr": 0.005, "epochs": 16}
    out = SweepReport.model_validate(rep).model_dump()
    assert out["baseline"]["training"] == {"lr": 0.005, "epochs": 16} and out["mode"] == "grid"


# -- report -----------------------------------------------------------------------------------
def _acc_error(p, seed):
    penalty = {"c-ttv2": 0.3, "ttv2": 1.0}[p["algorithm"]]
    return 0.1 + penalty * (p["device.transfer_noise"] + 0.5 * p["device.sp_skew"]) + 0.01 * seed


def _report(n_seeds=3, finished=lambda p, s: True):
    jobs = [
        JobOutcome("succeeded" if finished(p, s) else "queued", False, p, _acc_error(p, s) if finished(p, s) else None)
        for p in plan.points(GRID, AXES, "one_at_a_time")
        for s in range(n_seeds)
    ]
    jobs += [JobOutcome("succeeded", True, {}, 0.05 + 0.01 * s) for s in range(n_seeds)]
    return build_report(sweep_id=4, name="knobs", axes=AXES, grid=GRID, baseline=True, jobs=jobs, mode="one_at_a_time")


def test_report_rows_carry_their_knobs_and_the_reference_once():
    rep = _report()
    assert rep["mode"] == "one_at_a_time" and rep["knobs"] == ["device.transfer_noise", "device.sp_skew"]
    assert rep["reference"] == {"device.transfer_noise": 0, "device.sp_skew": 0}
    assert len(rep["rows"]) == 8 and rep["total_jobs"] == 8 * 3 + 3
    curve = {
        k: [(r["point"]["algorithm"], r["point"][k]) for r in rep["rows"] if k in r["knobs"]] for k in rep["knobs"]
    }
    assert curve["device.transfer_noise"] == [(a, t) for a in ("c-ttv2", "ttv2") for t in (0, 0.1, 0.2)]
    assert curve["device.sp_skew"] == [(a, s) for a in ("c-ttv2", "ttv2") for s in (0, 0.1)]
    for row in rep["rows"]:
        errors = [_acc_error(row["point"], s) for s in range(3)]
        assert row["mean_test_error"] == pytest.approx(statistics.fmean(errors))
        assert row["delta_vs_baseline"] == pytest.approx(statistics.fmean(errors) - 0.06)
    out = SweepReport.model_validate(rep).model_dump()
    assert out["rows"][0]["knobs"] == rep["knobs"] and out["reference"] == rep["reference"]
    # Grid mode: the same fields, knobs null on rows.
    grid_rep = build_report(sweep_id=4, name=None, axes=AXES, grid=GRID, baseline=False, jobs=[])
    assert grid_rep["mode"] == "grid" and grid_rep["reference"] is None and len(grid_rep["rows"]) == 12
    assert all(r["knobs"] is None for r in grid_rep["rows"])


def test_csv_of_a_one_at_a_time_report_names_the_curves():
    rows = list(csv.DictReader(io.StringIO(to_csv(_report()))))
    assert list(rows[0])[-2:] == ["n_seeds", "knobs"] and len(rows) == 8
    assert rows[0]["knobs"] == "device.transfer_noise;device.sp_skew"
    assert rows[3]["knobs"] == "device.sp_skew" and rows[3]["device.sp_skew"] == "0.1"


# -- the figure -------------------------------------------------------------------------------
def test_knob_panels_hold_one_curve_per_algorithm_and_the_baseline_band():
    rep = _report()
    panels = plots.knob_panels(rep, "c-ttv2")
    assert [p.knob for p in panels] == ["device.transfer_noise", "device.sp_skew"]
    assert [p.values for p in panels] == [[0, 0.1, 0.2], [0, 0.1]]
    for panel in panels:
        assert [s.algorithm for s in panel.series] == ["c-ttv2", "ttv2"]
        for s in panel.series:
            assert s.x == [float(v) for v in panel.values]
            point = {"algorithm": s.algorithm, **rep["reference"]}
            for x, acc, std, (low, high) in zip(s.x, s.accuracy, s.std, zip(*s.band)):
                errors = [_acc_error({**point, panel.knob: x}, seed) for seed in range(3)]
                assert acc == pytest.approx(100 * (1 - statistics.fmean(errors)))
                assert std == pytest.approx(100 * statistics.stdev(errors))
                assert (low, high) == pytest.approx((acc - std, acc + std))
        b = panel.baseline
        assert b.horizontal and b.accuracy == pytest.approx([94.0]) and b.std == pytest.approx([1.0])
        assert [b.band[0], b.band[1]] == [pytest.approx([93.0]), pytest.approx([95.0])]
    # The reference point is in both panels with the same numbers.
    assert panels[0].series[1].accuracy[0] == panels[1].series[1].accuracy[0]


def test_knob_panels_leave_out_unfinished_points_and_bands_below_two_seeds():
    rep = _report(n_seeds=1, finished=lambda p, s: p["device.transfer_noise"] != 0.1)
    noise, _ = plots.knob_panels(rep, "c-ttv2")
    assert [s.x for s in noise.series] == [[0.0, 0.2], [0.0, 0.2]]
    assert all(s.band is None for s in noise.series) and noise.baseline.std == [None]
    rep = _report(finished=lambda p, s: p["device.sp_skew"] == 0.1)  # the reference not finished
    noise, skew = plots.knob_panels(rep, "c-ttv2")
    assert noise.empty and not skew.empty and [s.x for s in skew.series] == [[0.1], [0.1]]


def test_a_task_changing_knob_follows_its_baselines():
    grid = {"device.sp_skew": [0, 0.1], "data.num_classes": [10, 3]}
    axes = list(grid)
    jobs = [JobOutcome("succeeded", False, p, 0.2) for p in plan.points(grid, axes, "one_at_a_time")]
    jobs += [
        JobOutcome("succeeded", True, p, 0.01 * p["data.num_classes"])
        for p in plan.points(grid, plan.baseline_axes(axes), "one_at_a_time")
    ]
    rep = build_report(sweep_id=1, name=None, axes=axes, grid=grid, baseline=True, jobs=jobs, mode="one_at_a_time")
    skew, classes = plots.knob_panels(rep, "sgd")
    assert skew.baseline.horizontal and skew.baseline.accuracy == pytest.approx([90.0])
    assert classes.baseline.x == [3.0, 10.0] and classes.baseline.accuracy == pytest.approx([97.0, 90.0])


def test_one_at_a_time_png(tmp_path):
    rep = _report()
    assert plots.figure_kind(rep) == "knobs" and plots.figure_size(rep, "c-ttv2") == (980, 540)
    png = plots.render_png(rep, base_algorithm="c-ttv2")
    pixels = _decode(png)
    assert pixels.shape == (540, 980, 3)
    assert_not_blank(pixels)
    (tmp_path / "one_at_a_time.png").write_bytes(png)
    empty = _report(finished=lambda p, s: False)
    assert _decode(plots.render_png(empty, base_algorithm="c-ttv2")).shape == (540, 980, 3)


def test_one_knob_grid_sweep_uses_the_same_panel():
    grid = {"algorithm": ["c-ttv2", "ttv2"], "device.transfer_noise": [0, 0.1]}
    jobs = [JobOutcome("succeeded", False, p, 0.1) for p in plan.points(grid, list(grid)) for _ in range(2)]
    rep = build_report(sweep_id=1, name=None, axes=list(grid), grid=grid, baseline=False, jobs=jobs)
    (panel,) = plots.knob_panels(rep, "c-ttv2")
    assert plots.figure_kind(rep) == "line" and panel.baseline is None
    assert [s.accuracy for s in panel.series] == [[90.0, 90.0]] * 2
    assert [s.band for s in panel.series] == [([90.0, 90.0], [90.0, 90.0])] * 2  # std 0 over 2 seeds


# -- knobs that do not apply to an algorithm (device.transfer_noise and sgd) -------------------
MIXED = {"algorithm": ["c-ttv2", "ttv2", "sgd"], "device.transfer_noise": [0, 0.1, 0.2], "device.sp_skew": [0, 0.1]}
NOISE = "device.transfer_noise"


def test_the_spec_still_rejects_transfer_noise_for_sgd():
    from cttv2_engine.spec import KNOB_ALGORITHMS, TRANSFER_ALGORITHMS

    assert KNOB_ALGORITHMS[NOISE] == TRANSFER_ALGORITHMS
    with pytest.raises(
        ValidationError, match="device.transfer_noise applies to c-ttv2, ttv2, agad; algorithm sgd has no transfer"
    ):
        JobSpec.model_validate({**BASE, "algorithm": "sgd", "device": {**BASE["device"], "transfer_noise": 0.0}})
    for algorithm in ("ttv2", "fp"):
        JobSpec.model_validate({**BASE, "algorithm": algorithm, "device": {**BASE["device"], "transfer_noise": 0.1}})


def test_one_at_a_time_gives_sgd_the_reference_and_its_other_knobs_only():
    axes = list(MIXED)
    pts = plan.points(MIXED, axes, "one_at_a_time")
    sgd = [(p[NOISE], p["device.sp_skew"]) for p in pts if p["algorithm"] == "sgd"]
    assert sgd == [(0, 0), (0, 0.1)]
    assert len(pts) == 4 + 4 + 2 == plan.count_points(MIXED, axes, "one_at_a_time")
    assert plan.count_jobs(MIXED, axes, 2, True, "one_at_a_time") == (20, 2)
    jobs = plan.plan(BASE, MIXED, axes, seeds=[0, 1], baseline=True, label="s", mode="one_at_a_time")
    assert len(jobs) == sum(plan.count_jobs(MIXED, axes, 2, True, "one_at_a_time"))
    assert len({j.spec["name"] for j in jobs}) == len(jobs)
    for job in jobs:
        spec = service._validate(None, None, job)  # the service's own checks, as at POST
        if job.is_baseline:
            continue
        assert spec.algorithm == job.grid["algorithm"]
        assert spec.device.sp_skew == job.grid["device.sp_skew"]
        if job.grid["algorithm"] == "sgd":
            # planned without transfer_noise (the base's None), the point keeps the reference
            assert job.grid[NOISE] == 0 and spec.device.transfer_noise is None
            assert NOISE not in job.spec["name"]
        else:
            assert spec.device.transfer_noise == job.grid[NOISE]


def test_a_null_reference_is_kept_for_sgd_and_overrides_the_base():
    grid = {"algorithm": ["c-ttv2", "sgd"], NOISE: [None, 0.1]}
    base = {**BASE, "device": {**BASE["device"], "transfer_noise": 0.05}}
    jobs = plan.plan(base, grid, list(grid), seeds=[0], baseline=False, label="s", mode="one_at_a_time")
    assert [(j.grid["algorithm"], j.grid[NOISE]) for j in jobs] == [("c-ttv2", None), ("c-ttv2", 0.1), ("sgd", None)]
    assert plan.count_points(grid, list(grid), "one_at_a_time") == 3
    sgd = service._validate(None, None, jobs[-1])
    assert sgd.device.transfer_noise is None
    assert (
        "only the reference point is planned, with device.transfer_noise null"
        in plan.not_applicable(grid, list(grid), "one_at_a_time")[0]["reason"]
    )


@pytest.mark.parametrize(
    ("grid", "n_points"),
    [
        ({"algorithm": ["c-ttv2", "sgd"], NOISE: [0, 0.1], "device.sp_skew": [0, 0.1]}, 4),  # no sgd point
        ({"algorithm": ["c-ttv2", "sgd"], NOISE: [None, 0.1], "device.sp_skew": [0, 0.1]}, 6),  # sgd at null
        ({"algorithm": ["c-ttv2", "fp", "mixed-precision"], NOISE: [0, 0.1]}, 4),  # fp ignores the device
        ({"device.sp_skew": [0, 0.1], "algorithm": ["sgd", "ttv2"], NOISE: [0.2]}, 2),
        ({"algorithm": ["sgd"]}, 1),
        ({NOISE: [0, 0.1]}, 2),  # no algorithm axis: nothing planned around
    ],
)
def test_grid_mode_skips_the_points_the_spec_rejects(grid, n_points):
    axes = list(grid)
    pts = plan.points(grid, axes)
    assert len(pts) == plan.count_points(grid, axes) == n_points
    jobs = plan.plan(BASE, grid, axes, seeds=[0, 1], baseline=True, label="s")
    assert len(jobs) == sum(plan.count_jobs(grid, axes, 2, True)) == 2 * n_points + 2
    for job in jobs:
        service._validate(None, None, job)
        assert NOISE not in job.grid or job.spec["device"]["transfer_noise"] == job.grid[NOISE]


def test_grid_mode_lists_what_it_skipped():
    grid = {"algorithm": ["c-ttv2", "sgd", "mixed-precision"], NOISE: [0, 0.1]}
    (sgd, mp) = plan.not_applicable(grid, list(grid))
    assert (sgd["algorithm"], sgd["knob"], mp["algorithm"]) == ("sgd", NOISE, "mixed-precision")
    assert sgd["reason"] == (
        "device.transfer_noise applies to c-ttv2, ttv2, agad only, not to sgd: no point of sgd is planned"
    )
    assert plan.not_applicable({**grid, NOISE: [None]}, list(grid)) == []  # nothing was left out
    assert plan.not_applicable({NOISE: [0.1]}, [NOISE]) == []


def test_size_check_counts_only_the_planned_points():
    many = [i / 1000 for i in range(300)]
    for mode, n in (("grid", 300), ("one_at_a_time", 301)):  # without planning around: 600
        body = SweepCreate.model_validate(
            {
                "base": TINY_CTTV2,
                "grid": {"algorithm": ["c-ttv2", "sgd"], NOISE: many},
                "seeds": [0],
                "baseline": True,
                "mode": mode,
            }
        )
        assert plan.count_jobs(body.grid, list(body.grid), 1, True, mode) == (n, 1)
        service._check_size(body, list(body.grid), [0])  # under the 500 jobs of the default limit


def _mixed_report(finished=lambda job: True):
    axes = list(MIXED)
    planned = plan.plan(BASE, MIXED, axes, seeds=[0, 1, 2], baseline=True, label="s", mode="one_at_a_time")

    def error(job):
        g = job.grid
        return 0.1 + 0.2 * (g["algorithm"] == "sgd") + 0.3 * g[NOISE] + 0.1 * g["device.sp_skew"] + 0.01 * job.seed

    # Matched on the grid the service stores with each job (sweep_point["grid"]).
    jobs = [
        JobOutcome(
            "succeeded" if finished(j) else "queued",
            j.is_baseline,
            j.grid,
            (0.05 if j.is_baseline else error(j)) if finished(j) else None,
        )
        for j in planned
    ]
    return build_report(sweep_id=9, name="mixed", axes=axes, grid=MIXED, baseline=True, jobs=jobs, mode="one_at_a_time")


def test_report_lists_not_applicable_and_matches_sgd_jobs_to_rows():
    rep = _mixed_report()
    assert [(n["algorithm"], n["knob"]) for n in rep["not_applicable"]] == [("sgd", NOISE)]
    assert "only the reference point is planned, without device.transfer_noise" in rep["not_applicable"][0]["reason"]
    assert len(rep["rows"]) == 10 and rep["total_jobs"] == 10 * 3 + 3
    sgd = [r for r in rep["rows"] if r["point"]["algorithm"] == "sgd"]
    assert [r["point"] for r in sgd] == [
        {"algorithm": "sgd", NOISE: 0, "device.sp_skew": 0},
        {"algorithm": "sgd", NOISE: 0, "device.sp_skew": 0.1},
    ]
    assert [(r["n_finished"], r["n_seeds"]) for r in sgd] == [(3, 3), (3, 3)]
    assert sgd[0]["mean_test_error"] == pytest.approx(0.31) and sgd[1]["mean_test_error"] == pytest.approx(0.32)
    assert sgd[0]["knobs"] == [NOISE, "device.sp_skew"] and sgd[1]["knobs"] == ["device.sp_skew"]
    out = SweepReport.model_validate(rep).model_dump()
    assert out["not_applicable"] == rep["not_applicable"]
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert len(rows) == 10
    # Grid mode: sgd has no row at all, and the report says why.
    grid_rep = build_report(sweep_id=9, name=None, axes=list(MIXED), grid=MIXED, baseline=False, jobs=[])
    assert len(grid_rep["rows"]) == 12 and {r["point"]["algorithm"] for r in grid_rep["rows"]} == {"c-ttv2", "ttv2"}
    assert grid_rep["not_applicable"][0]["reason"].endswith("no point of sgd is planned")
    assert _report()["not_applicable"] == []


def test_the_transfer_noise_panel_has_only_sgds_reference_point():
    rep = _mixed_report()
    noise, skew = plots.knob_panels(rep, "c-ttv2")
    by_algo = {s.algorithm: s for s in noise.series}
    assert by_algo["sgd"].x == [0.0] and not by_algo["sgd"].applies and by_algo["sgd"].band is None
    assert by_algo["sgd"].accuracy == pytest.approx([69.0])
    assert by_algo["c-ttv2"].x == [0.0, 0.1, 0.2] and by_algo["c-ttv2"].applies
    assert all(s.applies and s.x == [0.0, 0.1] for s in skew.series)
    # Not finished at the reference: nothing at all for sgd on that panel.
    rep = _mixed_report(finished=lambda j: j.is_baseline or j.grid["device.sp_skew"] != 0)
    noise, _ = plots.knob_panels(rep, "c-ttv2")
    assert {s.algorithm: s.x for s in noise.series}["sgd"] == []
    png = plots.render_png(_mixed_report(), base_algorithm="c-ttv2")
    assert_not_blank(_decode(png))


# -- reference_only: an algorithm at the reference point alone ------------------------------------
REF_ONLY = {"algorithm": ["c-ttv2", "ttv2", "sgd"], "device.sp_skew": [0, 0.1, 0.2], "device.dw_min_std": [0.3, 1.0]}


def test_reference_only_plans_that_algorithm_at_the_reference_and_counts_match():
    axes = list(REF_ONLY)
    pts = plan.points(REF_ONLY, axes, "one_at_a_time", ["sgd"])
    assert [p for p in pts if p["algorithm"] == "sgd"] == [
        {"algorithm": "sgd", "device.sp_skew": 0, "device.dw_min_std": 0.3}
    ]
    assert len(pts) == 4 + 4 + 1 == plan.count_points(REF_ONLY, axes, "one_at_a_time", ["sgd"])
    jobs = plan.plan(BASE, REF_ONLY, axes, [0, 1], True, "s", mode="one_at_a_time", reference_only=["sgd"])
    assert len(jobs) == sum(plan.count_jobs(REF_ONLY, axes, 2, True, "one_at_a_time", ["sgd"])) == 2 * 9 + 2
    not_run = plan.not_applicable(REF_ONLY, axes, "one_at_a_time", ["sgd"])
    assert [(n["algorithm"], n["knob"]) for n in not_run] == [("sgd", "device.sp_skew"), ("sgd", "device.dw_min_std")]
    # The figure shows sgd's lone reference point on every panel, no line.
    outcomes = [JobOutcome("succeeded", j.is_baseline, j.grid, 0.1) for j in jobs]
    rep = build_report(
        sweep_id=1,
        name=None,
        axes=axes,
        grid=REF_ONLY,
        baseline=True,
        jobs=outcomes,
        mode="one_at_a_time",
        reference_only=["sgd"],
    )
    for panel in plots.knob_panels(rep, "c-ttv2"):
        sgd = next(s for s in panel.series if s.algorithm == "sgd")
        assert not sgd.applies and len(sgd.x) == 1


@pytest.mark.parametrize(
    ("mode", "reference_only", "says"),
    [
        ("grid", ["sgd"], "applies to mode one_at_a_time only"),
        ("one_at_a_time", ["agad"], "agad is not a value of the grid's algorithm axis"),
        ("one_at_a_time", ["sgd", "sgd"], "lists an algorithm twice"),
    ],
)
def test_a_bad_reference_only_is_a_422_naming_it(mode, reference_only, says):
    with pytest.raises(Invalid) as err:
        plan.check_reference_only(REF_ONLY, list(REF_ONLY), mode, reference_only)
    assert err.value.fields[0]["field"] == "reference_only" and says in err.value.message


# -- crossed: axes crossed with every knob setting, as the algorithm is -------------------------
CROSSED = {
    "model.arch": ["swin_micro", "resnet_micro"],
    "algorithm": ["c-ttv2", "ttv2"],
    "device.sp_skew": [0, 0.1, 0.2],
    "device.dw_min_std": [0.3, 1.0],
}


def test_crossed_axes_get_every_knobs_curve_and_a_baseline_each():
    axes = list(CROSSED)
    pts = plan.points(CROSSED, axes, "one_at_a_time", crossed=["model.arch"])
    assert len(pts) == 2 * 2 * 4 == plan.count_points(CROSSED, axes, "one_at_a_time", crossed=["model.arch"])
    for arch in CROSSED["model.arch"]:
        mine = [p for p in pts if p["model.arch"] == arch and p["algorithm"] == "ttv2"]
        assert [(p["device.sp_skew"], p["device.dw_min_std"]) for p in mine] == [
            (0, 0.3),
            (0.1, 0.3),
            (0.2, 0.3),
            (0, 1.0),
        ]
    assert pts[0]["model.arch"] == "swin_micro" and pts[-1]["model.arch"] == "resnet_micro"  # listed first: outer
    jobs = plan.plan(BASE, CROSSED, axes, [0], True, "s", mode="one_at_a_time", crossed=["model.arch"])
    baselines = [j for j in jobs if j.is_baseline]
    assert sorted(j.grid["model.arch"] for j in baselines) == ["resnet_micro", "swin_micro"]
    assert len(jobs) == sum(plan.count_jobs(CROSSED, axes, 1, True, "one_at_a_time", crossed=["model.arch"])) == 18
    for job in jobs:
        JobSpec.model_validate(job.spec)
    outcomes = [
        JobOutcome(
            "succeeded",
            j.is_baseline,
            j.grid,
            0.05 if j.is_baseline else 0.1 + 0.1 * (j.grid["model.arch"] == "resnet_micro"),
        )
        for j in jobs
    ]
    rep = build_report(
        sweep_id=1,
        name=None,
        axes=axes,
        grid=CROSSED,
        baseline=True,
        jobs=outcomes,
        mode="one_at_a_time",
        crossed=["model.arch"],
    )
    assert rep["knobs"] == ["device.sp_skew", "device.dw_min_std"] and rep["crossed"] == ["model.arch"]
    assert rep["reference"] == {"device.sp_skew": 0, "device.dw_min_std": 0.3}
    assert all(r["knobs"] for r in rep["rows"])  # every row lies on a knob's curve
    SweepReport.model_validate(rep)
    parts = plots.facets(rep)
    assert [p["facet"] for p in parts] == ["model.arch=swin_micro", "model.arch=resnet_micro"]
    for part, accuracy in zip(parts, (90.0, 80.0)):
        panels = plots.knob_panels(part, "c-ttv2")
        assert [p.knob for p in panels] == rep["knobs"]
        assert all(s.accuracy == pytest.approx([accuracy] * len(s.x)) for p in panels for s in p.series)
        assert all(p.baseline is not None and p.baseline.horizontal for p in panels)
    pixels = _decode(plots.render_png(rep, base_algorithm="c-ttv2"))
    w, h = plots.figure_size(rep, "c-ttv2")
    assert pixels.shape == (h, w, 3)
    assert_not_blank(pixels)


@pytest.mark.parametrize(
    ("mode", "crossed", "says"),
    [
        ("grid", ["model.arch"], "applies to mode one_at_a_time only"),
        ("one_at_a_time", ["algorithm"], "the algorithm axis is always crossed"),
        ("one_at_a_time", ["data.classes"], "data.classes is not an axis of the grid"),
    ],
)
def test_a_bad_crossed_is_a_422_naming_it(mode, crossed, says):
    with pytest.raises(Invalid) as err:
        plan.check_crossed(CROSSED, list(CROSSED), mode, crossed)
    assert err.value.fields[0]["field"] == "crossed" and says in err.value.message


def test_idempotency_hash_leaves_out_the_chopper_options_while_unset():
    """A body sent before algorithm_options had in_chop_random, forget_buffer and momentum hashes
    as it did then; setting one changes the hash."""
    from service.jobs.schemas import JobCreate
    from service.jobs.service import hashed_request

    plain = hashed_request(JobCreate.model_validate(TINY_CTTV2).model_dump(mode="json"))
    assert not {"in_chop_random", "forget_buffer", "momentum"} & set(plain["algorithm_options"])
    body = {**TINY_CTTV2, "algorithm_options": {"in_chop_random": False}}
    regular = hashed_request(JobCreate.model_validate(body).model_dump(mode="json"))
    assert regular["algorithm_options"]["in_chop_random"] is False
