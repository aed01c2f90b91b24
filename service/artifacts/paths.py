"""Where a job's files live: ARTIFACT_DIR/jobs/<job_id>/. The API (downloads) and the worker
(checkpoints, plots, final outputs) both ask here, so the layout is defined once."""

from __future__ import annotations

from pathlib import Path


def job_dir(artifact_dir: Path | str, job_id: int) -> Path:
    return Path(artifact_dir) / "jobs" / str(int(job_id))
