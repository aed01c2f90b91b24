"""A job's folder on the local artifact store: ARTIFACT_DIR/<the job's key prefix>, i.e.
ARTIFACT_DIR/jobs/<job_id>/ (the key layout is service.artifacts.store's job_key). Deletion,
the orphan sweep and the download's path check use it where they work on folders."""

from __future__ import annotations

from pathlib import Path

from service.artifacts.store import job_key


def job_dir(artifact_dir: Path | str, job_id: int) -> Path:
    return Path(artifact_dir) / job_key(job_id)
