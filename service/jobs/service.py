"""Jobs: submit (idempotent), read, list, cancel."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cttv2_engine import SpecError, validate_spec_semantics
from cttv2_engine.spec import JobSpec, canonical_hash
from service.core import queue
from service.core.db import utcnow
from service.core.errors import Conflict, Invalid, NotFound, invalid_from
from service.core.pagination import PageParams, paginate
from service.device_specs import service as device_specs
from service.jobs import limits, references
from service.jobs.events import add_event
from service.jobs.models import Job
from service.jobs.schemas import DeviceSpecRef, JobCreate
from service.users.models import User

log = logging.getLogger("cttv2.jobs")


def get(session: Session, user: User, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.user_id != user.id:  # another user's job looks missing
        raise NotFound(f"job {job_id} not found")
    return job


def resolve_spec(session: Session, user: User, body: JobCreate) -> tuple[JobSpec, int | None]:
    """The JobSpec to snapshot: a device given by id is copied inline; the engine's torch-free
    checks (architecture and image size, knob compatibility) run here, before anything is queued."""
    data, device_spec_id = resolve_device(session, user, body)
    spec = validate_spec(session, user, data)
    if body.resume_from is not None:
        references.check_resume_from(session, user, body.resume_from, spec)
    return spec, device_spec_id


def resolve_device(session: Session, user: User, body: JobCreate) -> tuple[dict, int | None]:
    """The request as a JobSpec dict (without resume_from), a device given by id copied inline."""
    data = body.model_dump(mode="json", exclude={"resume_from"})
    device_spec_id = None
    if isinstance(body.device, DeviceSpecRef):
        record = device_specs.get(session, user, body.device.id)
        data["device"] = record.spec
        device_spec_id = record.id
    return data, device_spec_id


def validate_spec(session: Session, user: User, data: dict) -> JobSpec:
    """Every check a job spec gets before it is queued (sweeps run it on each of their jobs).
    Raises Invalid naming the field (relative to the spec), or NotFound for another's job."""
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    check_semantics(spec)
    references.check_pretrained(session, user, spec)
    return spec


def check_semantics(spec: JobSpec) -> None:
    """The engine's torch-free cross-field checks (arch vs image size, class subsets), then
    this server's limits (epochs, image size, dataset size)."""
    try:
        validate_spec_semantics(spec)
    except SpecError as exc:
        field = exc.field or "body"
        message = Exception.__str__(exc)
        raise Invalid(f"{field}: {message}", fields=[{"field": field, "message": message}]) from None
    limits.check_spec(spec)


def submit(
    session: Session, user: User, body: JobCreate, idempotency_key: str | None,
    *, rerun_of: int | None = None, device_spec_id: int | None = None,
) -> tuple[Job, bool]:
    """Create and enqueue a job. Returns (job, replayed): replayed is True when the same
    Idempotency-Key and body were seen before and the earlier job is returned."""
    idempotency_key = idempotency_key or None  # an empty key is no key (it is stored as NULL)
    request = body.model_dump(mode="json")
    if rerun_of is not None:
        request["rerun_of"] = rerun_of  # a rerun and a plain submit never replay each other
    request_hash = canonical_hash(request)
    if idempotency_key:
        earlier = _by_key(session, user, idempotency_key, request_hash)
        if earlier is not None:
            return earlier, True
    spec, resolved_device_id = resolve_spec(session, user, body)
    limits.check_active_jobs(session, user, 1)
    job = new_job(
        user,
        spec,
        device_spec_id=resolved_device_id or device_spec_id,
        resume_from=body.resume_from.model_dump() if body.resume_from else None,
        rerun_of=rerun_of,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(job)
    try:
        session.flush()
        add_event(session, job.id, "status", {"status": "queued"})
        session.commit()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer as a replay.
        session.rollback()
        if idempotency_key:
            earlier = _by_key(session, user, idempotency_key, request_hash)
            if earlier is not None:
                return earlier, True
        raise
    enqueue(session, job)
    return job, False


def new_job(user: User, spec: JobSpec, **columns) -> Job:
    """A Job row for a validated spec (not yet added to the session)."""
    return Job(
        user_id=user.id,
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        spec_hash=spec.spec_hash(),
        algorithm=spec.algorithm,
        **columns,
    )


def _by_key(session: Session, user: User, key: str, request_hash: str) -> Job | None:
    earlier = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == key))
    if earlier is not None and earlier.request_hash != request_hash:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return earlier


def enqueue(session: Session, job: Job) -> None:
    """Publish the job id; on success stamp enqueued_at. A failure leaves the job queued and
    unstamped, and the workers' reconciler publishes it later: the job is never lost."""
    enqueue_many(session, [job.id])
    session.refresh(job)


def enqueue_many(session: Session, job_ids: list[int]) -> int:
    """enqueue() for many jobs, stamped in one UPDATE. Stops at the first failure: the broker
    is down, and the reconciler publishes the rest. Returns how many were sent."""
    sent: list[int] = []
    for job_id in job_ids:
        if not queue.try_send(queue.RUN_JOB_TASK, job_id):
            break
        sent.append(job_id)
    if sent:
        session.execute(update(Job).where(Job.id.in_(sent)).values(enqueued_at=utcnow()))
        session.commit()
    return len(sent)


def list_page(session: Session, user: User, params: PageParams, status: str | None):
    stmt = select(Job).where(Job.user_id == user.id)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job.id, params)


def cancel(session: Session, user: User, job_id: int) -> Job:
    """Queued: cancelled now. Running: flagged; the worker stops at the next batch boundary."""
    job = get(session, user, job_id)
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now, updated_at=now)
    ).rowcount
    if done:
        add_event(session, job.id, "status", {"status": "cancelled"})
    else:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running")
            .values(cancel_requested=True, updated_at=now)
        )
    session.commit()
    session.refresh(job)
    return job


def rerun(session: Session, user: User, job_id: int, idempotency_key: str | None) -> tuple[Job, bool]:
    """A new job with the same spec (and the same resume point) as job_id. The spec is the
    stored snapshot, so a device spec deleted since does not matter."""
    earlier = get(session, user, job_id)
    data = dict(earlier.spec)
    if earlier.resume_from:
        data["resume_from"] = earlier.resume_from
    try:
        body = JobCreate.model_validate(data)
    except ValidationError as exc:  # a spec stored by an older version that no longer validates
        raise invalid_from(exc) from None
    return submit(session, user, body, idempotency_key, rerun_of=earlier.id,
                  device_spec_id=earlier.device_spec_id)
