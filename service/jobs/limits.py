"""Limits from settings on what one user may ask for: a job spec's size, how many jobs
may wait or run at once, and their disk. A job spec over a limit is a 422 naming the field
(code limit_exceeded); too many active jobs is a 429 with Retry-After; a used-up storage quota
a 507 (storage_quota_exceeded, service.users.storage)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cttv2_engine.semantics import KNOWN_CLASSES
from cttv2_engine.spec import JobSpec
from service.core.config import Settings, get_settings
from service.core.errors import APIError, RateLimited, field_error
from service.jobs.models import ACTIVE_STATUSES, Job
from service.users import storage
from service.users.models import User

# Training images per class when train_per_class is not given (the full training split).
TRAIN_PER_CLASS = {"digits": 140, "cifar10": 5000, "cifar100": 500}
RETRY_AFTER_S = 30


def _over(field: str, message: str) -> APIError:
    return field_error(field, message, code="limit_exceeded")


def check_spec(spec: JobSpec, settings: Settings | None = None) -> None:
    """Raise Invalid(limit_exceeded) when the spec asks for more than this server allows."""
    settings = settings or get_settings()
    if spec.training.epochs > settings.max_epochs:
        raise _over(
            "training.epochs",
            f"at most {settings.max_epochs} epochs on this server (CTTV2_MAX_EPOCHS); got {spec.training.epochs}",
        )
    if spec.model.input_size > settings.max_img_size:
        raise _over(
            "model.img_size",
            f"at most {settings.max_img_size} pixels on this server (CTTV2_MAX_IMG_SIZE); got {spec.model.input_size}",
        )
    samples = train_samples(spec)
    if samples is not None and samples > settings.max_train_samples:
        field = "data.train_per_class" if spec.data.train_per_class else "data"
        raise _over(
            field,
            f"{samples} training images (per class x classes); at most "
            f"{settings.max_train_samples} on this server (CTTV2_MAX_TRAIN_SAMPLES)",
        )


def train_samples(spec: JobSpec) -> int | None:
    """Upper bound on the training images a spec selects, or None when only the files know
    (an imagefolder without train_per_class: its size is what the operator put there)."""
    data = spec.data
    known = KNOWN_CLASSES.get(data.dataset)
    if data.classes is not None:
        n_classes: int | None = len(data.classes)
    elif data.num_classes is not None:
        n_classes = data.num_classes
    else:
        n_classes = len(known) if known else None
    per_class = data.train_per_class or TRAIN_PER_CLASS.get(data.dataset)
    if n_classes is None or per_class is None:
        return None
    return n_classes * per_class


def check_active_jobs(
    session: Session, user: User, adding: int = 1, settings: Settings | None = None, *, locked: bool = False
) -> None:
    """Raise RateLimited (429, Retry-After) when `adding` more jobs would take the user past
    max_active_jobs_per_user queued + running jobs, and StorageQuotaExceeded (507) while the
    user's storage quota is used up (new jobs would only add files; every submission, rerun
    and sweep comes through here). On PostgreSQL the user's row is locked for the rest of the
    transaction (locked=True: the caller has locked it, storage.lock_user), so concurrent submissions
    of one user count in turn. The count and the storage sums are one query."""
    settings = settings or get_settings()
    if not locked:
        storage.lock_user(session, user.id)
    active_jobs = (
        select(func.count())
        .select_from(Job)
        .where(Job.user_id == user.id, Job.status.in_(ACTIVE_STATUSES))
        .scalar_subquery()
    )
    active, artifacts, weights = session.execute(select(active_jobs, *storage.usage_columns(user.id))).one()
    active = active or 0
    if active + adding > settings.max_active_jobs_per_user:
        raise RateLimited(
            f"you have {active} queued or running jobs; at most {settings.max_active_jobs_per_user} "
            f"at a time on this server (adding {adding}); wait for some to finish",
            code="too_many_active_jobs",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    use = storage.use_of(settings, artifacts, weights)
    if use.full:
        raise use.job_refused()
