"""The API process is killed in the middle of a burst of submissions: every 201 is a job that
runs, and a client retrying with the same Idempotency-Key gets that job, never a second one."""

from __future__ import annotations

import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.specs import TINY_FP, spec
from tests.support.stack import wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

QUICK = spec(
    TINY_FP,
    name="burst",
    **{"training.epochs": 1, "data.classes": [0, 1], "data.train_per_class": 8, "data.test_per_class": 4},
)
SUBMISSIONS = 20
CONCURRENCY = 6


def test_api_killed_mid_burst_loses_nothing_and_retries_do_not_duplicate(make_stack):
    s = make_stack("postgres")
    s.start_api()
    token = s.create_user()
    keys = [f"burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(SUBMISSIONS)]
    created: dict[str, int] = {}  # key -> job id, from a 201
    lock = threading.Lock()
    killed = threading.Event()

    def submit(key: str) -> None:
        try:
            with httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                r = c.post("/v1/jobs", json=spec(QUICK, name=key), headers={"Idempotency-Key": key})
        except httpx.HTTPError:
            return  # no answer: the client does not know; it retries below
        if r.status_code == 201:
            with lock:
                created[key] = r.json()["id"]
                if len(created) >= SUBMISSIONS // 3 and not killed.is_set():
                    killed.set()
                    s.api.signal(signal.SIGKILL)  # mid-burst: other requests are in flight

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(submit, keys))
    assert killed.is_set() and not s.api.alive()
    s.api.wait(10)
    assert len(created) < SUBMISSIONS, "the kill came too late to cut the burst"

    s.start_api()  # same port, same database
    client = s.client(token)
    first_answers = dict(created)
    for key in keys:  # every client retries what it sent, with its key
        r = client.post("/v1/jobs", json=spec(QUICK, name=key), headers={"Idempotency-Key": key})
        assert r.status_code == 201, r.text
        if key in first_answers:
            assert r.json()["id"] == first_answers[key] and r.headers.get("Idempotent-Replayed") == "true"
        created[key] = r.json()["id"]

    rows = s.sql("SELECT idempotency_key, id FROM jobs")
    assert len(rows) == SUBMISSIONS and {k: i for k, i in rows} == created  # one job per key

    s.start_worker()
    s.start_worker()
    for job_id in created.values():
        done = wait_for_job(client, job_id, timeout=300, stack=s)
        assert done["status"] == "succeeded" and done["attempt"] == 1, done
