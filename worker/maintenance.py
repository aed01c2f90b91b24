"""The reaper and the reconciler: what keeps a job from being lost.

- Reaper: a running job whose heartbeat is older than heartbeat_timeout_s lost its worker
  (killed, machine gone). It goes back to the queue and resumes from its checkpoint, at most
  max_attempts times; then it fails with reason worker_lost.
- Reconciler: a queued job with no message in the broker (enqueueing failed after the row was
  committed, or the broker lost its data) is published again. Extra messages are harmless: the
  claim is a conditional UPDATE, so only one delivery ever runs the job. A message is not tied
  to its job (a worker claims the fairest queued job, service.jobs.lifecycle.claim_next), so
  what counts is how many there are: one per queued job that could start now. Jobs of a user
  at max_running_jobs_per_user need none until one of their running jobs ends (then
  lifecycle.wake sends one), so the reconciler leaves them out.

- Orphan sweep (worker.orphans, every few minutes): files whose row was deleted (a crash
  between a delete's commit and its file removal) are removed once older than a grace period.

Every worker runs this loop; every step is a conditional UPDATE, so several loops can run
at once without doing anything twice.

A database outage stops every heartbeat, not only a lost worker's. So the reaper only reaps
once the database has been reachable again for heartbeat_timeout_s, measured by the reaper
itself (a failed tick restarts the clock; so does the process start) and, on PostgreSQL, by
the server's uptime (a restarted server restarts it too). Live workers heartbeat in that
window; a worker that really is gone stays silent and is reaped then.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import select, text

from service.core import broker
from service.core.config import Settings
from service.core.db import dialect_name, session_scope, utcnow
from service.jobs import lifecycle
from service.jobs.models import Job, JobStatus
from worker import orphans

log = logging.getLogger("cttv2.worker.maintenance")


def reap_lost_jobs(settings: Settings) -> list[int]:
    """Requeue (or fail) running jobs whose heartbeat stopped. Returns the requeued ids.
    Call it only once the database has been reachable for heartbeat_timeout_s (see
    MaintenanceLoop): a heartbeat missed during an outage says nothing about the worker."""
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
    requeued: list[int] = []
    failed = 0
    with session_scope() as session:
        stale = session.execute(
            select(Job.id, Job.lease_token, Job.lost_count, Job.worker_id)
            .where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
            .limit(500)
        ).all()
    for job_id, token, lost_count, worker_id in stale:
        with session_scope() as session:
            # A row locked by its worker's open transaction is being written: alive. (A worker
            # frozen mid-transaction has it ended by PostgreSQL; see worker.main.)
            locked = select(Job.id).where(Job.id == job_id).with_for_update(skip_locked=True)
            if dialect_name(session) == "postgresql" and session.scalar(locked) is None:
                continue
            status = lifecycle.reap(session, job_id, token, lost_count, worker_id, settings.max_attempts, cutoff)
            if status is None:
                continue  # it heartbeated or finished meanwhile
        log.warning(
            "job %s: worker %s lost (%d/%d): %s", job_id, worker_id, lost_count + 1, settings.max_attempts, status
        )
        if status == JobStatus.QUEUED:
            requeued.append(job_id)
        else:
            failed += 1
    lifecycle.publish(requeued)
    if failed:
        lifecycle.wake(settings.max_running_jobs_per_user)  # running slots freed up
    return requeued


def reconcile_queue(settings: Settings) -> list[int]:
    """Publish queued jobs that could start now and have no message in the broker (enqueued_at
    is when a message was last sent while the job was queued: none, or one older than
    requeue_after_s). Returns the published ids."""
    now = utcnow()
    grace = now - timedelta(seconds=settings.requeue_grace_s)
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.user_id, Job.enqueued_at)
            .where(Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False), Job.updated_at < grace)
            .order_by(Job.id)
            .limit(10_000)
        ).all()
        running = lifecycle.running_counts(session, (user_id for _, user_id, _ in rows))
    # A user at the running limit: their jobs wait for a slot, not for a message (a delivery
    # now would be dropped); lifecycle.wake sends one when a slot frees up.
    waiting = [
        (job_id, enq) for job_id, user_id, enq in rows if running.get(user_id, 0) < settings.max_running_jobs_per_user
    ]
    if not waiting:
        return []
    stale = now - timedelta(seconds=settings.requeue_after_s)
    depth = broker.queue_depth(settings)
    if depth is not None and depth < len(waiting):
        # The broker holds fewer messages than there are jobs that could start: some were
        # lost (e.g. Redis restarted empty) or dropped. Which ones is unknown; publish all.
        todo = [job_id for job_id, _ in waiting]
    else:
        todo = [job_id for job_id, enq in waiting if enq is None or enq < stale]
    if not todo:
        return []
    sent = lifecycle.publish(todo)
    log.info("reconciler published %d of %d queued job(s) again (broker depth %s)", sent, len(todo), depth)
    return todo[:sent]


def database_uptime_s() -> float | None:
    """Seconds since the database server started (PostgreSQL), else None."""
    with session_scope() as session:
        if dialect_name(session) != "postgresql":
            session.execute(text("SELECT 1"))
            return None
        return float(session.scalar(text("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())")))


class MaintenanceLoop(threading.Thread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(name="maintenance", daemon=True)
        self.settings = settings
        self._stop = threading.Event()
        self._reachable_since: float | None = time.monotonic()  # a start counts as a reconnect
        self._orphans_due = time.monotonic()  # the orphan sweep: at start, then every ORPHAN_EVERY_S

    def run(self) -> None:
        while not self._stop.wait(self.settings.maintenance_interval_s):
            self.tick()

    def reachable_for_s(self) -> float | None:
        """How long the database has answered without a break, as this loop saw it (None:
        it does not answer now)."""
        try:
            server_up = database_uptime_s()
        except Exception as exc:  # noqa: BLE001 - any failure: the database is away
            if self._reachable_since is not None:
                log.warning("database unreachable: %s", str(exc).splitlines()[0][:300])
            self._reachable_since = None
            return None
        now = time.monotonic()
        if self._reachable_since is None:
            log.info(
                "database reachable again: reaping waits %.0f s for live workers to heartbeat",
                self.settings.heartbeat_timeout_s,
            )
            self._reachable_since = now
        mine = now - self._reachable_since
        return mine if server_up is None else min(mine, server_up)

    def tick(self) -> None:
        reachable_for = self.reachable_for_s()
        if reachable_for is None:
            return  # the database is away: nothing to do until it is back
        if reachable_for >= self.settings.heartbeat_timeout_s:
            self._step(reap_lost_jobs)
        self._step(reconcile_queue)
        if time.monotonic() >= self._orphans_due:
            self._orphans_due = time.monotonic() + orphans.ORPHAN_EVERY_S
            self._step(orphans.remove_orphans)

    def _step(self, step) -> None:
        try:
            step(self.settings)
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down: next tick
            log.warning("%s failed: %s", step.__name__, str(exc).splitlines()[0][:300])

    def stop(self) -> None:
        self._stop.set()
