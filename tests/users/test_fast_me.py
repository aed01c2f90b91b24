"""GET /v1/users/me, in process: who the token belongs to, this server's per-user job limits
and the caller's usage."""

from __future__ import annotations

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_FP

pytestmark = pytest.mark.fast


def test_me_shows_the_caller_limits_and_usage(api):
    alice = api.user()
    me = alice.get("/v1/users/me")
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["id"], body["name"], body["is_admin"]) == (alice.user_id, alice.name, False)
    assert body["limits"] == {  # the defaults
        "max_active_jobs": 200,
        "max_running_jobs": 4,
        "max_storage_bytes": 100_000 << 20,
    }
    assert body["usage"] == {"active_jobs": 0, "running_jobs": 0, "queued_jobs": 0, "storage_bytes": 0}

    jobs = [alice.post("/v1/jobs", json=TINY_FP).json()["id"] for _ in range(3)]
    alice.post(f"/v1/jobs/{jobs[0]}/cancel")
    api.sql("UPDATE jobs SET status = 'running' WHERE id = :j", j=jobs[1])  # as a worker's claim would
    usage = alice.get("/v1/users/me").json()["usage"]
    assert usage == {"active_jobs": 2, "running_jobs": 1, "queued_jobs": 1, "storage_bytes": 0}
    api.sql("UPDATE jobs SET status = 'succeeded' WHERE id = :j", j=jobs[1])


def test_me_shows_the_admin_role_and_the_server_settings(api):
    boss = api.user(admin=True)
    with api.settings(max_active_jobs_per_user=7, max_running_jobs_per_user=2, max_storage_mb_per_user=3):
        body = boss.get("/v1/users/me").json()
    assert body["is_admin"] is True
    assert body["limits"] == {"max_active_jobs": 7, "max_running_jobs": 2, "max_storage_bytes": 3 << 20}


def test_me_needs_a_token(api):
    assert_error(api.client().get("/v1/users/me"), 401, "unauthorized")
