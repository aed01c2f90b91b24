"""Workers that die, pause or are told to stop, on PostgreSQL + Redis with real worker
processes: no job is lost, none runs twice at once, none loops forever."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.faults import (
    STEADY,
    STEPS_PER_EPOCH,
    assert_metrics_complete,
    assert_no_temp_files,
    events,
    holder,
    job_row,
    wait_checkpointed_and_running,
    wait_until,
)
from tests.support.stack import FAST_PROTOCOL, Stack, running_stack, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

MAX_ATTEMPTS = 2
HEARTBEAT_TIMEOUT_S = float(FAST_PROTOCOL["CTTV2_HEARTBEAT_TIMEOUT_S"])
MAINTENANCE_INTERVAL_S = float(FAST_PROTOCOL["CTTV2_MAINTENANCE_INTERVAL_S"])
# Reaping takes heartbeat_timeout_s plus up to one maintenance tick and one heartbeat; the rest
# is slack for a loaded 2-core machine.
REAP_BOUND_S = HEARTBEAT_TIMEOUT_S + 2 * MAINTENANCE_INTERVAL_S + 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(
        "postgres", tmp_path_factory.mktemp("faults-workers"), {"CTTV2_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}, workers=2
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack):
    return stack.client(stack.create_user())


def live_workers(stack: Stack, want: int) -> None:
    """Top the stack up to `want` live workers (fault tests kill some)."""
    alive = [w for w in stack.workers if w.alive()]
    for _ in range(want - len(alive)):
        stack.start_worker()


def test_sigkill_mid_epoch_resumes_on_a_live_worker(stack, client):
    live_workers(stack, 2)
    job = client.post("/v1/jobs", json=STEADY).json()
    wait_checkpointed_and_running(stack, job["id"], min_epochs=2)
    victim = holder(stack, job["id"])
    # First a stale duplicate of its message: the idle worker takes it at once and refuses it
    # while the job runs on the other (the claim is conditional: one runner at a time).
    idle = next(w for w in stack.workers if w.alive() and w is not victim)
    stack.send_task(job["id"])
    wait_until(lambda: f"job {job['id']}: not claimable" in idle.log(), 60, "the duplicate to be refused")
    assert (job_row(stack, job["id"])["status"], job_row(stack, job["id"])["attempt"]) == ("running", 1)

    victim.signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait(10)

    requeued = wait_until(
        lambda: [e for e in events(stack, job["id"]) if e.get("reason") == "worker_lost"],
        REAP_BOUND_S + 30,
        "the reaper to requeue the job",
    )[0]
    assert requeued["status"] == "queued" and requeued["lost_count"] == 1
    assert requeued["_at"].timestamp() - killed_at < REAP_BOUND_S, "reaped too late"

    done = wait_for_job(client, job["id"], timeout=240, stack=stack)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2
    row = job_row(stack, job["id"])
    assert not row["worker_id"].endswith(f"-{victim.popen.pid}")  # finished on the other worker
    logs = [r[0] for r in stack.sql("SELECT line FROM job_log_lines WHERE job_id = :j ORDER BY seq", j=job["id"])]
    assert f"resuming from jobs/{job['id']}/checkpoints/latest.pt" in logs, logs
    assert_metrics_complete(stack, job["id"], STEADY["training"]["epochs"], STEPS_PER_EPOCH)
    assert_no_temp_files(stack, job["id"])
    assert [e["status"] for e in events(stack, job["id"])] == ["queued", "running", "queued", "running", "succeeded"]


def test_killed_past_the_attempt_cap_fails_worker_lost(stack, client):
    live_workers(stack, 2)
    job = client.post("/v1/jobs", json=STEADY).json()

    def running_attempt(n: int) -> bool:
        row = job_row(stack, job["id"])
        return row["attempt"] == n and row["status"] == "running"

    for n in range(1, MAX_ATTEMPTS + 1):
        wait_until(lambda n=n: running_attempt(n), 180, f"attempt {n} to run")
        victim = holder(stack, job["id"])
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        live_workers(stack, 2)  # a fresh worker replaces it; the job must still end

    done = wait_for_job(client, job["id"], statuses=("failed", "succeeded"), timeout=REAP_BOUND_S + 120, stack=stack)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "worker_lost" and f"{MAX_ATTEMPTS} times" in done["error"]["message"]
    time.sleep(HEARTBEAT_TIMEOUT_S + 2 * MAINTENANCE_INTERVAL_S)  # nothing picks it up again
    row = job_row(stack, job["id"])
    assert (row["status"], row["attempt"], row["lost_count"]) == ("failed", MAX_ATTEMPTS, MAX_ATTEMPTS)
    assert [e["status"] for e in events(stack, job["id"])] == ["queued", "running", "queued", "running", "failed"]


def test_sigterm_checkpoints_requeues_and_another_worker_resumes(stack, client):
    live_workers(stack, 2)
    job = client.post("/v1/jobs", json=STEADY).json()
    wait_checkpointed_and_running(stack, job["id"], min_epochs=2)
    victim = holder(stack, job["id"])
    victim.signal(signal.SIGTERM)  # what `docker stop` sends
    stopped_at = time.monotonic()
    assert victim.wait(30) == 0, victim.log()[-3000:]
    assert time.monotonic() - stopped_at < 30

    done = wait_for_job(client, job["id"], timeout=240, stack=stack)
    assert done["status"] == "succeeded", done
    trail = events(stack, job["id"])
    assert [e["status"] for e in trail] == ["queued", "running", "queued", "running", "succeeded"]
    assert trail[2]["reason"] == "worker_shutdown"
    assert done["attempt"] == 2 and job_row(stack, job["id"])["lost_count"] == 0  # not reaped: handed back
    logs = [r[0] for r in stack.sql("SELECT line FROM job_log_lines WHERE job_id = :j ORDER BY seq", j=job["id"])]
    assert any(line.startswith("stopped at epoch") for line in logs), logs
    assert "worker shutting down: checkpoint written, job back in the queue" in logs
    assert f"resuming from jobs/{job['id']}/checkpoints/latest.pt" in logs
    assert_metrics_complete(stack, job["id"], STEADY["training"]["epochs"], STEPS_PER_EPOCH)
    assert_no_temp_files(stack, job["id"])


def test_a_paused_worker_is_fenced_when_it_wakes(stack, client):
    """SIGSTOP stands for a worker that hangs or is cut off longer than the heartbeat timeout:
    its job is reaped and resumed elsewhere; when it wakes, its lease is gone and it stops
    without another write, so the job never runs twice at once."""
    live_workers(stack, 2)
    job = client.post("/v1/jobs", json=STEADY).json()
    wait_checkpointed_and_running(stack, job["id"], min_epochs=2)
    sleeper = holder(stack, job["id"])
    sleeper.signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: job_row(stack, job["id"])["attempt"] == 2 and job_row(stack, job["id"])["status"] == "running",
            REAP_BOUND_S + 60,
            "another worker to take the job over",
        )
    finally:
        sleeper.signal(signal.SIGCONT)
    wait_until(lambda: "lease lost" in sleeper.log(), 60, "the woken worker to notice its lease is gone")
    done = wait_for_job(client, job["id"], timeout=240, stack=stack)
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    # After the takeover, nothing was written under the first attempt's lease.
    requeued_at = next(e for e in events(stack, job["id"]) if e.get("reason") == "worker_lost")["_at"]
    late = stack.sql(
        "SELECT line FROM job_log_lines WHERE job_id = :j AND attempt = 1 AND created_at > :t",
        j=job["id"],
        t=requeued_at,
    )
    assert late == [], late
    assert_metrics_complete(stack, job["id"], STEADY["training"]["epochs"], STEPS_PER_EPOCH)
    assert sleeper.alive()  # it stopped the job, not itself; it takes the next one
