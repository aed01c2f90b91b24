"""One job, start to finish: claim it, run the engine with a reporter and a heartbeat, then
finish it (succeeded, failed with a reason, cancelled) or put it back in the queue."""

from __future__ import annotations

import errno
import logging
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cttv2_engine.types import RunContext
from service.artifacts.models import Artifact
from service.artifacts.store import ArtifactStore, S3Store, StoreError, check_writable, get_store, job_key
from service.core.config import Settings
from service.core.db import utcnow
from service.core.log_context import job_id_var, request_id_var
from service.jobs import lifecycle
from service.jobs.models import Job, JobStatus
from service.users import storage
from worker import artifacts, plots
from worker.db import RETRYABLE, with_retry
from worker.lease import Lease, LeaseLost, claim_next_job, finish, requeue
from worker.reporter import Heartbeat, JobReporter
from worker.weights import weights_dir_for

log = logging.getLogger("cttv2.worker.runner")


LATEST = "checkpoints/latest.pt"


def _resume_point(store: ArtifactStore, job: Job) -> Path | None:
    """The job's own latest checkpoint (an earlier attempt's, on any host), else the
    checkpoint resume_from names; on S3 downloaded to this host first."""
    own = store.fetch(job_key(job.id, LATEST)) if store.is_local else _fetch_registered(store, job.id, LATEST)
    if own is not None:
        return own
    if job.resume_from:
        checkpoint = job.resume_from.get("checkpoint", "latest")
        other = int(job.resume_from["job"])
        src = store.fetch(job_key(other, f"checkpoints/{checkpoint}.pt"), _input_path(store, job.id, other, checkpoint))
        if src is None:
            raise JobInputError(f"resume_from: job {job.resume_from['job']} has no {checkpoint}.pt checkpoint")
        return src
    return None


def _fetch_registered(store: ArtifactStore, job_id: int, name: str) -> Path | None:
    """On S3, only a file with a row: the row is written after the upload completes, and a
    deleted job's objects (removed after its rows) never pass for a new job's with its id."""
    row = with_retry(
        lambda s: s.scalar(select(Artifact.id).where(Artifact.job_id == job_id, Artifact.name == name)),
        what="find checkpoint",
    )
    return store.fetch(job_key(job_id, name)) if row is not None else None


def _input_path(store: ArtifactStore, job_id: int, other: int, what: str) -> Path:
    """Where a file of another job that this job starts from is downloaded (S3): inside this
    job's scratch folder, removed with it."""
    return store.local_path(job_key(job_id, f".inputs/job-{other}-{what}"))


def _job_weights(store: ArtifactStore, job_id: int, other: int) -> Path:
    """model.pretrained.job: that job's weights.safetensors, as a local file (the engine
    reports a clear error when it is missing)."""
    key = job_key(other, "weights.safetensors")
    return store.fetch(key, _input_path(store, job_id, other, "weights.safetensors")) or store.local_path(key)


class JobInputError(Exception):
    """The job cannot run as specified (not a worker fault)."""


def run_job(settings: Settings, job_id: int, worker_id: str) -> str:
    """Handle one delivered run message, which names job_id: claim the fairest queued job
    (lifecycle.claim_next; often job_id itself, but not necessarily) and run it. Returns what
    happened (for logs and tests)."""
    rid = request_id_var.set(f"job-{job_id}")  # worker log lines carry the job as their id
    jid = job_id_var.set(job_id)  # and as job_id (JSON log lines)
    try:
        lease = claim_next_job(worker_id, settings.max_running_jobs_per_user)
        if lease is None:
            log.info(
                "job %s: not claimable (duplicate delivery, cancelled or taken) and no other queued job can "
                "start now (none, or their users are at max_running_jobs_per_user); ignored",
                job_id,
            )
            lifecycle.wake(settings.max_running_jobs_per_user)  # only sends when jobs could start
            return "ignored"
        if lease.job_id != job_id:
            request_id_var.set(f"job-{lease.job_id}")
            job_id_var.set(lease.job_id)
            _log_taken_instead(job_id, lease.job_id)
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
        job_id_var.reset(jid)
        request_id_var.reset(rid)


def _log_taken_instead(named: int, taken: int) -> None:
    status = with_retry(lambda s: s.scalar(select(Job.status).where(Job.id == named)), what="read job")
    if status == JobStatus.QUEUED:
        log.info("job %s: message taken for job %s, next in fair order (job %s stays queued)", named, taken, named)
    else:
        log.info("job %s: not claimable (%s); took job %s, next in fair order", named, status or "gone", taken)


def _run_claimed(settings: Settings, lease: Lease, reporter: JobReporter) -> str:
    job = with_retry(lambda s: s.get(Job, lease.job_id), what="load job")
    reporter.on_log(f"attempt {lease.attempt} on worker {lease.worker_id}")
    # The user's storage quota (CTTV2_MAX_STORAGE_MB_PER_USER), used up since the job was
    # submitted: it fails now, before training writes any file.
    use = with_retry(lambda s: storage.usage(s, settings, job.user_id), what="read storage usage")
    if use.full:
        return _fail(lease, reporter, storage.CODE, use.job_message())
    store = get_store(settings)
    workdir = store.local_path(job_key(job.id))
    try:
        if isinstance(store, S3Store):  # this host's copy starts empty: the store has the job's files
            store.clear_scratch(job_key(job.id))
        workdir.mkdir(parents=True, exist_ok=True)
        check_writable(workdir)
        if isinstance(store, S3Store):  # reachable, and these credentials may write
            reporter.waiting_out(lambda: store.check(job_key(job.id)))
    except OSError as exc:
        where = store.describe() if isinstance(exc, StoreError) else workdir
        return _fail(
            lease,
            reporter,
            "artifact_store_error",
            f"cannot write job files in the artifact store: {exc.strerror or exc} ({where})",
        )
    try:
        return _train(settings, store, lease, reporter, job, workdir)
    finally:
        if isinstance(store, S3Store):  # everything worth keeping is in the store now
            store.clear_scratch(job_key(job.id))


def _train(
    settings: Settings, store: ArtifactStore, lease: Lease, reporter: JobReporter, job: Job, workdir: Path
) -> str:
    from cttv2_engine import run as engine_run
    from cttv2_engine.spec import JobSpec

    try:
        spec = JobSpec.model_validate(job.spec)
        resume = reporter.waiting_out(lambda: _resume_point(store, job))
        if resume is not None:
            reporter.on_log(f"resuming from {resume.relative_to(store.local_path(''))}")
        context = RunContext(
            data_dir=Path(settings.data_dir),
            weights_dir=reporter.waiting_out(lambda: weights_dir_for(settings, store, job)),
            compute=settings.device,
            num_threads=settings.worker_threads,
            job_weights=lambda other: reporter.waiting_out(lambda: _job_weights(store, job.id, other)),
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
        ok = finish(lease, JobStatus.SUCCEEDED, result=result_payload(result, job))
        if ok:
            plots.after_finish(settings, job.id, drew_baseline)
            _prune_checkpoints(settings, store, job.id)
        return JobStatus.SUCCEEDED if ok else "lease_lost"
    reason = reporter.stop_reason or "shutdown"
    if reason == "cancelled":
        finish(lease, JobStatus.CANCELLED, error_code=None, error=None)
        return JobStatus.CANCELLED
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


def _prune_checkpoints(settings: Settings, store: ArtifactStore, job_id: int) -> None:
    """The retention setting (keep_checkpoints) on a succeeded job; a failure only logs (the
    job has succeeded; `cttv2 admin purge` and the orphan sweep clean up later)."""
    if settings.keep_checkpoints == "best_and_latest":
        return
    try:
        pruned = with_retry(
            lambda s: artifacts.prune_checkpoints(s, job_id, settings.keep_checkpoints),
            what="prune checkpoints",
        )
        artifacts.unlink_pruned(store, job_id, pruned)
    except Exception as exc:  # noqa: BLE001 - never worth more than a log line
        log.warning("job %s: could not prune checkpoints: %s", job_id, exc)


def _draw_curves(settings: Settings, job_id: int) -> bool:
    """curves.png before the final outputs are registered; a failed plot only logs."""
    try:
        return plots.write_curves(settings, job_id)
    except Exception as exc:  # noqa: BLE001 - a plot is never worth failing a job over
        log.warning("job %s: could not draw curves.png: %s", job_id, exc)
        return False


STORAGE_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EROFS,
    errno.EPERM,
    errno.EIO,
    errno.ENOTDIR,
    errno.EEXIST,
)


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
        if isinstance(cause, StoreError):
            return "artifact_store_error", str(cause)
        if isinstance(cause, OSError) and cause.errno in STORAGE_ERRNOS:
            where = f" ({cause.filename})" if getattr(cause, "filename", None) else ""
            return "artifact_store_error", f"cannot write job files: {cause.strerror or cause}{where}"
        cause = cause.__cause__ or cause.__context__
    if workdir is not None:
        try:
            check_writable(workdir)
        except OSError as probe:
            return "artifact_store_error", (
                f"cannot write job files: {probe.strerror or probe} ({workdir}); "
                f"the run failed with {type(exc).__name__}: {exc}"
            )
    return "engine_error", f"{type(exc).__name__}: {exc}"


def _fail(lease: Lease, reporter: JobReporter, code: str, message: str) -> str:
    message = message.strip().splitlines()[0][:2000] if message.strip() else code
    try:
        reporter.on_log(f"failed: {message}")
    except Exception:  # noqa: BLE001 - the failure itself may be the database
        pass
    finish(lease, JobStatus.FAILED, error_code=code, error=message)
    return JobStatus.FAILED
