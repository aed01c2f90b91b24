"""A job's files: the names the worker registered (the artifacts table), read from the
artifact store (service.artifacts.store). Only registered names are served; on the local
backend only when they resolve inside the job's folder (no '..', no symlink out)."""

from __future__ import annotations

from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.artifacts.download import blob_response
from service.artifacts.models import Artifact
from service.artifacts.paths import job_dir
from service.artifacts.store import Blob, LocalStore, StoreError, get_store, job_key
from service.core.errors import NotFound, Unavailable
from service.jobs import service as jobs
from service.users.models import User


def list_for_job(session: Session, user: User, job_id: int) -> list[Artifact]:
    job = jobs.get(session, user, job_id)
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)))


def locate(session: Session, user: User, job_id: int, name: str) -> tuple[Artifact, Blob]:
    """(the artifact row, its stored file opened), or NotFound for anything else: another
    user's job, an unregistered name, a path that leaves the job's folder, a file gone."""
    job = jobs.get(session, user, job_id)
    missing = NotFound(f"job {job_id} has no artifact {name[:200]!r}")
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name))
    if artifact is None:
        raise missing
    store = get_store()
    if isinstance(store, LocalStore):
        root = job_dir(store.artifact_dir, job.id).resolve()
        path = (root / artifact.name).resolve()
        if not path.is_relative_to(root) or path == root or not path.is_file():
            raise missing
    try:
        blob = store.open(job_key(job.id, artifact.name))
    except StoreError as exc:
        raise Unavailable(f"{exc}; try again shortly") from None
    if blob is None:
        raise missing
    return artifact, blob


def download(
    session: Session, user: User, job_id: int, name: str, range_header: str | None, if_range: str | None
) -> StreamingResponse:
    """GET .../artifacts/{name} (API and dashboard): the file streamed with Range, ETag and
    X-Checksum-SHA256; the database connection goes back before the first byte is sent."""
    artifact, blob = locate(session, user, job_id, name)
    sha256, stored_name = artifact.sha256, artifact.name
    session.close()  # a 2 GB download holds no database connection
    return blob_response(blob, stored_name, sha256, range_header, if_range)
