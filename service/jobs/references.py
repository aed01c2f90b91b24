"""Checks, at submit, of what a job starts from: an earlier job's checkpoint (resume_from),
an earlier job's trained weights (model.pretrained.job) or a weights file
(model.pretrained.weights). A reference that cannot work is a 422 naming the field, not a job
that fails later in a worker."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cttv2_engine.semantics import RESUMABLE_CHANGES, resume_differences
from cttv2_engine.spec import JobRef, JobSpec, WeightsRef
from service.artifacts.models import Artifact
from service.core.config import get_settings
from service.core.errors import field_error
from service.jobs.models import Job, JobStatus
from service.jobs.schemas import ResumeFrom
from service.users.models import User
from service.weights.models import WeightsFile

FINAL_WEIGHTS = "weights.safetensors"


def _own_job(session: Session, user: User, job_id: int, field: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.user_id != user.id:  # another user's job looks missing
        raise field_error(field, f"job {job_id} not found")
    return job


def _has_artifact(session: Session, job_id: int, name: str) -> bool:
    return session.scalar(select(Artifact.id).where(Artifact.job_id == job_id, Artifact.name == name)) is not None


def check_resume_from(session: Session, user: User, ref: ResumeFrom, spec: JobSpec) -> None:
    """The checkpoint exists, and the new spec may continue it (the engine's rule: only the
    name, the number of epochs and eval_every may change)."""
    earlier = _own_job(session, user, ref.job, "resume_from.job")
    name = f"checkpoints/{ref.checkpoint}.pt"
    if not _has_artifact(session, ref.job, name):
        raise field_error("resume_from.checkpoint", f"job {ref.job} has no {ref.checkpoint} checkpoint")
    changed = resume_differences(earlier.spec, spec)
    if changed:
        raise field_error(
            "resume_from",
            f"job {ref.job}'s checkpoint cannot continue under this spec: it differs in "
            f"{', '.join(changed)} (only {', '.join(RESUMABLE_CHANGES)} may change)",
        )


def check_pretrained(session: Session, user: User, spec: JobSpec) -> None:
    ref = spec.model.pretrained
    if isinstance(ref, JobRef):
        job = _own_job(session, user, ref.job, "model.pretrained.job")
        if job.status != JobStatus.SUCCEEDED or not _has_artifact(session, job.id, FINAL_WEIGHTS):
            raise field_error("model.pretrained.job", f"job {job.id} has no trained weights (status {job.status})")
    elif isinstance(ref, WeightsRef):
        weights_file(session, user, ref.weights, spec.model.arch)


def weights_file(session: Session, user: User, name: str, arch: str) -> None:
    """The user's own upload of that name wins over a server-wide file of the same name;
    an upload must have passed validation."""
    field = "model.pretrained.weights"
    upload = session.scalar(select(WeightsFile).where(WeightsFile.user_id == user.id, WeightsFile.name == name))
    if upload is not None:
        if upload.status == "pending":
            raise field_error(
                field, f"{name} is still being validated; submit again when GET /v1/weights/{{id}} says valid"
            )
        if upload.status != "valid":
            raise field_error(field, f"{name} failed validation: {upload.error or 'invalid'}")
        if upload.arch != arch:
            raise field_error(field, f"{name} was uploaded for {upload.arch}, the job uses {arch}")
        return
    if not (Path(get_settings().weights_dir) / name).is_file():
        raise field_error(field, f"no weights file {name!r} (upload it with POST /v1/weights)")
