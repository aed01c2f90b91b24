"""A worker's hold on one job: claim it, fence every write with it, finish or requeue it.

The job row is the source of truth. A claim is one conditional UPDATE (queued -> running with
a fresh lease token); every later write names that token, so a worker that lost its lease
(reaped after a missed heartbeat, then claimed elsewhere) can no longer change the job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.core.db import utcnow
from service.jobs.events import add_event
from service.jobs.models import Job
from worker.db import with_retry

log = logging.getLogger("cttv2.worker.lease")


class LeaseLost(Exception):
    """This worker no longer holds the job (reaped or cancelled elsewhere)."""


@dataclass(frozen=True)
class Lease:
    job_id: int
    token: str
    attempt: int
    worker_id: str


def claim_job(job_id: int, worker_id: str) -> Lease | None:
    """queued -> running, or None when the job is not queued (a duplicate delivery, a
    cancelled job, a job another worker holds)."""
    token = uuid.uuid4().hex

    def _claim(session: Session) -> Lease | None:
        now = utcnow()
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
            .values(
                status="running",
                attempt=Job.attempt + 1,
                lease_token=token,
                worker_id=worker_id,
                heartbeat_at=now,
                started_at=func.coalesce(Job.started_at, now),
                updated_at=now,
            )
        ).rowcount
        if claimed != 1:
            return None
        attempt = session.scalar(select(Job.attempt).where(Job.id == job_id))
        add_event(session, job_id, "status", {"status": "running", "attempt": attempt, "worker": worker_id})
        return Lease(job_id, token, attempt, worker_id)

    return with_retry(_claim, what="claim")


def fence(session: Session, lease: Lease, **values: Any) -> None:
    """Touch the job under its lease inside the current transaction, or raise LeaseLost. On
    PostgreSQL the row stays locked until commit, so the reaper cannot interleave."""
    now = utcnow()
    values.setdefault("updated_at", now)
    values.setdefault("heartbeat_at", now)  # any write under the lease shows the worker is alive
    n = session.execute(
        update(Job)
        .where(Job.id == lease.job_id, Job.lease_token == lease.token, Job.status == "running")
        .values(**values)
    ).rowcount
    if n != 1:
        raise LeaseLost(f"job {lease.job_id}: lease {lease.token[:8]} lost")


def finish(lease: Lease, status: str, *, result: dict | None = None, error_code: str | None = None,
           error: str | None = None, deadline_s: float = 600.0) -> bool:
    def tx(session: Session) -> None:
        now = utcnow()
        fence(session, lease, status=status, result=result, error_code=error_code, error=error,
               finished_at=now, lease_token=None, heartbeat_at=now)
        event: dict[str, Any] = {"status": status}
        if error:
            event["error"] = {"code": error_code, "message": error}
        add_event(session, lease.job_id, "status", event)

    try:
        with_retry(tx, deadline_s=deadline_s, what="finish")
        return True
    except LeaseLost:
        log.warning("job %s: lease lost before finishing as %s", lease.job_id, status)
        return False


def requeue(lease: Lease, reason: str) -> bool:
    """running -> queued (a shutdown): the next claim resumes from the checkpoint."""
    def tx(session: Session) -> None:
        fence(session, lease, status="queued", lease_token=None, worker_id=None, enqueued_at=None)
        add_event(session, lease.job_id, "status", {"status": "queued", "reason": reason})

    try:
        with_retry(tx, what="requeue")
    except LeaseLost:
        return False
    from service.core import queue

    if queue.try_send(queue.RUN_JOB_TASK, lease.job_id):
        with_retry(lambda s: s.execute(update(Job).where(Job.id == lease.job_id, Job.status == "queued")
                                        .values(enqueued_at=utcnow())), what="stamp enqueue")
    return True
