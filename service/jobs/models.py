from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.core.db import Base, JSONType, UTCDateTime, utcnow


class JobStatus(StrEnum):
    """queued -> running -> succeeded | failed | cancelled; queued -> cancelled; running ->
    queued when a worker is lost or shut down (the job resumes from its checkpoint). Every
    change is made in service.jobs.lifecycle."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobPriority(StrEnum):
    """Which queued job a worker takes first (service.jobs.lifecycle.claim_next): a user's
    `high` job goes before every `normal` one (of anyone), a `low` one after them. Only
    admins may submit `high`."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


# Best first: the order claim_next tries a user's queued jobs in.
PRIORITY_ORDER = (JobPriority.HIGH, JobPriority.NORMAL, JobPriority.LOW)

ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# The same names as a Literal: the OpenAPI schema lists them inline, as it always has. Built
# at run time, which a type checker cannot follow: it sees a str.
if TYPE_CHECKING:
    JobStatusName = str
else:
    JobStatusName = Literal[tuple(s.value for s in JobStatus)]
JobPriorityName = Literal["low", "normal", "high"]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        Index(None, "user_id", "id"),
        Index(None, "user_id", "status", "id"),
        # claim_next: a user's next queued job of one priority, and their running count.
        Index(None, "user_id", "status", "priority", "id"),
        Index(None, "status", "heartbeat_at"),
        # A sweep's jobs newest first (GET /v1/jobs?sweep=, a sweep's job list), and the
        # sweep_id foreign key's ON DELETE SET NULL.
        Index(None, "sweep_id", "id"),
        # GET /v1/jobs?name=<prefix>: LIKE 'prefix%' can use the index on PostgreSQL whatever
        # the database's collation (varchar_pattern_ops compares bytes).
        Index(None, "user_id", "name", postgresql_ops={"name": "varchar_pattern_ops"}),
        Index(None, "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    # The validated JobSpec, with any device_spec_id resolved inline: the job never changes
    # when the stored device spec is deleted later.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    spec_hash: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(32))
    device_spec_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_specs.id", ondelete="SET NULL"), default=None, index=True
    )
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id", ondelete="SET NULL"), default=None)
    sweep_point: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    # {job: ID, checkpoint: latest|best}: start from an earlier job's checkpoint.
    resume_from: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    rerun_of: Mapped[int | None] = mapped_column(Integer, default=None)

    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[str] = mapped_column(
        String(8), default=JobPriority.NORMAL.value, server_default=JobPriority.NORMAL.value
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    lost_count: Mapped[int] = mapped_column(Integer, default=0)  # times reaped
    lease_token: Mapped[str | None] = mapped_column(String(64), default=None)
    worker_id: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)

    # The user's own labels, in the order given (service.jobs.service.set_tags): shown as is;
    # the job_tags rows (JobTag) are what GET /v1/jobs?tag= filters on. NULL: no tags.
    tags: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    # Only for writing a new job's tags with it (service.jobs.service.new_job); never loaded.
    tag_rows: Mapped[list[JobTag]] = relationship(lazy="raise_on_sql", passive_deletes=True)

    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class JobTag(Base):
    """One tag of a job, for GET /v1/jobs?tag= (a keyset page read backwards off
    (user_id, tag, job_id)); Job.tags holds the same tags in their order. Written only by
    service.jobs.service.set_tags; deleted with the job (ON DELETE CASCADE)."""

    __tablename__ = "job_tags"
    __table_args__ = (Index(None, "user_id", "tag", "job_id"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The job's owner (denormalized): a user's tag is one index range, whoever else uses it.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class JobMetric(Base):
    """One point of a time series. (job, key, step) is unique, so a resumed run that reports a
    step again overwrites it instead of adding a second row."""

    __tablename__ = "job_metrics"
    __table_args__ = (UniqueConstraint("job_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEvent(Base):
    """What the events stream replays: status changes, progress and metrics, in id order."""

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # status | progress | metrics | log
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobLogLine(Base):
    __tablename__ = "job_log_lines"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # 0-based line number within the job
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    line: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
