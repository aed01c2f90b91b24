"""Jobs through the real stack: HTTP -> database -> broker -> Celery worker -> engine -> back."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import wait_for_job

# Long enough to be caught running (about a second per epoch on this CPU), short enough to finish.
SLOW_CTTV2 = spec(TINY_CTTV2, **{"training.epochs": 40, "name": "slow"})


@pytest.fixture(scope="module")
def client(stack):
    return stack.client(stack.create_user())


def wait_running(client, job_id: int, min_step: int = 1, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and (job["progress"] or {}).get("step", 0) >= min_step:
            return job
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never ran: {job}")


def test_submit_runs_and_succeeds(stack, client):
    job = client.post("/v1/jobs", json=TINY_FP)
    assert job.status_code == 201, job.text
    assert job.json()["status"] in ("queued", "running")  # a fast worker may have claimed it
    done = wait_for_job(client, job.json()["id"], stack=stack)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert 0 <= result["test_accuracy"] <= 1 and abs(result["test_error"] - (1 - result["test_accuracy"])) < 1e-9
    assert result["environment"]["device"] == "cpu"
    assert done["attempt"] == 1 and done["started_at"] and done["finished_at"]
    p = done["progress"]
    assert p["epoch"] == p["epochs"] == 2 and p["step"] == p["total_steps"] > 0
    # Metrics: one row per (key, step), an epoch's test accuracy among them.
    rows = stack.sql("SELECT key, step, value FROM job_metrics WHERE job_id = :j", j=done["id"])
    keys = {k for k, _, _ in rows}
    assert {"train_loss", "test_loss", "test_accuracy"} <= keys
    assert len(rows) == len({(k, s) for k, s, _ in rows})
    statuses = [
        r[0]
        for r in stack.sql(
            "SELECT data FROM job_events WHERE job_id = :j AND kind = 'status' ORDER BY id", j=done["id"]
        )
    ]
    assert [(s if isinstance(s, dict) else __import__("json").loads(s))["status"] for s in statuses] == [
        "queued",
        "running",
        "succeeded",
    ]


def test_cancel_queued_and_running(stack, client):
    running = client.post("/v1/jobs", json=SLOW_CTTV2).json()
    queued = client.post("/v1/jobs", json=spec(TINY_FP, name="behind")).json()
    wait_running(client, running["id"])
    assert client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "queued"  # one worker, busy

    c = client.post(f"/v1/jobs/{queued['id']}/cancel").json()
    assert c["status"] == "cancelled"  # at once

    r = client.post(f"/v1/jobs/{running['id']}/cancel").json()
    assert r["status"] == "running" and r["cancel_requested"] is True
    done = wait_for_job(client, running["id"], timeout=60, stack=stack)
    assert done["status"] == "cancelled"
    assert done["progress"]["epoch"] < SLOW_CTTV2["training"]["epochs"]  # stopped early
    # The cancelled queued job never ran, even though its message was delivered afterwards.
    time.sleep(2)
    after = client.get(f"/v1/jobs/{queued['id']}").json()
    assert after["status"] == "cancelled" and after["attempt"] == 0


def test_duplicate_delivery_is_ignored(stack, client):
    job = client.post("/v1/jobs", json=spec(TINY_FP, name="dup")).json()
    stack.send_task(job["id"])  # a second message for the same job, before it ran
    done = wait_for_job(client, job["id"], stack=stack)
    assert done["status"] == "succeeded"
    stack.send_task(job["id"])  # and one after it finished
    marker = client.post("/v1/jobs", json=spec(TINY_FP, name="after-dup")).json()
    wait_for_job(client, marker["id"], stack=stack)  # the queue is drained past the duplicates
    again = client.get(f"/v1/jobs/{job['id']}").json()
    assert again["status"] == "succeeded" and again["attempt"] == 1
    assert again["result"] == done["result"]


@pytest.mark.parametrize("backend", ["embedded", "postgres"])
def test_worker_killed_mid_job_resumes_from_checkpoint(make_stack, backend):
    s = make_stack(backend)
    s.start_api()
    worker = s.start_worker()
    client = s.client(s.create_user())
    body = spec(TINY_CTTV2, **{"training.epochs": 6, "name": "killed"})
    job = client.post("/v1/jobs", json=body).json()
    # Wait until at least one epoch is checkpointed, then kill the worker outright.
    deadline = time.monotonic() + 120
    while not s.sql("SELECT 1 FROM artifacts WHERE job_id = :j AND name = 'checkpoints/latest.pt'", j=job["id"]):
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.2)
    worker.signal(signal.SIGKILL)
    worker.wait(10)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"  # nobody knows yet

    s.start_worker()  # its reaper notices the stale heartbeat, requeues, and it resumes
    done = wait_for_job(client, job["id"], timeout=240, stack=s)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2
    logs = [r[0] for r in s.sql("SELECT line FROM job_log_lines WHERE job_id = :j ORDER BY seq", j=job["id"])]
    assert any(line.startswith("resuming from") for line in logs), logs
    rows = s.sql("SELECT key, step FROM job_metrics WHERE job_id = :j", j=job["id"])
    assert len(rows) == len(set(rows))
    epochs = {
        r[0] for r in s.sql("SELECT epoch FROM job_metrics WHERE job_id = :j AND key = 'test_accuracy'", j=job["id"])
    }
    assert epochs == set(range(1, 7))


@pytest.mark.parametrize("backend", ["embedded", "postgres"])
def test_job_not_lost_when_enqueue_fails(make_stack, backend):
    """The API commits the job, then cannot reach the broker: the reconciler publishes it."""
    s = make_stack(backend)
    s.env_api = {"CTTV2_BROKER_URL": "redis://127.0.0.1:1/0"}  # a broker nobody listens on
    api = s._spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(s.port)], env=s.env_api)
    s.api = api
    s.wait_http("/healthz", timeout=60, proc=api)
    client = s.client(s.create_user())
    job = client.post("/v1/jobs", json=TINY_FP)
    assert job.status_code == 201, job.text
    jid = job.json()["id"]
    assert s.sql("SELECT enqueued_at FROM jobs WHERE id = :j", j=jid) == [(None,)]
    s.start_worker()
    done = wait_for_job(client, jid, timeout=180, stack=s)
    assert done["status"] == "succeeded" and done["attempt"] == 1


def test_readyz_and_api_answer_503_when_the_database_is_down(make_stack):
    from tests.support.tcpproxy import TcpProxy

    s = make_stack("postgres")
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        s.env["CTTV2_DATABASE_URL"] = s.env["CTTV2_DATABASE_URL"].replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        s.start_api()
        client = s.client(s.create_user())
        assert client.get("/v1/jobs").status_code == 200
        proxy.down()
        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")
        r = client.get("/v1/jobs")
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
        assert time.monotonic() - started < 25  # answered, not hung
        proxy.up()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert client.get("/v1/jobs").status_code == 200
    finally:
        proxy.close()
