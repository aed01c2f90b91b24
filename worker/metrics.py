"""Metric rows: one per (job, key, step), so a resumed run that reports a step again
overwrites it."""

from __future__ import annotations

import math

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.core.db import dialect_name, utcnow
from service.jobs.models import JobMetric


def upsert_metrics(session: Session, job_id: int, step: int, epoch: int | None, values: dict[str, float]) -> None:
    rows = [
        {"job_id": job_id, "key": k, "step": step, "epoch": epoch, "value": float(v), "created_at": utcnow()}
        for k, v in values.items()
        if v is not None and math.isfinite(float(v))
    ]
    if not rows:
        return
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    stmt = insert(JobMetric).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "key", "step"],
        set_={"value": stmt.excluded.value, "epoch": stmt.excluded.epoch, "created_at": stmt.excluded.created_at},
    )
    session.execute(stmt)
