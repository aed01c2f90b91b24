"""Sweeps through the API, in process (no worker; the real-stack study is test_sweeps_api.py):
planning (grid and one_at_a_time, seeds, baselines), every planned job validated before
anything is stored, size and active-job limits, idempotency, the report of a sweep not yet
run, cancel, ownership."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

pytestmark = pytest.mark.fast

GRID = {"algorithm": ["c-ttv2", "sgd"], "device.sp_skew": [0, 0.1]}
STUDY = {"name": "tiny-study", "base": TINY_CTTV2, "grid": GRID, "seeds": [0, 1], "baseline": True}


def create(client, body=STUDY, **headers) -> dict:
    r = client.post("/v1/sweeps", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def all_jobs(client, sweep_id: int, **params) -> list[dict]:
    jobs, cursor = [], None
    while True:
        r = client.get(
            f"/v1/sweeps/{sweep_id}/jobs", params={"limit": 3, **params, **({"cursor": cursor} if cursor else {})}
        )
        assert r.status_code == 200, r.text
        jobs += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return jobs


def jobs_in_db(api, user_id: int) -> int:
    return api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=user_id)[0][0]


def test_a_grid_study_plans_one_job_per_point_and_seed_plus_baselines(api):
    alice = api.user()
    before = Counter(map(json.dumps, api.published()))
    sweep = create(alice)
    assert sweep["total_jobs"] == 2 * 2 * 2 + 2 and sweep["status"] == "queued"
    assert sweep["counts"] == {"queued": 10, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    assert sweep["request"]["axes"] == ["algorithm", "device.sp_skew"] and sweep["request"]["seeds"] == [0, 1]
    assert alice.get(f"/v1/sweeps/{sweep['id']}").json() == sweep

    jobs = all_jobs(alice, sweep["id"])
    assert len(jobs) == 10 and len({j["id"] for j in jobs}) == 10
    assert all(j["sweep_id"] == sweep["id"] and j["status"] == "queued" for j in jobs)
    points = Counter()
    for job in jobs:
        grid, seed = job["sweep_point"]["grid"], job["sweep_point"]["seed"]
        assert job["spec"]["training"]["seed"] == seed
        if job["is_baseline"]:
            assert job["algorithm"] == "fp" and grid == {}
            points["baseline"] += 1
            continue
        assert job["algorithm"] == grid["algorithm"]
        assert job["spec"]["device"]["sp_skew"] == grid["device.sp_skew"]
        points[(grid["algorithm"], grid["device.sp_skew"], seed)] += 1
    assert points == Counter(
        {
            "baseline": 2,
            **{(a, s, seed): 1 for a in GRID["algorithm"] for s in GRID["device.sp_skew"] for seed in (0, 1)},
        }
    )
    # Every job was published once.
    after = Counter(map(json.dumps, api.published()))
    after.subtract(before)
    published = sorted(json.loads(m)[1][0] for m, n in after.items() for _ in range(n))
    assert published == sorted(j["id"] for j in jobs)


def test_one_at_a_time_moves_each_knob_alone_from_its_first_value(api):
    alice = api.user()
    body = {
        "base": TINY_CTTV2,
        "mode": "one_at_a_time",
        "seeds": [0, 1],
        "grid": {"device.transfer_noise": [0, 0.1, 0.2], "device.sp_skew": [0, 0.1]},
    }
    sweep = create(alice, body)
    assert sweep["total_jobs"] == 4 * 2  # 4 points (not 3 x 2 = 6), 2 seeds
    points = {
        (j["sweep_point"]["grid"]["device.transfer_noise"], j["sweep_point"]["grid"]["device.sp_skew"])
        for j in all_jobs(alice, sweep["id"])
    }
    assert points == {(0, 0), (0.1, 0), (0.2, 0), (0, 0.1)}


def test_a_stored_device_spec_is_the_base_device(api):
    alice = api.user()
    device = alice.post("/v1/device-specs", json={"spec": {"family": "ReRamSB", "n_states": 100}}).json()
    sweep = create(
        alice,
        {"base": spec(TINY_CTTV2, device={"id": device["id"]}), "grid": {"device.sp_skew": [0, 0.1]}, "baseline": True},
    )
    jobs = all_jobs(alice, sweep["id"])
    analog = [j for j in jobs if not j["is_baseline"]]
    assert len(analog) == 2 and all(j["spec"]["device"]["family"] == "ReRamSB" for j in analog)
    assert {j["spec"]["device"]["sp_skew"] for j in analog} == {0, 0.1}
    assert all(j["device_spec_id"] == device["id"] for j in analog)
    assert [j["device_spec_id"] for j in jobs if j["is_baseline"]] == [None]


def test_the_report_of_a_sweep_not_yet_run(api):
    alice = api.user()
    sweep = create(alice)
    r = alice.get(f"/v1/sweeps/{sweep['id']}/report")
    assert r.status_code == 200, r.text
    assert r.headers["x-sweep-complete"] == "false" and r.headers["x-sweep-pending"] == "10"
    report = r.json()
    assert report["complete"] is False and report["pending"] == 10 and report["total_jobs"] == 10
    assert report["axes"] == ["algorithm", "device.sp_skew"]
    assert len(report["rows"]) == 4
    for row in report["rows"]:
        assert row["n_pending"] == 2 and row["n_finished"] == 0 and row["n_seeds"] == 2
        assert row["mean_test_error"] is None and row["delta_vs_baseline"] is None
    assert report["baseline"]["n_pending"] == 2

    r = alice.get(f"/v1/sweeps/{sweep['id']}/report", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4 and {(row["algorithm"], row["n_pending"]) for row in rows} == {("c-ttv2", "2"), ("sgd", "2")}
    assert_error(
        alice.get(f"/v1/sweeps/{sweep['id']}/report", params={"format": "xml"}), 422, "validation_error", field="format"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grid": {"device.nope": [1]}}, "grid.device.nope"),
        ({"grid": {"device.sp_skew": ["x"]}}, "grid.device.sp_skew"),
        ({"grid": {"training.epochs": [1, 2000]}}, "grid.training.epochs"),
        ({"grid": {"device.sp_skew": [0.1, 0.1]}}, "grid.device.sp_skew"),
        ({"grid": {"device.sp_skew": []}}, "grid.device.sp_skew"),
        ({"grid": {"device.sp_skew": [0, 0.1]}, "axes": ["algorithm"]}, "axes"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"base": spec(TINY_CTTV2, resume_from={"job": 1})}, "base.resume_from"),
        ({"base": spec(TINY_CTTV2, **{"training.epochs": 0})}, "base.training.epochs"),
        ({"baseline": True, "baseline_training": {"seed": 3}}, "baseline_training.seed"),
        ({"bogus": 1}, "bogus"),
    ],
    ids=lambda v: json.dumps(v)[:48] if isinstance(v, dict) else None,
)
def test_a_bad_sweep_is_refused_naming_the_field_and_creates_nothing(api, body, field):
    alice = api.user()
    request = {"base": TINY_CTTV2, **body}
    assert_error(alice.post("/v1/sweeps", json=request), 422, "validation_error", field=field)
    assert alice.get("/v1/sweeps").json()["items"] == []
    assert jobs_in_db(api, alice.user_id) == 0


def test_a_sweep_over_the_size_limit_is_refused(api):
    alice = api.user()
    with api.settings(max_sweep_jobs=5):
        body = {"base": TINY_CTTV2, "grid": {"device.sp_skew": [0, 0.1, 0.2]}, "seeds": [0, 1]}
        assert_error(alice.post("/v1/sweeps", json=body), 422, "sweep_too_large", field="grid")
        assert jobs_in_db(api, alice.user_id) == 0
        body["seeds"] = [0]
        assert create(alice, body)["total_jobs"] == 3


def test_a_sweep_counts_all_its_jobs_against_the_active_limit(api):
    alice = api.user()
    with api.settings(max_active_jobs_per_user=4):
        body = {"base": TINY_CTTV2, "grid": {"device.sp_skew": [0, 0.1, 0.2]}, "seeds": [0, 1]}
        assert_error(alice.post("/v1/sweeps", json=body), 429, "too_many_active_jobs")
        assert jobs_in_db(api, alice.user_id) == 0
        body["seeds"] = [0]
        create(alice, body)
        assert alice.post("/v1/jobs", json=TINY_CTTV2).status_code == 201
        assert_error(alice.post("/v1/jobs", json=TINY_CTTV2), 429, "too_many_active_jobs")


def test_idempotent_create(api):
    alice = api.user()
    first = create(alice, STUDY, **{"Idempotency-Key": "study-1"})
    r = alice.post("/v1/sweeps", json=STUDY, headers={"Idempotency-Key": "study-1"})
    assert r.status_code == 201 and r.json()["id"] == first["id"]
    assert r.headers["idempotent-replayed"] == "true"
    assert jobs_in_db(api, alice.user_id) == 10
    other = {**STUDY, "seeds": [0, 1, 2]}
    assert_error(
        alice.post("/v1/sweeps", json=other, headers={"Idempotency-Key": "study-1"}), 409, "idempotency_key_reused"
    )
    assert jobs_in_db(api, alice.user_id) == 10


def test_cancel_cancels_every_queued_job(api):
    alice = api.user()
    sweep = create(alice)
    keep = alice.post("/v1/jobs", json=TINY_CTTV2).json()  # not part of the sweep
    r = alice.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["counts"]["cancelled"] == 10
    assert all(j["status"] == "cancelled" for j in all_jobs(alice, sweep["id"]))
    assert all_jobs(alice, sweep["id"], status="queued") == []
    assert alice.get(f"/v1/jobs/{keep['id']}").json()["status"] == "queued"
    report = alice.get(f"/v1/sweeps/{sweep['id']}/report")
    assert report.json()["complete"] is True and report.headers["x-sweep-complete"] == "true"


def test_another_users_sweep_is_a_404(api):
    alice, bob = api.user(), api.user()
    sid = create(alice, {"base": TINY_CTTV2, "seeds": [0, 1]})["id"]
    for method, suffix in (("GET", ""), ("GET", "/jobs"), ("POST", "/cancel"), ("GET", "/report")):
        theirs = assert_error(bob.request(method, f"/v1/sweeps/{sid}{suffix}"), 404, "not_found")
        missing = assert_error(bob.request(method, f"/v1/sweeps/2147483647{suffix}"), 404, "not_found")
        assert theirs["message"].replace(str(sid), "N") == missing["message"].replace("2147483647", "N")
    assert bob.get("/v1/sweeps").json()["items"] == []
    assert alice.get(f"/v1/sweeps/{sid}").json()["status"] == "queued"  # Bob's cancel did nothing


def test_sweeps_list_newest_first_in_pages(api):
    alice = api.user()
    ids = [create(alice, {"name": f"s{i}", "base": TINY_CTTV2})["id"] for i in range(3)]
    first = alice.get("/v1/sweeps", params={"limit": 2}).json()
    assert [s["id"] for s in first["items"]] == ids[:0:-1]
    assert all(s["total_jobs"] == 1 and s["counts"]["queued"] == 1 for s in first["items"])
    rest = alice.get("/v1/sweeps", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [s["id"] for s in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
