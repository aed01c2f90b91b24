"""One job, start to finish: claim it, run the engine, report, finish.

The job row is the source of truth. A claim is one conditional UPDATE (queued -> running with
a fresh lease token); every later write names that token, so a worker that lost its lease
(reaped after a missed heartbeat, then claimed elsewhere) can no longer change the job.
"""

from __future__ import annotations

import contextvars
import errno
import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cttv2_engine.types import Progress, RunContext
from service.core.config import Settings
from service.core.db import utcnow
from service.core.middleware import request_id_var
from service.jobs.events import add_event
from service.jobs.models import Job, JobLogLine
from worker import artifacts, plots, shutdown
from worker.db import RETRYABLE, with_retry
from worker.metrics import upsert_metrics
from worker.weights import weights_dir_for

log = logging.getLogger("cttv2.worker.runner")

StopReason = Literal["cancelled", "shutdown", "lease_lost"]


class LeaseLost(Exception):
    """This worker no longer holds the job (reaped or cancelled elsewhere)."""


@dataclass(frozen=True)
class Lease:
    job_id: int
    token: str
    attempt: int
    worker_id: str


def job_dir(settings: Settings, job_id: int) -> Path:
    return Path(settings.artifact_dir) / "jobs" / str(job_id)


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


def _fence(session: Session, lease: Lease, **values: Any) -> None:
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

    # -- writes ---------------------------------------------------------------------------
    def _write(self, what: str, fn=None, **job_values: Any) -> None:
        """One transaction under the lease. Raises LeaseLost when another worker (or the
        reaper) took the job: the engine then stops at once, before writing another file."""
        self._check_lease()

        def tx(session: Session) -> None:
            _fence(session, self.lease, **job_values)
            if fn is not None:
                fn(session)

        try:
            with self._lock:
                # Retry at least once per heartbeat interval: when the database is back, the
                # lease is re-asserted well before the reaper would act (see maintenance).
                with_retry(tx, deadline_s=self.settings.db_retry_deadline_s, what=what,
                           max_delay_s=self.settings.heartbeat_interval_s)
        except LeaseLost:
            self.stop_reason = "lease_lost"
            raise

    def _check_lease(self) -> None:
        if self.stop_reason == "lease_lost":
            raise LeaseLost(f"job {self.lease.job_id}: lease {self.lease.token[:8]} lost")

    def heartbeat(self) -> None:
        """Refresh the lease; pick up a cancel request."""
        def tx(session: Session) -> None:
            _fence(session, self.lease, heartbeat_at=utcnow())
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
            insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
            session.execute(insert(JobLogLine).values(
                job_id=self.lease.job_id, seq=seq, attempt=self.lease.attempt, line=line, created_at=utcnow(),
            ).on_conflict_do_nothing(index_elements=["job_id", "seq"]))

        self._write("log", tx)
        self._log_seq += 1

    def should_stop(self) -> bool:
        self._check_lease()  # not a graceful stop: a stale worker must not write a checkpoint
        if self.stop_reason is None and shutdown.requested():
            self.stop_reason = "shutdown"
        return self.stop_reason is not None

    # -- artifacts ------------------------------------------------------------------------
    def register(self, path: Path, kind: str) -> None:
        root = job_dir(self.settings, self.lease.job_id)
        info = artifacts.describe(root, path, kind)
        self._write("artifact", lambda s: artifacts.upsert(s, self.lease.job_id, info))


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


def finish(lease: Lease, status: str, *, result: dict | None = None, error_code: str | None = None,
           error: str | None = None, deadline_s: float = 600.0) -> bool:
    def tx(session: Session) -> None:
        now = utcnow()
        _fence(session, lease, status=status, result=result, error_code=error_code, error=error,
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
        _fence(session, lease, status="queued", lease_token=None, worker_id=None, enqueued_at=None)
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


def _resume_point(settings: Settings, job: Job) -> Path | None:
    own = job_dir(settings, job.id) / "checkpoints" / "latest.pt"
    if own.exists():
        return own
    if job.resume_from:
        checkpoint = job.resume_from.get("checkpoint", "latest")
        src = job_dir(settings, int(job.resume_from["job"])) / "checkpoints" / f"{checkpoint}.pt"
        if not src.exists():
            raise JobInputError(f"resume_from: job {job.resume_from['job']} has no {src.name} checkpoint")
        return src
    return None


class JobInputError(Exception):
    """The job cannot run as specified (not a worker fault)."""


def run_job(settings: Settings, job_id: int, worker_id: str) -> str:
    """Run one delivered job id. Returns what happened (for logs and tests)."""
    rid = request_id_var.set(f"job-{job_id}")  # worker log lines carry the job as their id
    try:
        lease = claim_job(job_id, worker_id)
        if lease is None:
            log.info("job %s: not claimable (duplicate delivery, cancelled or taken); ignored", job_id)
            return "ignored"
        reporter = JobReporter(settings, lease)
        heartbeat = Heartbeat(reporter, settings.heartbeat_interval_s)
        heartbeat.start()
        try:
            return _run_claimed(settings, lease, reporter)
        except LeaseLost:
            # Reaped while unreachable (or paused) and claimed again elsewhere: the other
            # worker owns the job now; this one leaves the row and the files alone.
            log.warning("job %s: lease lost; stopped without further writes", job_id)
            return "lease_lost"
        except RETRYABLE as exc:
            # The database stayed away past db_retry_deadline_s. The job stays running with
            # a stale heartbeat: the reaper requeues it once the database is back, and it
            # resumes from its last checkpoint. Nothing to write now.
            log.error("job %s: database unavailable, giving the job up: %s", job_id, str(exc).splitlines()[0])
            return "db_unavailable"
        finally:
            heartbeat.stop()
    finally:
        request_id_var.reset(rid)


def _run_claimed(settings: Settings, lease: Lease, reporter: JobReporter) -> str:
    from cttv2_engine import run as engine_run
    from cttv2_engine.spec import JobSpec

    job = with_retry(lambda s: s.get(Job, lease.job_id), what="load job")
    reporter.on_log(f"attempt {lease.attempt} on worker {lease.worker_id}")
    workdir = job_dir(settings, job.id)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        artifacts.check_writable(workdir)
    except OSError as exc:
        return _fail(lease, reporter, "artifact_store_error",
                     f"cannot write job files in the artifact store: {exc.strerror or exc} ({workdir})")
    try:
        spec = JobSpec.model_validate(job.spec)
        resume = _resume_point(settings, job)
        if resume is not None:
            reporter.on_log(f"resuming from {resume.relative_to(settings.artifact_dir)}")
        context = RunContext(
            data_dir=Path(settings.data_dir),
            weights_dir=weights_dir_for(settings, job),
            device=settings.device,
            num_threads=settings.worker_threads,
            job_weights=lambda other: job_dir(settings, other) / "weights.safetensors",
        )
        result = engine_run(spec, workdir=workdir, callbacks=reporter, resume_from=resume, context=context)
    except (LeaseLost, *RETRYABLE):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason
        code, message = classify_failure(exc, workdir)
        if code == "engine_error":
            log.error("job %s failed:\n%s", lease.job_id, traceback.format_exc())
        return _fail(lease, reporter, code, message)

    if result.status == "completed":
        drew_baseline = _draw_curves(settings, job.id)
        try:
            for path, kind in artifacts.final_outputs(workdir):
                reporter.register(path, kind)
        except OSError as exc:
            return _fail(lease, reporter, "artifact_store_error", f"cannot write job files: {exc}")
        ok = finish(lease, "succeeded", result=result_payload(result, job))
        if ok:
            plots.after_finish(settings, job.id, drew_baseline)
        return "succeeded" if ok else "lease_lost"
    reason = reporter.stop_reason or "shutdown"
    if reason == "cancelled":
        finish(lease, "cancelled", error_code=None, error=None)
        return "cancelled"
    if reason == "shutdown":
        reporter.on_log("worker shutting down: checkpoint written, job back in the queue")
        requeue(lease, "worker_shutdown")
        return "requeued"
    return "lease_lost"


def result_payload(result, job: Job) -> dict[str, Any]:
    """JobOut.result: the engine's final figures (test accuracy/error/loss, train loss, best
    epoch, wall_s of the last attempt), plus the device, the seeds and the job's elapsed time
    across attempts, the environment and the per-epoch history."""
    env = result.environment or {}
    started = job.started_at
    return {
        **result.final,
        "device": env.get("device"),
        "seeds": {"training": env.get("seed"), "construction": env.get("construction_seed")},
        "elapsed_s": round((utcnow() - started).total_seconds(), 3) if started else None,
        "environment": env,
        "history": result.history,
    }


def _draw_curves(settings: Settings, job_id: int) -> bool:
    """curves.png before the final outputs are registered; a failed plot only logs."""
    try:
        return plots.write_curves(settings, job_id)
    except Exception as exc:  # noqa: BLE001 - a plot is never worth failing a job over
        log.warning("job %s: could not draw curves.png: %s", job_id, exc)
        return False


STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM, errno.EIO,
                  errno.ENOTDIR, errno.EEXIST)


def classify_failure(exc: BaseException, workdir: Path | None = None) -> tuple[str, str]:
    """(error_code, one-line message) for a failed job."""
    from cttv2_engine.errors import EngineError

    if isinstance(exc, (EngineError, JobInputError)):
        return "invalid_job", str(exc)
    # torch.save on a full disk raises a RuntimeError whose context is the OSError: look
    # down the chain, then ask the store itself.
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno in STORAGE_ERRNOS:
            where = f" ({cause.filename})" if getattr(cause, "filename", None) else ""
            return "artifact_store_error", f"cannot write job files: {cause.strerror or cause}{where}"
        cause = cause.__cause__ or cause.__context__
    if workdir is not None:
        try:
            artifacts.check_writable(workdir)
        except OSError as probe:
            return "artifact_store_error", (f"cannot write job files: {probe.strerror or probe} ({workdir}); "
                                            f"the run failed with {type(exc).__name__}: {exc}")
    return "engine_error", f"{type(exc).__name__}: {exc}"


def _fail(lease: Lease, reporter: JobReporter, code: str, message: str) -> str:
    message = message.strip().splitlines()[0][:2000] if message.strip() else code
    try:
        reporter.on_log(f"failed: {message}")
    except Exception:  # noqa: BLE001 - the failure itself may be the database
        pass
    finish(lease, "failed", error_code=code, error=message)
    return "failed"
