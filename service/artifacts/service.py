"""A job's files: ARTIFACT_DIR/jobs/<job_id>/<name>. Only names the worker registered are
served, and only when they resolve inside the job's folder (no '..', no symlink out)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact
from service.artifacts.paths import job_dir
from service.core.config import get_settings
from service.core.errors import NotFound
from service.jobs import service as jobs
from service.users.models import User


def list_for_job(session: Session, user: User, job_id: int) -> list[Artifact]:
    job = jobs.get(session, user, job_id)
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)))


def locate(session: Session, user: User, job_id: int, name: str) -> tuple[Artifact, Path]:
    """(the artifact row, its file), or NotFound for anything else: another user's job, an
    unregistered name, a path that leaves the job's folder, a file gone from disk."""
    job = jobs.get(session, user, job_id)
    missing = NotFound(f"job {job_id} has no artifact {name[:200]!r}")
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name))
    if artifact is None:
        raise missing
    root = job_dir(get_settings().artifact_dir, job.id).resolve()
    path = (root / artifact.name).resolve()
    if not path.is_relative_to(root) or path == root or not path.is_file():
        raise missing
    return artifact, path
