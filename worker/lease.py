"""A worker's hold on one job: claim it, fence every write with it, finish or requeue it.

The job row is the source of truth and service.jobs.lifecycle makes every change to it: a
claim is one conditional UPDATE (queued -> running with a fresh lease token) on the fairest
queued job, whichever job the delivered message named (claim_next_job); every later
write names that token, so a worker that lost its lease (reaped after a missed heartbeat,
then claimed elsewhere) can no longer change the job. This module adds the retries through
database outages and LeaseLost.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from service.jobs import lifecycle
from service.jobs.models import JobStatus
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
    """queued -> running for this job, or None when the job is not queued (a duplicate
    delivery, a cancelled job, a job another worker holds)."""
    token = uuid.uuid4().hex

    def _claim(session: Session) -> Lease | None:
        attempt = lifecycle.claim(session, job_id, token, worker_id)
        return None if attempt is None else Lease(job_id, token, attempt, worker_id)

    return with_retry(_claim, what="claim")


def claim_next_job(worker_id: str, max_running: int) -> Lease | None:
    """queued -> running for the fairest queued job (lifecycle.claim_next), or None when no
    queued job can start now."""
    token = uuid.uuid4().hex

    def _claim(session: Session) -> Lease | None:
        got = lifecycle.claim_next(session, token, worker_id, max_running=max_running)
        return None if got is None else Lease(got[0], token, got[1], worker_id)

    return with_retry(_claim, what="claim")


def _lost(lease: Lease) -> LeaseLost:
    return LeaseLost(f"job {lease.job_id}: lease {lease.token[:8]} lost")


def fence(session: Session, lease: Lease, **values: Any) -> None:
    """Touch the job under its lease inside the current transaction, or raise LeaseLost."""
    if not lifecycle.touch(session, lease.job_id, lease.token, **values):
        raise _lost(lease)


def finish(
    lease: Lease,
    status: JobStatus,
    *,
    result: dict | None = None,
    error_code: str | None = None,
    error: str | None = None,
    deadline_s: float = 600.0,
) -> bool:
    def tx(session: Session) -> None:
        if not lifecycle.finish(
            session, lease.job_id, lease.token, status, result=result, error_code=error_code, error=error
        ):
            raise _lost(lease)

    try:
        with_retry(tx, deadline_s=deadline_s, what="finish")
    except LeaseLost:
        log.warning("job %s: lease lost before finishing as %s", lease.job_id, status)
        return False
    # A running slot of this user is free: a job held back by max_running_jobs_per_user may
    # start now and may have no message left (its delivery was dropped).
    lifecycle.wake()
    return True


def requeue(lease: Lease, reason: str) -> bool:
    """running -> queued (a shutdown): the next claim resumes from the checkpoint."""

    def tx(session: Session) -> None:
        if not lifecycle.requeue(session, lease.job_id, lease.token, reason):
            raise _lost(lease)

    try:
        with_retry(tx, what="requeue")
    except LeaseLost:
        return False
    lifecycle.publish([lease.job_id])
    return True
