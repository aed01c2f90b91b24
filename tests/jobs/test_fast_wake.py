"""Messages vs jobs under the running limit, in process (no worker process): a delivery that
finds every waiting user at max_running_jobs_per_user is dropped, so when a running slot frees
up lifecycle.wake sends a message again, and the reconciler leaves the waiting user's jobs
alone meanwhile. Neither sends more than the jobs that could start need.

The broker's depth counts every message of the queue, so this module gets a database and a
queue of its own (a fresh backend, on SQLite + the filesystem broker and on PostgreSQL + Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.fast import BACKENDS, Api, FastBackend, environment
from tests.support.specs import TINY_FP, spec

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module", params=BACKENDS)
def api(request, tmp_path_factory) -> Iterator[Api]:
    backend = FastBackend.create(request.param, tmp_path_factory.mktemp(f"wake-{request.param}"))
    try:
        env = {**backend.env, "CTTV2_MAX_RUNNING_JOBS_PER_USER": "1", "CTTV2_REQUEUE_GRACE_S": "0"}
        backend.env = env
        with environment(env):
            from service.main import create_app

            app = Api(backend=backend, app=create_app())
            try:
                yield app
            finally:
                app.close()
    finally:
        backend.destroy()


def drain(api: Api) -> int:
    """Take every message off the queue, as idle workers do that cannot use them."""
    n = len(api.published())
    if api.name == "embedded":
        for path in (api.backend.root / "state" / "broker" / "queue").glob(f"*.{api.backend.queue_name}.msg"):
            path.unlink()
    else:
        import redis

        client = redis.Redis.from_url(api.backend.env["CTTV2_BROKER_URL"])
        try:
            client.delete(api.backend.queue_name)
        finally:
            client.close()
    return n


def claim_one(max_running: int = 1) -> tuple[int, str] | None:
    from service.core.db import session_scope
    from service.jobs import lifecycle

    token = uuid.uuid4().hex
    with session_scope() as session:
        got = lifecycle.claim_next(session, token, "w1", max_running=max_running)
    return None if got is None else (got[0], token)


def finish(job_id: int, token: str) -> None:
    from service.core.db import session_scope
    from service.jobs import lifecycle
    from service.jobs.models import JobStatus

    with session_scope() as session:
        assert lifecycle.finish(session, job_id, token, JobStatus.SUCCEEDED)


def test_a_dropped_delivery_is_sent_again_when_a_slot_frees_up(api):
    from service.core.config import get_settings
    from service.jobs import lifecycle
    from worker.maintenance import reconcile_queue

    alice = api.user()
    jobs = [alice.post("/v1/jobs", json=spec(TINY_FP, name=f"a{i}")).json()["id"] for i in range(3)]
    assert [args for _, args in api.published()] == [[j] for j in jobs]  # one message per job

    first = claim_one()
    assert first is not None and first[0] == jobs[0]
    assert claim_one() is None  # alice is at her limit (1): the other deliveries claim nothing
    assert drain(api) == 3  # ... and are dropped by the workers that took them
    settings = get_settings()
    assert settings.max_running_jobs_per_user == 1
    # Nothing to send while she is at the limit: her jobs wait for a slot, not a message.
    assert lifecycle.wake() is False
    assert reconcile_queue(settings) == []
    assert api.published() == []

    finish(*first)  # a slot frees up: one message, naming her next job
    assert lifecycle.wake() is True
    assert [args for _, args in api.published()] == [[jobs[1]]]
    # Two jobs could start and the broker holds one message: one more; then enough.
    assert lifecycle.wake() is True
    assert lifecycle.wake() is False
    assert len(api.published()) == 2
    assert reconcile_queue(settings) == []  # every job that could start has a message

    # The messages are consumed one at a time, each claiming her next job in turn.
    drain(api)
    second = claim_one()
    assert second is not None and second[0] == jobs[1]
    assert claim_one() is None
    finish(*second)
    assert lifecycle.wake() is True
    assert [args for _, args in api.published()] == [[jobs[2]]]
    alice.post(f"/v1/jobs/{jobs[2]}/cancel")
    drain(api)


def test_the_reconciler_sends_what_the_broker_lost_for_jobs_that_can_start(api):
    from service.core.config import get_settings
    from worker.maintenance import reconcile_queue

    bob = api.user()
    jobs = [bob.post("/v1/jobs", json=spec(TINY_FP, name=f"b{i}")).json()["id"] for i in range(2)]
    drain(api)  # the broker lost its data
    assert sorted(reconcile_queue(get_settings())) == jobs
    assert sorted(args[0] for _, args in api.published()) == jobs
    drain(api)
    with api.settings(max_running_jobs_per_user=1, requeue_grace_s=0):
        got = claim_one()
        assert got is not None and got[0] == jobs[0]
        # Bob is at his limit now: his other job needs no message until a slot frees up.
        assert reconcile_queue(get_settings()) == []
        finish(*got)
