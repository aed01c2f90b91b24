"""The engine's callbacks (progress, metrics, checkpoints, log lines, stop requests) written to
the database under the job's lease, and the heartbeat thread that keeps the lease alive."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cttv2_engine.types import Progress
from service.artifacts.store import StoreError, get_store
from service.core.config import Settings
from service.core.db import dialect_name, utcnow
from service.jobs.events import add_event
from service.jobs.models import Job, JobLogLine
from worker import artifacts, shutdown
from worker.db import with_retry
from worker.lease import Lease, LeaseLost, fence
from worker.metrics import upsert_metrics

log = logging.getLogger("cttv2.worker.reporter")

StopReason = Literal["cancelled", "shutdown", "lease_lost"]
T = TypeVar("T")


class JobReporter:
    """The engine's callbacks, written to the database under the lease."""

    PROGRESS_EVERY_S = 1.0

    def __init__(self, settings: Settings, lease: Lease) -> None:
        self.settings = settings
        self.lease = lease
        self.stop_reason: StopReason | None = None
        self._last_progress = 0.0
        self._log_seq = with_retry(
            lambda s: (s.scalar(select(func.max(JobLogLine.seq)).where(JobLogLine.job_id == lease.job_id)) or -1) + 1,
            what="log seq",
        )
        self._lock = threading.Lock()
        self.store = get_store(settings)
        self._published: dict[str, str] = {}  # name -> sha256 uploaded by this attempt

    # -- writes ---------------------------------------------------------------------------
    def _write(self, what: str, fn=None, **job_values: Any) -> None:
        """One transaction under the lease. Raises LeaseLost when another worker (or the
        reaper) took the job: the engine then stops at once, before writing another file."""
        self._check_lease()

        def tx(session: Session) -> None:
            fence(session, self.lease, **job_values)
            if fn is not None:
                fn(session)

        try:
            with self._lock:
                # Retry at least once per heartbeat interval: when the database is back, the
                # lease is re-asserted well before the reaper would act (see maintenance).
                with_retry(
                    tx,
                    deadline_s=self.settings.db_retry_deadline_s,
                    what=what,
                    max_delay_s=self.settings.heartbeat_interval_s,
                )
        except LeaseLost:
            self.stop_reason = "lease_lost"
            raise

    def _check_lease(self) -> None:
        if self.stop_reason == "lease_lost":
            raise LeaseLost(f"job {self.lease.job_id}: lease {self.lease.token[:8]} lost")

    def heartbeat(self) -> None:
        """Refresh the lease; pick up a cancel request."""

        def tx(session: Session) -> None:
            fence(session, self.lease, heartbeat_at=utcnow())
            if session.scalar(select(Job.cancel_requested).where(Job.id == self.lease.job_id)):
                self.stop_reason = self.stop_reason or "cancelled"

        try:
            with self._lock:
                with_retry(tx, deadline_s=self.settings.heartbeat_interval_s, what="heartbeat")
        except LeaseLost:
            self.stop_reason = "lease_lost"
        except Exception as exc:  # noqa: BLE001 - the next beat tries again
            log.warning("heartbeat failed for job %s: %s", self.lease.job_id, str(exc).splitlines()[0])

    # -- engine callbacks ---------------------------------------------------------------
    def on_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        last_step = progress.step >= progress.total_steps
        if now - self._last_progress < self.PROGRESS_EVERY_S and not last_step:
            return
        self._last_progress = now
        data = {
            "epoch": progress.epoch,
            "epochs": progress.epochs,
            "step": progress.step,
            "total_steps": progress.total_steps,
            "images_per_s": round(progress.images_per_s, 2),
            "eta_s": None if progress.eta_s is None else round(progress.eta_s, 1),
            "updated_at": utcnow().isoformat(),
        }
        self._write("progress", lambda s: add_event(s, self.lease.job_id, "progress", data), progress=data)

    def on_metrics(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        def tx(session: Session) -> None:
            upsert_metrics(session, self.lease.job_id, step, epoch, metrics)
            add_event(session, self.lease.job_id, "metrics", {"step": step, "epoch": epoch, "values": metrics})

        self._write("metrics", tx)

    def on_checkpoint(self, path: Path, kind: str) -> None:
        self.register(path, "checkpoint")

    def on_log(self, line: str) -> None:
        log.info("job %s: %s", self.lease.job_id, line)

        seq = self._log_seq

        def tx(session: Session) -> None:
            # Insert-or-ignore: a retry after a commit whose answer was lost must not fail.
            insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
            session.execute(
                insert(JobLogLine)
                .values(
                    job_id=self.lease.job_id,
                    seq=seq,
                    attempt=self.lease.attempt,
                    line=line,
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["job_id", "seq"])
            )

        self._write("log", tx)
        self._log_seq += 1

    def should_stop(self) -> bool:
        self._check_lease()  # not a graceful stop: a stale worker must not write a checkpoint
        if self.stop_reason is None and shutdown.requested():
            self.stop_reason = "shutdown"
        return self.stop_reason is not None

    # -- artifacts ------------------------------------------------------------------------
    def register(self, path: Path, kind: str) -> None:
        """Put a complete file in the store, then its row (listed and served from then on).
        A worker that lost its lease uploads nothing (checked before every try): the job's
        new owner writes those keys."""

        def upload() -> artifacts.ArtifactInfo:
            self._check_lease()
            return artifacts.publish(self.store, self.lease.job_id, path, kind, self._published)

        info = self.waiting_out(upload)
        self._write("artifact", lambda s: artifacts.upsert(s, self.lease.job_id, info))

    def waiting_out(self, fn: Callable[[], T]) -> T:
        """fn(), with an unreachable store (S3 down, MinIO restarting) waited out like a
        database outage: retried until store_retry_deadline_s while the job waits and the
        heartbeat keeps the lease, both told in the job's log; past it, the StoreError is
        raised (the job fails with artifact_store_error)."""
        waited: list[StoreError] = []

        def tell(exc: StoreError) -> None:
            waited.append(exc)
            limit = self.settings.store_retry_deadline_s
            self.on_log(f"artifact store unreachable, retrying for up to {limit:.0f} s: {exc}")

        value = artifacts.wait_out_store(
            fn, self.settings.store_retry_deadline_s, self.settings.heartbeat_interval_s, tell
        )
        if waited:
            self.on_log("artifact store reachable again")
        return value


class Heartbeat(threading.Thread):
    def __init__(self, reporter: JobReporter, interval_s: float) -> None:
        super().__init__(name=f"heartbeat-{reporter.lease.job_id}", daemon=True)
        self.reporter = reporter
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._context = contextvars.copy_context()  # its log lines carry the job id too

    def run(self) -> None:
        self._context.run(self._beat)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.reporter.heartbeat()

    def stop(self) -> None:
        self._stop.set()
