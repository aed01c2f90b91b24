"""Deleting a sweep, in process: refused (409) while any of its jobs is queued or running;
once they have ended, the sweep, its jobs' rows and their folders go (204), and jobs outside
the sweep stay. Another user's sweep is a 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2

pytestmark = pytest.mark.fast

SMALL = {"name": "tiny", "base": TINY_CTTV2, "grid": {"device.sp_skew": [0, 0.1]}, "seeds": [0], "baseline": False}


def job_folder(api, job_id: int) -> Path:
    from service.artifacts.paths import job_dir

    return job_dir(api.backend.env["CTTV2_ARTIFACT_DIR"], job_id)


def sweep_job_ids(api, sweep_id: int) -> list[int]:
    return [r[0] for r in api.sql("SELECT id FROM jobs WHERE sweep_id = :s ORDER BY id", s=sweep_id)]


def test_a_sweep_is_deleted_with_its_jobs_once_none_is_active(api):
    alice = api.user()
    r = alice.post("/v1/sweeps", json=SMALL)
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    ids = sweep_job_ids(api, sweep_id)
    assert len(ids) == 2
    for job_id in ids:
        job_folder(api, job_id).mkdir(parents=True)
        (job_folder(api, job_id) / "result.json").write_text("{}")
    keep = alice.post("/v1/jobs", json=TINY_CTTV2).json()["id"]
    alice.post(f"/v1/jobs/{keep}/cancel")

    err = assert_error(alice.delete(f"/v1/sweeps/{sweep_id}"), 409, "job_active")
    assert "cancel" in err["message"]
    assert alice.get(f"/v1/sweeps/{sweep_id}").status_code == 200
    assert sweep_job_ids(api, sweep_id) == ids and all(job_folder(api, j).is_dir() for j in ids)

    # One ended, one still queued: still refused, nothing deleted.
    alice.post(f"/v1/jobs/{ids[0]}/cancel")
    assert_error(alice.delete(f"/v1/sweeps/{sweep_id}"), 409, "job_active")
    assert sweep_job_ids(api, sweep_id) == ids

    assert alice.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 200
    r = alice.delete(f"/v1/sweeps/{sweep_id}")
    assert r.status_code == 204, r.text
    assert_error(alice.get(f"/v1/sweeps/{sweep_id}"), 404, "not_found")
    assert api.sql("SELECT count(*) FROM sweeps WHERE id = :s", s=sweep_id)[0][0] == 0
    for job_id in ids:
        assert api.sql("SELECT count(*) FROM jobs WHERE id = :j", j=job_id)[0][0] == 0
        assert not job_folder(api, job_id).exists()
    assert alice.get(f"/v1/jobs/{keep}").status_code == 200


def test_another_users_sweep_cannot_be_deleted(api):
    alice, bob = api.user(), api.user()
    sweep_id = alice.post("/v1/sweeps", json=SMALL).json()["id"]
    alice.post(f"/v1/sweeps/{sweep_id}/cancel")
    assert_error(bob.delete(f"/v1/sweeps/{sweep_id}"), 404, "not_found")
    assert len(sweep_job_ids(api, sweep_id)) == 2
