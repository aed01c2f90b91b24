"""Fair scheduling through the real stack (`cttv2 serve` + two `cttv2 worker` processes on
PostgreSQL + Redis): a user's long queue does not hold back another user's jobs, and a user
at the running limit waits without any job being stranded."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import running_stack, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# A's jobs: a few seconds each (about half a second per epoch), so B submits while A's first
# two run. B's: about a second.
LONG = spec(TINY_CTTV2, **{"training.epochs": 6, "data.train_per_class": 100})
SHORT = spec(TINY_FP, **{"training.epochs": 1})


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def started(client, job_id: int) -> datetime | None:
    return at(client.get(f"/v1/jobs/{job_id}").json()["started_at"])


def test_a_second_user_is_not_stuck_behind_a_long_queue(tmp_path):
    """A submits 10 jobs, then B submits 2. FIFO would start B's first job 11th; fair
    scheduling starts it as soon as a worker frees up (3rd), before A's third job."""
    with running_stack("postgres", tmp_path / "fair", workers=2) as s:
        a_client, b_client = s.client(s.create_user()), s.client(s.create_user())
        a = [a_client.post("/v1/jobs", json=spec(LONG, name=f"a{i}")).json()["id"] for i in range(10)]
        b = [b_client.post("/v1/jobs", json=spec(SHORT, name=f"b{i}")).json()["id"] for i in range(2)]
        for job_id in b:
            done = wait_for_job(b_client, job_id, timeout=180, stack=s)
            assert done["status"] == "succeeded", done
        starts = {job_id: started(a_client, job_id) for job_id in a} | {
            job_id: started(b_client, job_id) for job_id in b
        }
        for job_id in a:
            a_client.post(f"/v1/jobs/{job_id}/cancel")  # the rest is not needed
        order = sorted((t, job_id) for job_id, t in starts.items() if t is not None)
        assert starts[b[0]] is not None
        order_ids = [job_id for _, job_id in order]
        # B's first job started before A's third (which may not have started at all yet).
        assert starts[a[2]] is None or starts[b[0]] < starts[a[2]], order_ids
        assert order_ids.index(b[0]) <= 2, order_ids  # FIFO: 10
        assert order_ids.index(b[1]) <= 4, order_ids  # FIFO: 11
        # The worker said which job it took when a message named another.
        logs = "".join(w.log() for w in s.workers)
        assert "next in fair order" in logs


def test_a_user_at_the_running_limit_waits_and_no_job_is_stranded(tmp_path):
    """Limit 1: A's three jobs run one at a time on two workers (the idle worker drops the
    deliveries it cannot use while A is at the limit, and B's job runs beside A's), and when
    A's running job ends, a wake-up message starts the next one. The reconciler is held off
    (a long grace), so the wake-up alone must do it."""
    env = {"CTTV2_MAX_RUNNING_JOBS_PER_USER": "1", "CTTV2_REQUEUE_GRACE_S": "600"}
    with running_stack("postgres", tmp_path / "limit", env, workers=2) as s:
        a_client, b_client = s.client(s.create_user()), s.client(s.create_user())
        me = a_client.get("/v1/users/me").json()
        assert me["limits"]["max_running_jobs"] == 1
        a = [
            a_client.post("/v1/jobs", json=spec(SHORT, name=f"a{i}", **{"training.epochs": 3})).json()["id"]
            for i in range(3)
        ]
        b = b_client.post("/v1/jobs", json=spec(SHORT, name="b")).json()["id"]
        jobs = [wait_for_job(a_client, job_id, timeout=180, stack=s) for job_id in a]
        assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
        assert all(j["attempt"] == 1 for j in jobs)
        spans = sorted((at(j["started_at"]), at(j["finished_at"])) for j in jobs)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, f"two of A's jobs ran at once: {spans}"
        assert wait_for_job(b_client, b, timeout=120, stack=s)["status"] == "succeeded"
