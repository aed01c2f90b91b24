"""The job event log (what GET /v1/jobs/{id}/events streams). API and worker both append."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.jobs.models import JobEvent


def add_event(session: Session, job_id: int, kind: str, data: dict[str, Any]) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, data=data))
