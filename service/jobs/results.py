"""What a job has produced so far: its metric series and its log lines."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.errors import field_error
from service.jobs.models import TERMINAL_STATUSES, Job, JobLogLine, JobMetric

METRIC_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_KEYS = 50
MAX_POINTS = 100_000  # a run reports a handful of keys per epoch: far below this
LOG_PAGE = 1000


def parse_keys(keys: str | None) -> list[str] | None:
    """'train_loss,test_accuracy' -> the list; None or '' -> every key."""
    if not keys:
        return None
    names = [k.strip() for k in keys.split(",") if k.strip()]
    bad = [k for k in names if not METRIC_KEY.match(k)]
    if bad or len(names) > MAX_KEYS:
        message = f"not a metric name: {bad[0][:80]!r}" if bad else f"at most {MAX_KEYS} keys"
        raise field_error("keys", message)
    return names or None


def metrics(session: Session, job: Job, keys: list[str] | None, since_step: int | None) -> list[JobMetric]:
    """Points ordered by (step, key); (key, step) is unique in the table, so a resumed run's
    repeated epoch shows once."""
    stmt = select(JobMetric).where(JobMetric.job_id == job.id)
    if keys:
        stmt = stmt.where(JobMetric.key.in_(keys))
    if since_step is not None:
        stmt = stmt.where(JobMetric.step > since_step)
    return list(session.scalars(stmt.order_by(JobMetric.step, JobMetric.key).limit(MAX_POINTS)))


def log_lines(session: Session, job: Job, offset: int) -> tuple[list[str], int, bool]:
    """(lines from line number `offset` on, the offset to ask for next, done).

    done: the job has ended and every line has been returned. The status is read before the
    lines: a job that ended before the read wrote its last line before it too."""
    terminal = job.status in TERMINAL_STATUSES
    rows = session.execute(
        select(JobLogLine.seq, JobLogLine.line)
        .where(JobLogLine.job_id == job.id, JobLogLine.seq >= offset)
        .order_by(JobLogLine.seq)
        .limit(LOG_PAGE + 1)
    ).all()
    more = len(rows) > LOG_PAGE
    rows = rows[:LOG_PAGE]
    next_offset = rows[-1].seq + 1 if rows else offset
    return [r.line for r in rows], next_offset, terminal and not more
