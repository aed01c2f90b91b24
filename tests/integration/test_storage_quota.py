"""The storage quota on the worker's side, through the real stack (`cttv2 serve` + `cttv2
worker` on PostgreSQL + Redis): a job whose user has used up their quota by the time a worker
starts it fails before training, with error.code storage_quota_exceeded and the numbers."""

from __future__ import annotations

import pytest

from tests.support.specs import TINY_FP, spec
from tests.support.stack import running_stack, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_a_job_started_over_the_quota_fails_before_training(tmp_path):
    quota = {"CTTV2_MAX_STORAGE_MB_PER_USER": "1"}
    with running_stack("postgres", tmp_path / "quota", quota, workers=0) as s:
        client = s.client(s.create_user())
        r = client.post("/v1/jobs", json=spec(TINY_FP, name="over-quota"))
        assert r.status_code == 201, r.text  # nothing stored yet: accepted
        job_id = r.json()["id"]
        # Meanwhile the user's files grew past the quota (here: a row as a worker registers one).
        s.sql(
            "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
            "VALUES (:j, 'weights.safetensors', 'weights', :s, :h, now(), now())",
            j=job_id,
            s=2 << 20,
            h="0" * 64,
        )
        s.start_worker()
        job = wait_for_job(client, job_id, timeout=120, stack=s)
        assert job["status"] == "failed", job
        assert job["error"] == {
            "code": "storage_quota_exceeded",
            "message": "storage quota exceeded: you use 2.0 MB of your 1.0 MB storage quota "
            "(CTTV2_MAX_STORAGE_MB_PER_USER); delete jobs or weights you no longer need",
        }
        assert client.get(f"/v1/jobs/{job_id}/metrics").json()["items"] == []  # no epoch ran
        lines = client.get(f"/v1/jobs/{job_id}/logs").json()["lines"]
        assert any("failed: storage quota exceeded" in line for line in lines), lines
        assert not (tmp_path / "quota" / "artifacts" / "jobs" / str(job_id) / "checkpoints").exists()
