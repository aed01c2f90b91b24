"""A job's state machine (the statuses are models.JobStatus): every change of jobs.status, each
as one conditional UPDATE written together with its status event, and the publish step.

    submit:   (new row) queued                         API: jobs and sweeps
    cancel:   queued -> cancelled, or running flagged   API: jobs and sweeps
    claim:    queued -> running, with a lease token     worker.lease (claim_next: the fairest job)
    finish:   running -> succeeded | failed | cancelled under the lease
    requeue:  running -> queued under the lease (a worker shutting down)
    reap:     running -> queued | failed (a lost worker)  worker.maintenance

A claim hands out a fresh lease token; every later write by that worker names it (`touch`,
`finish`, `requeue`), so a worker that lost its lease (reaped, claimed elsewhere) changes
nothing. The functions take the caller's session and do not commit: the API commits its
request session, the worker its retried transaction (worker.db.with_retry). Except publish():
it runs after the caller's commit, in its own short transaction (and so does wake()).

Which job a worker takes (claim_next): a run message names a job, but it only means "one
unit of queued work exists"; the worker claims the fairest queued job, which may be another.
Among users with a claimable queued job (queued, no cancel requested) and fewer than
max_running_jobs_per_user running: first a user with a `high` job (admins only: it jumps
the queue), then the user with the fewest running jobs, then the user served longest ago (users.last_claimed_at;
never served first), then the user whose oldest queued job is oldest. Within a user: priority,
then id. Messages still track queued jobs one for one (submit and requeue publish one per
job); a delivery that finds nothing claimable is dropped, and wake() sends one again when a
running slot frees up while jobs wait without enough messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, case, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from service.core import broker
from service.core.config import get_settings
from service.core.db import dialect_name, execute_count, session_scope, utcnow
from service.jobs.events import add_event
from service.jobs.models import PRIORITY_ORDER, TERMINAL_STATUSES, Job, JobPriority, JobStatus
from service.users.models import User

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
    return _claim(session, job_id, token, worker_id)


def _running_count(user_id: Any) -> Any:
    """(SELECT count(*) of user_id's running jobs): index (user_id, status, ...)."""
    r = aliased(Job, name="running_jobs")
    return (
        select(func.count()).select_from(r).where(r.user_id == user_id, r.status == JobStatus.RUNNING).scalar_subquery()
    )


def _claim(
    session: Session,
    job_id: int,
    token: str,
    worker_id: str,
    *,
    user_id: int | None = None,
    max_running: int | None = None,
) -> int | None:
    """claim(); with max_running, only while user_id has fewer running jobs, checked in the
    same UPDATE (atomic on SQLite, whose writers take turns; on PostgreSQL the caller holds
    the user's row lock, so claims for one user take turns too)."""
    now = utcnow()
    where: list[ColumnElement[bool]] = [
        Job.id == job_id,
        Job.status == JobStatus.QUEUED,
        Job.cancel_requested.is_(False),
    ]
    if max_running is not None:
        where += [Job.user_id == user_id, _running_count(user_id) < max_running]
    claimed = execute_count(
        session,
        update(Job)
        .where(*where)
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


@dataclass(frozen=True)
class Candidate:
    """A user's next queued job, as fair_candidates ranks them."""

    user_id: int
    job_id: int
    running: int


def fair_candidates(session: Session, max_running: int, limit: int = 8) -> list[Candidate]:
    """Each user's next queued job (claimable: queued, no cancel requested), best first, for
    users with fewer than max_running running jobs (the order: see the module docstring).

    One query, driven by the users table: per user a handful of index probes on
    (user_id, status, priority, id) (the running count, the oldest queued job, the first
    queued job of each priority), so its cost grows with the number of users, not with the
    length of the queue. Plain SQL for SQLite and PostgreSQL alike."""
    rows = session.execute(_fair_order_query(), {"max_running": max_running, "limit": limit}).all()
    return [Candidate(int(u), int(j), int(r)) for u, j, r in rows]


@lru_cache(maxsize=1)
def _fair_order_query() -> Select[Any]:
    """fair_candidates' statement, built once (building it costs more than running it)."""

    def claimable(j: Any) -> tuple[ColumnElement[bool], ...]:
        return (j.user_id == User.id, j.status == JobStatus.QUEUED, j.cancel_requested.is_(False))

    q = aliased(Job, name="oldest")
    first_id = select(func.min(q.id)).where(*claimable(q)).correlate(User).scalar_subquery()
    tops = []
    for priority in PRIORITY_ORDER:
        n = aliased(Job, name=f"next_{priority.value}")
        top = select(n.id).where(*claimable(n), n.priority == priority.value).order_by(n.id).limit(1)
        tops.append(top.correlate(User).scalar_subquery().label(f"{priority.value}_id"))
    per_user = (
        select(
            User.id.label("user_id"),
            User.last_claimed_at.label("last_claimed_at"),
            _running_count(User.id).label("running"),
            first_id.label("first_id"),
            *tops,
        )
        # OFFSET 0 keeps the per-user figures computed once per user (PostgreSQL would
        # otherwise inline the subquery and evaluate each probe again where it is used).
        .offset(0)
    ).subquery("per_user")
    c = per_user.c
    ids = [c[f"{p.value}_id"] for p in PRIORITY_ORDER]
    # Across users only `high` counts; `normal` and `low` order a user's own queue.
    has_high = case((c[f"{JobPriority.HIGH.value}_id"].is_not(None), 0), else_=1)
    return (
        select(c.user_id, func.coalesce(*ids), c.running)
        .where(c.first_id.is_not(None), c.running < bindparam("max_running", type_=Integer))
        .order_by(
            has_high,
            c.running,
            case((c.last_claimed_at.is_(None), 0), else_=1),  # never served: first
            c.last_claimed_at,
            c.first_id,
        )
        .limit(bindparam("limit", type_=Integer))
    )


def claim_next(
    session: Session,
    token: str,
    worker_id: str,
    *,
    max_running: int,
    rounds: int = 3,
    candidates: int = 8,
) -> tuple[int, int] | None:
    """Claim the fairest claimable queued job (see fair_candidates) under a new lease token.
    Returns (job id, attempt), or None when no queued job can start now (none is queued, or
    every waiting job's user has max_running jobs running).

    Each candidate is claimed as claim() does (a conditional UPDATE queued -> running), plus
    the user's running count in the same UPDATE; a lost race moves on to the next candidate,
    and after the list, to a fresh list (`rounds` times). On PostgreSQL the user's row is
    locked first (SKIP LOCKED: a user another worker is claiming for right now is passed
    over, never waited for, so two claimers never deadlock); the lock makes the running limit
    exact and is released at commit. The claimed user's last_claimed_at is set."""
    postgres = dialect_name(session) == "postgresql"
    for _ in range(rounds):
        found = fair_candidates(session, max_running, candidates)
        if not found:
            return None
        for cand in found:
            if postgres:
                # FOR NO KEY UPDATE: new rows that reference the user (a submit's jobs) do
                # not conflict with it; another claimer for the user, or a submit's
                # check_active_jobs (FOR UPDATE), does: then this user is passed over.
                locked = (
                    select(User.id).where(User.id == cand.user_id).with_for_update(skip_locked=True, key_share=True)
                )
                if session.scalar(locked) is None:
                    continue
            attempt = _claim(session, cand.job_id, token, worker_id, user_id=cand.user_id, max_running=max_running)
            if attempt is not None:
                session.execute(update(User).where(User.id == cand.user_id).values(last_claimed_at=utcnow()))
                return cand.job_id, attempt
    return None


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
def waiting_counts(session: Session, max_running: int) -> tuple[int, int]:
    """(queued claimable jobs, those of them whose user is under max_running): the second is
    how many run messages the broker should hold for jobs that could start now."""
    queued = dict(
        session.execute(
            select(Job.user_id, func.count())
            .where(Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False))
            .group_by(Job.user_id)
        ).all()
    )
    if not queued:
        return 0, 0
    running = running_counts(session, queued)
    startable = sum(n for user_id, n in queued.items() if running.get(user_id, 0) < max_running)
    return sum(queued.values()), startable


def running_counts(session: Session, user_ids: Iterable[int]) -> dict[int, int]:
    """Running jobs per user, for these users (absent: none)."""
    ids = list(set(user_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Job.user_id, func.count())
        .where(Job.status == JobStatus.RUNNING, Job.user_id.in_(ids))
        .group_by(Job.user_id)
    ).all()
    return {int(u): int(n) for u, n in rows}


def wake(max_running: int | None = None) -> bool:
    """After a running slot frees up (a job finished or was reaped as failed) or a delivery
    claimed nothing: publish one run message (naming the fairest job) when jobs that could
    start now wait with fewer messages in the broker than there are of them. That is the
    case when earlier deliveries were dropped because every waiting job's user was at
    max_running_jobs_per_user. Extra messages are harmless (a delivery that finds nothing
    to claim is dropped); when the broker cannot tell its depth, one is sent. Best effort,
    after commit, in its own transaction; the reconciler covers a failure. Returns whether
    a message was sent."""
    settings = get_settings()
    limit = max_running if max_running is not None else settings.max_running_jobs_per_user
    try:
        with session_scope() as session:
            found = fair_candidates(session, limit, 1)
            if not found:
                return False
            _, startable = waiting_counts(session, limit)
    except SQLAlchemyError as exc:
        log.warning("wake: cannot read the queue: %s", str(exc).splitlines()[0][:300])
        return False
    depth = broker.queue_depth(settings)
    if depth is not None and depth >= startable:
        return False
    return publish([found[0].job_id]) == 1


def publish_submitted(session: Session, job: Job) -> bool:
    """publish() for one job just committed in `session` (a submit): the stamp and the
    re-read of the row are one UPDATE ... RETURNING in that session, in autocommit on
    PostgreSQL (no second session, no BEGIN/COMMIT round trips). False when the job was not
    stamped (the broker refused it, a worker has claimed it already, or the stamp failed):
    the caller reads the row again; the reconciler re-sends an unstamped queued job."""
    if not broker.try_publish(broker.RUN_JOB_TASK, job.id):
        return False
    try:
        if dialect_name(session) == "postgresql":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        stamped = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
            .values(enqueued_at=utcnow())
            .returning(Job),
            execution_options={"populate_existing": True},
        ).scalar_one_or_none()
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("could not stamp enqueued_at on job %d: %s", job.id, str(exc).splitlines()[0][:300])
        return False
    return stamped is not None


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
