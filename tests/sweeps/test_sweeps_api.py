"""Sweeps through the real stack: a 2x2 study with 2 seeds and a digital baseline, its report
(JSON, CSV, PNG) while partly done and when complete, rejected sweeps, cancel, ownership."""

from __future__ import annotations

import csv
import io
import statistics
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

GRID = {"algorithm": ["c-ttv2", "sgd"], "device.sp_skew": [0, 0.1]}
STUDY = {"name": "tiny-study", "base": TINY_CTTV2, "grid": GRID, "seeds": [0, 1], "baseline": True}
SLOW = spec(TINY_CTTV2, **{"training.epochs": 40})


@pytest.fixture(scope="module")
def alice(stack):
    return stack.client(stack.create_user())


@pytest.fixture(scope="module")
def bob(stack):
    return stack.client(stack.create_user())


def wait_sweep_done(client, sweep_id: int, timeout: float, on_poll=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] not in ("queued", "running"):
            return sweep
        if on_poll:
            on_poll()
        time.sleep(1)
    raise AssertionError(f"sweep {sweep_id} not done after {timeout} s: {sweep}")


def all_jobs(client, sweep_id: int) -> list[dict]:
    jobs, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/sweeps/{sweep_id}/jobs", params=params).json()
        jobs += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


def decode_png(content: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(content))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"))


def test_sweep_operations_are_named(stack):
    ops = {op["operationId"] for p in stack.client().get("/openapi.json").json()["paths"].values() for op in p.values()}
    assert {"create_sweep", "list_sweeps", "get_sweep", "cancel_sweep", "list_sweep_jobs", "get_sweep_report"} <= ops


def test_cancel_and_ownership(stack, alice, bob):
    r = alice.post("/v1/sweeps", json={"base": SLOW, "seeds": [0, 1, 2]})
    assert r.status_code == 201, r.text
    sweep = r.json()
    sid = sweep["id"]
    assert sweep["total_jobs"] == 3 and sweep["request"]["seeds"] == [0, 1, 2]

    for call in (
        lambda c: c.get(f"/v1/sweeps/{sid}"),
        lambda c: c.post(f"/v1/sweeps/{sid}/cancel"),
        lambda c: c.get(f"/v1/sweeps/{sid}/report"),
        lambda c: c.get(f"/v1/sweeps/{sid}/jobs"),
    ):
        assert_error(call(bob), 404, "not_found")  # another user's sweep looks missing
    assert sid not in [s["id"] for s in bob.get("/v1/sweeps").json()["items"]]

    cancelled = alice.post(f"/v1/sweeps/{sid}/cancel").json()
    assert cancelled["counts"]["queued"] == 0 and cancelled["counts"]["running"] <= 1
    done = wait_sweep_done(alice, sid, timeout=120)
    assert done["status"] == "cancelled" and done["counts"]["cancelled"] == 3, done
    rep = alice.get(f"/v1/sweeps/{sid}/report").json()
    assert rep["complete"] is True and rep["axes"] == [] and rep["baseline"] is None
    (row,) = rep["rows"]
    assert row["point"] == {} and row["n_finished"] == 0 and row["mean_test_error"] is None
    assert row["n_seeds"] == 3
    png = alice.get(f"/v1/sweeps/{sid}/report", params={"format": "png"})
    assert png.status_code == 200 and decode_png(png.content).shape == (600, 960, 3)
    assert sid in [s["id"] for s in alice.get("/v1/sweeps").json()["items"]]


def test_bad_sweeps_are_rejected_whole(stack):
    carol = stack.client(stack.create_user())

    def post(body):
        return carol.post("/v1/sweeps", json=body)

    err = assert_error(post({**STUDY, "grid": {"device.sp_skw": [0, 0.1]}}), 422, "validation_error")
    assert err["fields"][0]["field"] == "grid.device.sp_skw" and "no field 'sp_skw'" in err["message"]

    err = assert_error(post({**STUDY, "grid": {"algorithm": ["sgd"], "device.sp_skew": [0, 5]}}), 422)
    assert err["fields"][0]["field"] == "grid.device.sp_skew"
    assert "value 5" in err["message"] and "less than or equal to 1" in err["message"]

    # Valid alone, invalid together: ConstantStep has no symmetry-point knobs.
    grid = {"device.family": ["SoftBoundsReference", "ConstantStep"], "device.sp_skew": [0.1]}
    err = assert_error(post({**STUDY, "grid": grid}), 422)
    assert err["fields"][0]["field"] == "grid.device.family"
    assert "ConstantStep" in err["message"] and "sp_skew" in err["message"]

    # A check across the whole spec: named as the grid, with the point that fails it. (With
    # sgd on an algorithm axis the sweep plans around transfer_noise instead: plan.not_applicable.)
    sgd = {**TINY_CTTV2, "algorithm": "sgd"}
    err = assert_error(post({**STUDY, "base": sgd, "grid": {"device.transfer_noise": [0.1]}}), 422)
    assert err["fields"][0]["field"] == "grid"
    assert "algorithm sgd has no transfer" in err["message"] and '"device.transfer_noise": 0.1' in err["message"]

    err = assert_error(post({**STUDY, "grid": {"training.seed": [1, 2]}}), 422)
    assert err["fields"][0]["field"] == "grid.training.seed"

    big = {"device.sp_skew": [i / 100 for i in range(30)], "device.sp_variability": [i / 100 for i in range(20)]}
    err = assert_error(post({**STUDY, "grid": big, "seeds": [0]}), 422, "sweep_too_large")
    assert "601 jobs" in err["message"] and "500" in err["message"]
    assert "CTTV2_MAX_SWEEP_JOBS" in err["message"]

    err = assert_error(post({**STUDY, "base": {**TINY_CTTV2, "resume_from": {"job": 1}}}), 422)
    assert err["fields"][0]["field"] == "base.resume_from"

    # Nothing was half-created.
    assert carol.get("/v1/sweeps").json()["items"] == []
    assert carol.get("/v1/jobs").json()["items"] == []


@pytest.mark.slow
def test_study_sweep_end_to_end(stack, alice):
    key = uuid.uuid4().hex
    r = alice.post("/v1/sweeps", json=STUDY, headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    sweep = r.json()
    sid = sweep["id"]
    assert sweep["total_jobs"] == 10 and sum(sweep["counts"].values()) == 10  # 2x2x2 + 2 baselines
    assert sweep["status"] in ("queued", "running") and sweep["name"] == "tiny-study"
    assert sweep["request"]["axes"] == ["algorithm", "device.sp_skew"]

    again = alice.post("/v1/sweeps", json=STUDY, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json()["id"] == sid
    assert again.headers["Idempotent-Replayed"] == "true"
    other = alice.post("/v1/sweeps", json={**STUDY, "seeds": [3]}, headers={"Idempotency-Key": key})
    assert_error(other, 409, "idempotency_key_reused")

    # Right after submit the report exists and says it is partial.
    early = alice.get(f"/v1/sweeps/{sid}/report")
    assert early.headers["X-Sweep-Complete"] == "false"
    rep = early.json()
    assert rep["complete"] is False and rep["pending"] > 0 and rep["total_jobs"] == 10
    assert len(rep["rows"]) == 4 and all(row["n_seeds"] == 2 for row in rep["rows"])
    assert any(row["n_finished"] < row["n_seeds"] for row in rep["rows"])
    early_png = alice.get(f"/v1/sweeps/{sid}/report", params={"format": "png"})
    assert early_png.status_code == 200 and decode_png(early_png.content).shape == (600, 960, 3)

    partial_seen: list[dict] = []

    def look_at_partial_report():
        rep = alice.get(f"/v1/sweeps/{sid}/report").json()
        finished = sum(r["n_finished"] for r in rep["rows"]) + rep["baseline"]["n_finished"]
        if not rep["complete"] and finished:
            assert rep["pending"] > 0 and finished + rep["pending"] <= 10
            partial_seen.append(rep)

    done = wait_sweep_done(alice, sid, timeout=900, on_poll=look_at_partial_report)
    assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 10, done

    jobs = all_jobs(alice, sid)
    assert len(jobs) == 10 and len({j["id"] for j in jobs}) == 10
    baselines = [j for j in jobs if j["is_baseline"]]
    grid_jobs = [j for j in jobs if not j["is_baseline"]]
    assert sorted(j["sweep_point"]["seed"] for j in baselines) == [0, 1]
    for j in baselines:
        assert j["algorithm"] == "fp" and j["spec"]["device"] is None and j["sweep_point"]["grid"] == {}
        assert j["spec"]["training"]["seed"] == j["sweep_point"]["seed"]
    points = sorted(
        (j["sweep_point"]["grid"]["algorithm"], j["sweep_point"]["grid"]["device.sp_skew"], j["sweep_point"]["seed"])
        for j in grid_jobs
    )
    assert points == sorted((a, s, seed) for a in GRID["algorithm"] for s in GRID["device.sp_skew"] for seed in (0, 1))
    for j in grid_jobs:
        point = j["sweep_point"]["grid"]
        assert j["sweep_id"] == sid and j["algorithm"] == point["algorithm"]
        assert j["spec"]["device"]["sp_skew"] == point["device.sp_skew"]
        assert j["spec"]["training"]["seed"] == j["sweep_point"]["seed"]
        assert j["spec"]["model"]["analog_scope"] == "head"  # the base's other settings

    # The report, recomputed here from the jobs' own results.
    r = alice.get(f"/v1/sweeps/{sid}/report")
    assert r.headers["X-Sweep-Complete"] == "true"
    rep = r.json()
    assert rep["complete"] is True and rep["pending"] == 0 and rep["axes"] == ["algorithm", "device.sp_skew"]
    base_errors = [j["result"]["test_error"] for j in baselines]
    assert rep["baseline"]["mean_test_error"] == pytest.approx(statistics.fmean(base_errors))
    assert rep["baseline"]["std_test_error"] == pytest.approx(statistics.stdev(base_errors))
    assert rep["baseline"]["n_finished"] == 2
    assert [row["point"] for row in rep["rows"]] == [
        {"algorithm": a, "device.sp_skew": s} for a in GRID["algorithm"] for s in GRID["device.sp_skew"]
    ]
    for row in rep["rows"]:
        errors = [j["result"]["test_error"] for j in grid_jobs if j["sweep_point"]["grid"] == row["point"]]
        assert len(errors) == 2 and row["n_finished"] == 2 and row["n_seeds"] == 2
        assert row["mean_test_error"] == pytest.approx(statistics.fmean(errors))
        assert row["std_test_error"] == pytest.approx(statistics.stdev(errors))
        assert row["delta_vs_baseline"] == pytest.approx(statistics.fmean(errors) - statistics.fmean(base_errors))

    # CSV: a header and the same numbers.
    c = alice.get(f"/v1/sweeps/{sid}/report", params={"format": "csv"})
    assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(c.text)))
    assert list(table[0])[:4] == ["algorithm", "device.sp_skew", "mean_test_error", "std_test_error"]
    assert len(table) == 4
    for line, row in zip(table, rep["rows"]):
        assert line["algorithm"] == row["point"]["algorithm"]
        assert float(line["device.sp_skew"]) == row["point"]["device.sp_skew"]
        assert float(line["mean_test_error"]) == pytest.approx(row["mean_test_error"])
        assert float(line["delta_vs_baseline"]) == pytest.approx(row["delta_vs_baseline"])
        assert int(line["n_finished"]) == 2

    # PNG: one swept axis besides algorithm -> a line plot of the documented size, not blank.
    p = alice.get(f"/v1/sweeps/{sid}/report", params={"format": "png"})
    assert p.status_code == 200 and p.headers["content-type"] == "image/png"
    pixels = decode_png(p.content)
    assert pixels.shape == (600, 960, 3)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    blue = (np.abs(pixels.astype(int) - (31, 119, 180)).sum(axis=2) < 40).mean()
    orange = (np.abs(pixels.astype(int) - (255, 127, 14)).sum(axis=2) < 40).mean()
    assert blue > 0.0005 and orange > 0.0005  # one line per algorithm

    assert alice.get(f"/v1/sweeps/{sid}/report", params={"format": "xml"}).status_code == 422
