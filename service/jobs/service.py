"""Jobs: submit (idempotent), read, list (with filters), edit tags and notes, cancel, delete
(service.jobs.deletion)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import Connection, Row, bindparam, func, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cttv2_engine import SpecError, validate_spec_semantics
from cttv2_engine.spec import DeviceSpec, JobSpec, canonical_hash
from service.core.config import get_settings
from service.core.db import dialect_name
from service.core.errors import Conflict, Forbidden, NotFound, field_error, invalid_from
from service.core.pagination import PageParams, paginate
from service.device_specs import service as device_specs
from service.jobs import deletion, lifecycle, limits, references
from service.jobs.models import Job, JobPriority, JobTag
from service.jobs.schemas import DeviceSpecRef, JobCreate, JobFilters, JobOut, JobUpdate
from service.users import storage
from service.users.models import User
from service.users.service import CALLER_BY_DIGEST, check_caller

log = logging.getLogger("cttv2.jobs")


def get(session: Session, user: User, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.user_id != user.id:  # another user's job looks missing
        raise NotFound(f"job {job_id} not found")
    return job


# What JobOut.from_row reads: the API's reads select these columns as plain rows (no ORM
# objects to build, the hot routes' largest cost after the round trips).
OUT_COLUMNS = tuple(
    getattr(Job, name) for name in (*(n for n in JobOut.model_fields if n != "error"), "error", "error_code")
)
_CALLERS_JOB = CALLER_BY_DIGEST.add_columns(*OUT_COLUMNS).outerjoin(
    Job, (Job.id == bindparam("job_id")) & (Job.user_id == User.id)
)


def get_row(conn: Connection, digest: str, job_id: int) -> Row:
    """The job as a row of OUT_COLUMNS, for the caller whose token hashes to `digest`, checked
    in the same statement: one round trip for the token and the job (Unauthorized as
    users.service.authenticate; another user's job is a 404, as in get)."""
    row = check_caller(conn.execute(_CALLERS_JOB, {"digest": digest, "job_id": job_id}).first())
    if row.id is None:
        raise NotFound(f"job {job_id} not found")
    return row


def resolve_spec(session: Session, user: User, body: JobCreate) -> tuple[JobSpec, int | None]:
    """The JobSpec to snapshot: a device given by id is copied inline; the checks across fields
    and the engine's torch-free checks (class subsets, limits, references) run here, before
    anything is queued. The request's fields were validated with the request: not again."""
    device, device_spec_id = body.device, None
    if isinstance(body.device, DeviceSpecRef):
        record = device_specs.get(session, user, body.device.id)
        device, device_spec_id = _stored_device(record.spec), record.id
    try:
        spec = JobSpec.from_fields(body, device=device)
    except ValueError as exc:  # a check across fields: the spec as a whole is to blame
        raise field_error("body", str(exc)) from None
    check_before_queue(session, user, spec)
    if body.resume_from is not None:
        references.check_resume_from(session, user, body.resume_from, spec)
    return spec, device_spec_id


def resolve_device(session: Session, user: User, body: JobCreate) -> tuple[dict, int | None]:
    """The request as a JobSpec dict (without resume_from), a device given by id copied inline:
    a sweep's base, which its grid edits as a dict; each planned job then goes through
    validate_spec once."""
    data = body.model_dump(mode="json", exclude=set(JobCreate.NOT_SPEC))
    device_spec_id = None
    if isinstance(body.device, DeviceSpecRef):
        record = device_specs.get(session, user, body.device.id)
        data["device"] = record.spec
        device_spec_id = record.id
    return data, device_spec_id


def _stored_device(data: dict) -> DeviceSpec:
    # Checked when stored; checked again as the rules may have changed since.
    try:
        return DeviceSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, prefix="device") from None


def validate_spec(session: Session, user: User, data: dict) -> JobSpec:
    """Every check a job spec dict gets before it is queued (sweeps run it on each of their
    jobs). Raises Invalid naming the field (relative to the spec), or NotFound for another's job."""
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
    check_before_queue(session, user, spec)
    return spec


def check_priority(user: User, priority: str, field: str = "priority") -> None:
    """Only admins may submit high-priority jobs (they go before everyone's normal jobs):
    anyone else gets a 403 naming the field."""
    if priority == JobPriority.HIGH and not user.is_admin:
        raise field_error(
            field,
            "only admins may submit high-priority jobs; use normal (the default) or low",
            error=Forbidden,
            code="forbidden",
        )


def hashed_request(data: dict) -> dict:
    """A job request as hashed for Idempotency-Key: fields added later are left out while at
    their defaults (priority normal, no tags, no notes, unset algorithm_options.in_chop_random,
    forget_buffer, momentum), so a key sent again with the same body matches the hash of a
    version without them."""
    for field, default in (("priority", JobPriority.NORMAL), ("tags", []), ("notes", None)):
        if field in data and data[field] == default:
            data.pop(field)
    options = data.get("algorithm_options")
    if isinstance(options, dict):  # the chopper and buffer options, added later, while unset
        for field in ("in_chop_random", "forget_buffer", "momentum"):
            if field in options and options[field] is None:
                options.pop(field)
    return data


def check_before_queue(session: Session, user: User, spec: JobSpec) -> None:
    """The checks a validated JobSpec gets before it is queued."""
    check_semantics(spec)
    references.check_pretrained(session, user, spec)


def check_semantics(spec: JobSpec) -> None:
    """The engine's torch-free cross-field checks (class subsets), then
    this server's limits (epochs, image size, dataset size)."""
    try:
        validate_spec_semantics(spec)
    except SpecError as exc:
        field = exc.field or "body"
        message = Exception.__str__(exc)
        raise field_error(field, message) from None
    limits.check_spec(spec)


def submit(
    session: Session,
    user: User,
    body: JobCreate,
    idempotency_key: str | None,
    *,
    rerun_of: int | None = None,
    device_spec_id: int | None = None,
) -> tuple[Job, bool]:
    """Create and enqueue a job. Returns (job, replayed): replayed is True when the same
    Idempotency-Key and body were seen before and the earlier job is returned."""
    idempotency_key = idempotency_key or None  # an empty key is no key (it is stored as NULL)
    request = hashed_request(body.model_dump(mode="json"))
    if rerun_of is not None:
        request["rerun_of"] = rerun_of  # a rerun and a plain submit never replay each other
        request.pop("tags", None)  # copied from the earlier job, whose tags may be edited meanwhile
    request_hash = canonical_hash(request)
    locked = dialect_name(session) == "postgresql"
    if locked:
        earlier = _lock_and_find(session, user, idempotency_key, request_hash)
    else:
        earlier = _by_key(session, user, idempotency_key, request_hash) if idempotency_key else None
    if earlier is not None:
        return earlier, True
    check_priority(user, body.priority)
    spec, resolved_device_id = resolve_spec(session, user, body)
    limits.check_active_jobs(session, user, 1, locked=locked)
    job = new_job(
        user,
        spec,
        device_spec_id=resolved_device_id or device_spec_id,
        resume_from=body.resume_from.model_dump() if body.resume_from else None,
        priority=body.priority,
        tags=body.tags,
        notes=body.notes or None,
        rerun_of=rerun_of,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(job)
    try:
        session.flush()
        lifecycle.submitted(session, [job.id])
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


def new_job(user: User, spec: JobSpec, *, tags: Sequence[str] = (), **columns) -> Job:
    """A Job row for a validated spec, with its tags (validated: unique), not yet added to
    the session; its job_tags rows are written with it."""
    stored = spec.model_dump(mode="json")  # the hash is of exactly what is stored
    return Job(
        user_id=user.id,
        name=spec.name,
        spec=stored,
        spec_hash=canonical_hash(stored),
        algorithm=spec.algorithm,
        tags=list(tags) or None,
        tag_rows=[JobTag(tag=tag, user_id=user.id) for tag in tags],
        **columns,
    )


def _by_key(session: Session, user: User, key: str, request_hash: str) -> Job | None:
    earlier = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == key))
    return _same_request(earlier, request_hash)


def _lock_and_find(session: Session, user: User, key: str | None, request_hash: str) -> Job | None:
    """PostgreSQL: the user's row lock of limits.check_active_jobs, taken first, and the job
    sent earlier with `key`, in one round trip. The join reads the statement's snapshot, from
    before a wait on the lock: a concurrent twin that commits meanwhile is found by the
    unique index (IntegrityError in submit), as before."""
    if not key:
        storage.lock_user(session, user.id)
        return None
    row = session.execute(
        select(User.id, Job)
        .select_from(User)
        .outerjoin(Job, (Job.user_id == User.id) & (Job.idempotency_key == key))
        .where(User.id == user.id)
        .with_for_update(of=User)
    ).one()
    return _same_request(row[1], request_hash)


def _same_request(earlier: Job | None, request_hash: str) -> Job | None:
    if earlier is not None and earlier.request_hash != request_hash:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return earlier


def enqueue(session: Session, job: Job) -> None:
    """Publish the committed job (lifecycle.publish_submitted); unless that also gave back
    the stamped row, read it again: a worker may have claimed it already."""
    if not lifecycle.publish_submitted(session, job):
        session.refresh(job)


def list_page(
    db: Session | Connection, user_id: int, params: PageParams, filters: JobFilters | None = None, *, rows: bool = False
) -> tuple[list, str | None]:
    """A page of the user's jobs (rows=True: rows of OUT_COLUMNS, and `db` may be a Connection),
    newest first, narrowed by `filters` (all of them: AND). Each filter reads off an index: a
    tag (user_id, tag, job_id) of job_tags, the page then in that index's order; a name prefix
    (user_id, name); a sweep (sweep_id, id); the rest (user_id, status, id), (user_id, id) or
    (user_id, created_at)."""
    f = filters or JobFilters()
    stmt = (select(*OUT_COLUMNS) if rows else select(Job)).where(Job.user_id == user_id)
    order = Job.id
    if f.tag is not None:
        stmt = stmt.join(JobTag, JobTag.job_id == Job.id).where(JobTag.user_id == user_id, JobTag.tag == f.tag)
        order = JobTag.job_id  # the same ids: the keyset runs along the tag's index
    if f.status is not None:
        stmt = stmt.where(Job.status == f.status)
    if f.name is not None:
        stmt = stmt.where(Job.name.like(like_prefix(f.name), escape="/"))
        if dialect_name(db) == "sqlite":  # SQLite's LIKE ignores the case of ASCII letters
            stmt = stmt.where(func.substr(Job.name, 1, len(f.name)) == f.name)
    if f.sweep is not None:
        stmt = stmt.where(Job.sweep_id == f.sweep)
    if f.algorithm is not None:
        stmt = stmt.where(Job.algorithm == f.algorithm)
    if f.created_after is not None:
        stmt = stmt.where(Job.created_at >= f.created_after)
    if f.created_before is not None:
        stmt = stmt.where(Job.created_at < f.created_before)
    return paginate(db, stmt, order, params)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character /, quoted the same on every backend) matching the
    strings that start with `prefix`."""
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def update_job(session: Session, user: User, job_id: int, body: JobUpdate) -> Job:
    """PATCH: set the tags and/or notes the body gives (any status; another user's job is a
    404). The job's updated_at is left alone: it tracks the run (the reconciler reads it), not
    the user's labels."""
    job = get(session, user, job_id)
    given = body.model_fields_set
    values: dict = {}
    if "tags" in given:
        values["tags"] = list(body.tags or []) or None
    if "notes" in given:
        values["notes"] = body.notes or None
    if not values:
        return job
    # The row is written first: concurrent edits of one job's tags take turns from here.
    session.execute(update(Job).where(Job.id == job.id).values(**values, updated_at=Job.updated_at))
    if "tags" in given:
        session.execute(sql_delete(JobTag).where(JobTag.job_id == job.id))
        session.add_all(JobTag(job_id=job.id, user_id=job.user_id, tag=tag) for tag in values["tags"] or [])
    session.commit()
    session.refresh(job)
    return job


def cancel(session: Session, user: User, job_id: int) -> Job:
    """Queued: cancelled now. Running: flagged; the worker stops at the next batch boundary."""
    job = get(session, user, job_id)
    lifecycle.cancel(session, job.id)
    session.commit()
    session.refresh(job)
    return job


def rerun(session: Session, user: User, job_id: int, idempotency_key: str | None) -> tuple[Job, bool]:
    """A new job with the same spec (and the same resume point, priority and tags) as job_id;
    its notes are not copied (they are about that run). The spec is the stored snapshot, so a
    device spec deleted since does not matter. A high priority is kept only while the user is
    an admin (else normal)."""
    earlier = get(session, user, job_id)
    body = _again(earlier, user, earlier.resume_from)
    return submit(session, user, body, idempotency_key, rerun_of=earlier.id, device_spec_id=earlier.device_spec_id)


def resume(session: Session, user: User, job_id: int) -> Job:
    """A new job with job_id's spec that continues its latest checkpoint (the dashboard's
    "resume from this"); priority and tags as for rerun."""
    earlier = get(session, user, job_id)
    body = _again(earlier, user, {"job": earlier.id, "checkpoint": "latest"})
    job, _ = submit(session, user, body, None, device_spec_id=earlier.device_spec_id)
    return job


def _again(earlier: Job, user: User, resume_from: dict | None) -> JobCreate:
    """The request that runs `earlier` again, from `resume_from`."""
    data = dict(earlier.spec)
    if resume_from:
        data["resume_from"] = resume_from
    priority = earlier.priority
    if priority == JobPriority.HIGH and not user.is_admin:
        priority = JobPriority.NORMAL
    data["priority"] = priority
    data["tags"] = list(earlier.tags or [])
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:  # a spec stored by an older version that no longer validates
        raise invalid_from(exc) from None


def delete(session: Session, user: User, job_id: int) -> None:
    """Delete a finished job: its rows and its files (service.jobs.deletion). A queued or
    running job is a 409 (cancel it first); another user's job a 404."""
    job = get(session, user, job_id)
    deletion.delete_jobs(session, get_settings().artifact_dir, [job], f"job {job_id}")
