"""A job's state machine (the statuses are models.JobStatus): every change of jobs.status, each
as one conditional UPDATE written together with its status event, and the publish step.

    submit:   (new row) queued                         API: jobs and sweeps
    cancel:   queued -> cancelled, or running flagged   API: jobs and sweeps
    claim:    queued -> running, with a lease token     worker.lease
    finish:   running -> succeeded | failed | cancelled under the lease
    requeue:  running -> queued under the lease (a worker shutting down)
    reap:     running -> queued | failed (a lost worker)  worker.maintenance

A claim hands out a fresh lease token; every later write by that worker names it (`touch`,
`finish`, `requeue`), so a worker that lost its lease (reaped, claimed elsewhere) changes
nothing. The functions take the caller's session and do not commit: the API commits its
request session, the worker its retried transaction (worker.db.with_retry). Except publish():
it runs after the caller's commit, in its own short transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.core import broker
from service.core.db import execute_count, session_scope, utcnow
from service.jobs.events import add_event
from service.jobs.models import TERMINAL_STATUSES, Job, JobStatus

log = logging.getLogger("cttv2.jobs.lifecycle")


def _status_event(session: Session, job_id: int, status: JobStatus, **data: Any) -> None:
    add_event(session, job_id, "status", {"status": status.value, **data})


# -- the API ----------------------------------------------------------------------------------
def submitted(session: Session, job_ids: Iterable[int]) -> None:
    """The first status event of new job rows (flushed; a row is created queued)."""
    for job_id in job_ids:
        _status_event(session, job_id, JobStatus.QUEUED)


def cancel(session: Session, job_id: int) -> None:
    """Queued: cancelled now. Running: flagged; the worker stops at the next batch boundary
    (its heartbeat reads the flag) and finishes the job as cancelled. Done: nothing."""
    now = utcnow()
    done = execute_count(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now),
    )
    if done:
        _status_event(session, job_id, JobStatus.CANCELLED)
    else:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(cancel_requested=True, updated_at=now)
        )


# -- a worker, under its lease ----------------------------------------------------------------
def claim(session: Session, job_id: int, token: str, worker_id: str) -> int | None:
    """queued -> running under a new lease token. Returns the attempt number, or None when
    the job is not queued (a duplicate delivery, a cancelled job, a job another worker holds)."""
    now = utcnow()
    claimed = execute_count(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False))
        .values(
            status=JobStatus.RUNNING,
            attempt=Job.attempt + 1,
            lease_token=token,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        ),
    )
    if claimed != 1:
        return None
    attempt = session.scalar(select(Job.attempt).where(Job.id == job_id))
    _status_event(session, job_id, JobStatus.RUNNING, attempt=attempt, worker=worker_id)
    return attempt


def _fenced(session: Session, job_id: int, token: str, **values: Any) -> bool:
    """The one UPDATE a lease holder makes; False when the lease is gone. On PostgreSQL the
    row stays locked until commit, so the reaper cannot interleave."""
    now = utcnow()
    values.setdefault("updated_at", now)
    values.setdefault("heartbeat_at", now)  # any write under the lease shows the worker is alive
    return (
        execute_count(
            session,
            update(Job)
            .where(Job.id == job_id, Job.lease_token == token, Job.status == JobStatus.RUNNING)
            .values(**values),
        )
        == 1
    )


def touch(session: Session, job_id: int, token: str, **values: Any) -> bool:
    """A write under the lease that leaves the status alone (heartbeat, progress, ...)."""
    if "status" in values:
        raise ValueError("a status change under the lease is finish() or requeue()")
    return _fenced(session, job_id, token, **values)


def finish(
    session: Session,
    job_id: int,
    token: str,
    status: JobStatus,
    *,
    result: dict | None = None,
    error_code: str | None = None,
    error: str | None = None,
) -> bool:
    """running -> a terminal status, ending the lease. False when the lease is gone."""
    status = JobStatus(status)
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status!r} is not a terminal status")
    now = utcnow()
    if not _fenced(
        session,
        job_id,
        token,
        status=status,
        result=result,
        error_code=error_code,
        error=error,
        finished_at=now,
        lease_token=None,
        heartbeat_at=now,
    ):
        return False
    event: dict[str, Any] = {}
    if error:
        event["error"] = {"code": error_code, "message": error}
    _status_event(session, job_id, status, **event)
    return True


def requeue(session: Session, job_id: int, token: str, reason: str) -> bool:
    """running -> queued (a shutdown), ending the lease; the caller publishes the job after
    commit. False when the lease is gone."""
    if not _fenced(session, job_id, token, status=JobStatus.QUEUED, lease_token=None, worker_id=None, enqueued_at=None):
        return False
    _status_event(session, job_id, JobStatus.QUEUED, reason=reason)
    return True


# -- the reaper -------------------------------------------------------------------------------
def reap(
    session: Session,
    job_id: int,
    token: str | None,
    lost_count: int,
    worker_id: str | None,
    max_attempts: int,
    stale_before: datetime,
) -> JobStatus | None:
    """running -> queued (publish it after commit), or -> failed (worker_lost) once the job has
    lost max_attempts workers. Returns the new status, or None when the job heartbeated since
    the reaper looked (heartbeat_at >= stale_before) or has another lease or none."""
    lost = lost_count + 1
    now = utcnow()
    error = None
    if lost >= max_attempts:
        error = f"worker lost {lost} times (last: {worker_id}); giving up"
        values: dict[str, Any] = dict(status=JobStatus.FAILED, error_code="worker_lost", finished_at=now, error=error)
    else:
        values = dict(status=JobStatus.QUEUED, enqueued_at=None)
    n = execute_count(
        session,
        update(Job)
        .where(
            Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_token == token, Job.heartbeat_at < stale_before
        )
        .values(lease_token=None, lost_count=lost, updated_at=now, **values),
    )
    if n != 1:
        return None
    event: dict[str, Any] = {"reason": "worker_lost", "lost_count": lost}
    if error:
        event["error"] = {"code": "worker_lost", "message": error}
    _status_event(session, job_id, values["status"], **event)
    return values["status"]


# -- publishing -------------------------------------------------------------------------------
def publish(job_ids: Sequence[int]) -> int:
    """Publish each queued job's run message, then stamp enqueued_at on those sent (after the
    job rows are committed). Stops at the first failure: the broker is away, and the
    reconciler publishes the rest (an unstamped queued job), so a job is never lost; a lost
    stamp only costs a duplicate message later. Returns how many were sent."""
    sent: list[int] = []
    for job_id in job_ids:
        if not broker.try_publish(broker.RUN_JOB_TASK, job_id):
            break
        sent.append(job_id)
    if sent:
        try:
            with session_scope() as session:
                session.execute(
                    update(Job).where(Job.id.in_(sent), Job.status == JobStatus.QUEUED).values(enqueued_at=utcnow())
                )
        except SQLAlchemyError as exc:
            log.warning("could not stamp enqueued_at on %d job(s): %s", len(sent), str(exc).splitlines()[0][:300])
    return len(sent)
