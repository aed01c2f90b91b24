"""A user's disk usage and its quota (CTTV2_MAX_STORAGE_MB_PER_USER): the files of their jobs
(the artifacts table's sizes) plus their uploaded weights (weights_files' sizes).

`usage` is the one place that adds them up: GET /v1/users/me shows it, an upload that would
pass the quota is refused (507, service.weights), and so is a job while the quota is used up,
when it is submitted (507, service.jobs.limits) and when a worker starts it (worker.runner:
failed, before training, with the same code)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact
from service.core.config import Settings
from service.core.db import dialect_name
from service.core.errors import APIError
from service.jobs.models import Job
from service.users.models import User
from service.weights.models import WeightsFile

CODE = "storage_quota_exceeded"
SETTING = "CTTV2_MAX_STORAGE_MB_PER_USER"
MB = 1 << 20


class StorageQuotaExceeded(APIError):
    """507 Insufficient Storage: the user's files would pass (or have used up) their quota.
    Not retryable: only deleting jobs or weights (or a larger quota) makes room."""

    status_code = 507
    code = CODE


def mb(n: int) -> str:
    """Bytes as MB (MiB, as the settings count them) with one decimal."""
    return f"{n / MB:.1f} MB"


@dataclass(frozen=True)
class StorageUse:
    used: int  # bytes: artifacts of the user's jobs + their uploaded weights
    quota: int  # bytes

    @property
    def room(self) -> int:
        """Bytes the user may still add (0 when the quota is used up or passed)."""
        return max(0, self.quota - self.used)

    @property
    def full(self) -> bool:
        """No room left: a new job (which writes files) is refused."""
        return self.used >= self.quota

    def describe(self) -> str:
        return f"you use {mb(self.used)} of your {mb(self.quota)} storage quota ({SETTING})"

    def upload_refused(self, size: int, *, about: str = "") -> StorageQuotaExceeded:
        """The 507 for an upload of `size` bytes; about: "more than " when the upload was cut
        off before its end, "about " for a request's declared length."""
        return StorageQuotaExceeded(
            f"storage quota exceeded: {self.describe()} and this upload is {about}{mb(size)}; "
            "delete jobs or weights you no longer need"
        )

    def job_message(self) -> str:
        return f"storage quota exceeded: {self.describe()}; delete jobs or weights you no longer need"

    def job_refused(self) -> StorageQuotaExceeded:
        return StorageQuotaExceeded(self.job_message())


def quota_bytes(settings: Settings) -> int:
    return settings.max_storage_mb_per_user * MB


def usage_columns(user_id: int) -> tuple[ScalarSelect, ScalarSelect]:
    """The two scalar sums of the user's usage (artifacts through the user's jobs, and
    weights), for a SELECT that may ask for more in the same round trip; use_of adds them up."""
    artifacts = (
        select(func.coalesce(func.sum(Artifact.size), 0))
        .select_from(Artifact)
        .join(Job, Job.id == Artifact.job_id)
        .where(Job.user_id == user_id)
        .scalar_subquery()
    )
    weights = (
        select(func.coalesce(func.sum(WeightsFile.size), 0)).where(WeightsFile.user_id == user_id).scalar_subquery()
    )
    return artifacts, weights


def use_of(settings: Settings, artifacts: int | None, weights: int | None) -> StorageUse:
    return StorageUse(used=int(artifacts or 0) + int(weights or 0), quota=quota_bytes(settings))


def usage(session: Session, settings: Settings, user_id: int, *, lock: bool = False) -> StorageUse:
    """The user's disk usage in one query (usage_columns). lock=True on PostgreSQL locks the
    user's row for the rest of the transaction, so that concurrent uploads of one user count
    in turn."""
    if lock:
        lock_user(session, user_id)
    row = session.execute(select(*usage_columns(user_id))).one()
    return use_of(settings, row[0], row[1])


def lock_user(session: Session, user_id: int) -> None:
    """On PostgreSQL, lock the user's row until the transaction ends, so that one user's
    submissions and uploads are counted against their limits in turn; nothing on SQLite
    (one writer at a time anyway)."""
    if dialect_name(session) == "postgresql":
        session.execute(select(User.id).where(User.id == user_id).with_for_update())


def check_upload(session: Session, settings: Settings, user_id: int, size: int) -> None:
    """Raise the 507 when `size` more bytes would take the user past their quota (the user's
    row locked on PostgreSQL until the caller's commit)."""
    use = usage(session, settings, user_id, lock=True)
    if use.used + size > use.quota:
        raise use.upload_refused(size)
