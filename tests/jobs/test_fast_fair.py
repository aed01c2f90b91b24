"""Fair scheduling, in process (no worker): a job's priority at submit (high only for admins),
and the order in which lifecycle.claim_next hands out queued jobs, on SQLite and PostgreSQL.

The claims run in one database transaction that is rolled back at the end, so they leave no
trace; inside it, the queued jobs other tests left in this session's database are set aside
(cancel_requested), so only this test's users compete."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.support.asserts import assert_error
from tests.support.specs import TINY_FP, spec

pytestmark = pytest.mark.fast


def submit(client, priority: str | None = None, name: str = "j") -> int:
    body = spec(TINY_FP, name=name)
    if priority is not None:
        body["priority"] = priority
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


# -- priority at submit -------------------------------------------------------------------------


def test_priority_defaults_to_normal_and_is_shown(api):
    alice = api.user()
    job = alice.post("/v1/jobs", json=TINY_FP).json()
    assert job["priority"] == "normal"
    low = alice.post("/v1/jobs", json={**TINY_FP, "priority": "low"}).json()
    assert low["priority"] == "low" and "priority" not in low["spec"]  # not part of the job spec
    assert alice.get(f"/v1/jobs/{low['id']}").json()["priority"] == "low"
    assert api.sql("SELECT priority FROM jobs WHERE id = :j", j=low["id"]) == [("low",)]


def test_only_admins_may_submit_high_priority(api):
    alice = api.user()
    err = assert_error(alice.post("/v1/jobs", json={**TINY_FP, "priority": "high"}), 403, "forbidden", field="priority")
    assert "admin" in err["message"]
    assert api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id) == [(0,)]
    boss = api.user(admin=True)
    job = boss.post("/v1/jobs", json={**TINY_FP, "priority": "high"})
    assert job.status_code == 201, job.text
    assert job.json()["priority"] == "high"


def test_an_unknown_priority_is_a_422_naming_the_field(api):
    assert_error(
        api.user().post("/v1/jobs", json={**TINY_FP, "priority": "urgent"}), 422, "validation_error", field="priority"
    )


def test_a_sweep_gives_its_priority_to_every_job(api):
    alice = api.user()
    body = {"name": "s", "base": {**TINY_FP, "priority": "low"}, "grid": {"training.lr": [0.001, 0.002]}}
    sweep = alice.post("/v1/sweeps", json=body)
    assert sweep.status_code == 201, sweep.text
    jobs = alice.get(f"/v1/sweeps/{sweep.json()['id']}/jobs").json()["items"]
    assert len(jobs) == 2 and {j["priority"] for j in jobs} == {"low"}
    high = {**body, "base": {**TINY_FP, "priority": "high"}}
    assert_error(alice.post("/v1/sweeps", json=high), 403, "forbidden", field="base.priority")


def test_a_normal_priority_keeps_the_idempotency_key_of_a_body_without_it(api):
    alice = api.user()
    key = uuid.uuid4().hex
    first = alice.post("/v1/jobs", json=TINY_FP, headers={"Idempotency-Key": key}).json()
    again = alice.post("/v1/jobs", json={**TINY_FP, "priority": "normal"}, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first["id"]
    other = alice.post("/v1/jobs", json={**TINY_FP, "priority": "low"}, headers={"Idempotency-Key": key})
    assert_error(other, 409, "idempotency_key_reused")


def test_a_rerun_keeps_the_priority(api):
    alice = api.user()
    low = submit(alice, "low")
    rerun = alice.post(f"/v1/jobs/{low}/rerun")
    assert rerun.status_code == 201, rerun.text
    assert rerun.json()["priority"] == "low"


# -- the order claim_next hands jobs out in ---------------------------------------------------


@contextmanager
def claims(*clients) -> Iterator[Session]:
    """A session for lifecycle calls, rolled back at the end; only these users' queued jobs
    compete in it."""
    from service.core.db import get_sessionmaker
    from service.jobs.models import Job, JobStatus

    session = get_sessionmaker()()
    try:
        session.execute(
            update(Job)
            .where(Job.status == JobStatus.QUEUED, Job.user_id.not_in([c.user_id for c in clients]))
            .values(cancel_requested=True)
        )
        yield session
    finally:
        session.rollback()
        session.close()


def claim(session: Session, max_running: int = 100) -> int | None:
    from service.jobs import lifecycle

    got = lifecycle.claim_next(session, uuid.uuid4().hex, "test-worker", max_running=max_running)
    return None if got is None else got[0]


def finish(session: Session, job_id: int) -> None:
    from service.jobs import lifecycle
    from service.jobs.models import Job, JobStatus

    token = session.get(Job, job_id).lease_token
    assert lifecycle.finish(session, job_id, token, JobStatus.SUCCEEDED)


def test_claims_go_round_the_users_not_down_the_queue(api):
    """A long queue of one user's jobs does not hold back another user's: with one worker
    (claim, finish, claim, ...) the users take turns, the one served longest ago first."""
    alice, bob = api.user(), api.user()
    a = [submit(alice, name=f"a{i}") for i in range(3)]
    b = [submit(bob, name=f"b{i}") for i in range(3)]
    order = []
    with claims(alice, bob) as session:
        while (job := claim(session)) is not None:
            order.append(job)
            finish(session, job)
    assert order == [a[0], b[0], a[1], b[1], a[2], b[2]]


def test_priority_then_fewest_running_then_oldest(api):
    """An admin's high job goes first; then the user with the fewest running jobs, whatever
    the priority of their next job (low and normal order only a user's own queue); within a
    user, normal before low."""
    alice, bob, boss = api.user(), api.user(), api.user(admin=True)
    a = [submit(alice, name=f"a{i}") for i in range(4)]
    b_low = submit(bob, "low", "b-low")
    b_normal = submit(bob, "normal", "b-normal")
    urgent = submit(boss, "high", "urgent")
    with claims(alice, bob, boss) as session:
        order = []
        while (job := claim(session)) is not None:  # nothing finishes: running counts grow
            order.append(job)
    assert order == [urgent, a[0], b_normal, a[1], b_low, a[2], a[3]]


def test_a_user_at_the_running_limit_waits_and_others_go_on(api):
    alice, bob = api.user(), api.user()
    a = [submit(alice, name=f"a{i}") for i in range(4)]
    b = [submit(bob, name=f"b{i}") for i in range(2)]
    with claims(alice, bob) as session:
        order = [claim(session, max_running=2) for _ in range(4)]
        assert order == [a[0], b[0], a[1], b[1]]
        assert claim(session, max_running=2) is None  # both at the limit: a[2], a[3] wait
        finish(session, a[0])
        assert claim(session, max_running=2) == a[2]  # a slot freed up
        assert claim(session, max_running=2) is None


def test_cancelled_jobs_are_passed_over(api):
    alice = api.user()
    a = [submit(alice, name=f"a{i}") for i in range(3)]
    assert alice.post(f"/v1/jobs/{a[0]}/cancel").json()["status"] == "cancelled"
    with claims(alice) as session:
        from service.jobs.models import Job

        session.execute(
            update(Job).where(Job.id == a[1]).values(cancel_requested=True)
        )  # e.g. requeued, then cancelled
        assert claim(session) == a[2]
        assert claim(session) is None


def test_a_claim_is_a_lease_like_any_other(api):
    alice = api.user()
    job_id = submit(alice)
    with claims(alice) as session:
        from service.jobs import lifecycle
        from service.jobs.models import Job
        from service.users.models import User

        got = lifecycle.claim_next(session, "tok-1", "w1", max_running=4)
        assert got == (job_id, 1)
        row = session.get(Job, job_id)
        assert (row.status, row.lease_token, row.worker_id, row.attempt) == ("running", "tok-1", "w1", 1)
        assert row.started_at is not None
        assert session.get(User, alice.user_id).last_claimed_at is not None
        assert lifecycle.claim(session, job_id, "tok-2", "w2") is None  # a duplicate delivery
