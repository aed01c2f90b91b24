"""Sweeps: create (all jobs in one transaction, idempotent), read, list, cancel, report, delete."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cttv2_engine.presets import DEFAULT_LR
from cttv2_engine.spec import JobSpec, TrainingSpec, canonical_hash
from service.core.config import get_settings
from service.core.errors import Conflict, Invalid, NotFound, field_error
from service.core.pagination import PageParams, paginate
from service.jobs import deletion, lifecycle, limits
from service.jobs import service as jobs
from service.jobs.models import ACTIVE_STATUSES, Job, JobStatus
from service.sweeps import plan
from service.sweeps.models import Sweep
from service.sweeps.report import JobOutcome, build_report
from service.sweeps.schemas import PARTIAL, SweepCreate
from service.users.models import User


def get(session: Session, user: User, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.user_id != user.id:  # another user's sweep looks missing
        raise NotFound(f"sweep {sweep_id} not found")
    return sweep


def create(session: Session, user: User, body: SweepCreate, idempotency_key: str | None) -> tuple[Sweep, bool]:
    """Validate every job of the sweep, then create the sweep and all its jobs in one
    transaction and enqueue them. Returns (sweep, replayed) like jobs.submit."""
    request_hash = canonical_hash(_hashed(body))
    if idempotency_key:
        earlier = _by_key(session, user, idempotency_key, request_hash)
        if earlier is not None:
            return earlier, True

    jobs.check_priority(user, body.base.priority, "base.priority")  # every job of the sweep gets it
    axes = plan.check_axes(body.grid, body.axes)
    seeds = body.seeds if body.seeds is not None else [body.base.training.seed]
    plan.check_seeds(seeds)
    plan.check_crossed(body.grid, axes, body.mode, body.crossed)
    plan.check_reference_only(body.grid, axes, body.mode, body.reference_only)
    plan.check_baseline_training(body.baseline_training)
    _check_size(body, axes, seeds)
    if body.base.resume_from is not None:
        raise field_error(
            "base.resume_from", "not allowed in a sweep", summary="base.resume_from: a sweep starts every job afresh"
        )
    base, device_spec_id = jobs.resolve_device(session, user, body.base)
    planned = plan.plan(
        base,
        body.grid,
        axes,
        seeds,
        body.baseline,
        label=body.name or body.base.name or "sweep",
        mode=body.mode,
        baseline_training=body.baseline_training,
        reference_only=body.reference_only,
        crossed=body.crossed,
    )
    specs = [_validate(session, user, job, body.baseline_training) for job in planned]
    limits.check_active_jobs(session, user, len(specs))  # a sweep counts every job it queues

    sweep = Sweep(
        user_id=user.id,
        name=body.name,
        request=_stored_request(body, axes, seeds),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(sweep)
    try:
        session.flush()
        rows = [
            jobs.new_job(
                user,
                spec,
                # The stored device spec it came from, unless the grid replaced the device.
                device_spec_id=None if job.is_baseline or "device" in job.grid else device_spec_id,
                sweep_id=sweep.id,
                sweep_point={"grid": job.grid, "seed": job.seed},
                is_baseline=job.is_baseline,
                priority=body.base.priority,
                tags=body.base.tags,  # as the priority: every job gets the base's tags and notes
                notes=body.base.notes or None,
            )
            for job, spec in zip(planned, specs)
        ]
        session.add_all(rows)
        session.flush()
        lifecycle.submitted(session, [row.id for row in rows])
        session.commit()
    except IntegrityError:
        session.rollback()  # a concurrent request with the same key won: answer as a replay
        if idempotency_key:
            earlier = _by_key(session, user, idempotency_key, request_hash)
            if earlier is not None:
                return earlier, True
        raise
    lifecycle.publish([row.id for row in rows])
    return sweep, False


def _hashed(body: SweepCreate) -> dict[str, Any]:
    """The body as hashed for Idempotency-Key: fields added later are left out while at their
    defaults, so a key sent again with the same body matches across versions."""
    data = body.model_dump(mode="json")
    for field, default in (("mode", "grid"), ("baseline_training", None), ("reference_only", []), ("crossed", [])):
        if data.get(field) == default:
            data.pop(field, None)
    data["base"] = jobs.hashed_request(data["base"])
    return data


def _by_key(session: Session, user: User, key: str, request_hash: str) -> Sweep | None:
    earlier = session.scalar(select(Sweep).where(Sweep.user_id == user.id, Sweep.idempotency_key == key))
    if earlier is not None and earlier.request_hash != request_hash:
        raise Conflict("Idempotency-Key was already used with a different request body", code="idempotency_key_reused")
    return earlier


def _check_size(body: SweepCreate, axes: list[str], seeds: list[int]) -> None:
    n_grid, n_baseline = plan.count_jobs(
        body.grid, axes, len(seeds), body.baseline, body.mode, body.reference_only, body.crossed
    )
    cap = get_settings().max_sweep_jobs
    if n_grid + n_baseline > cap:
        detail = f"{_count(n_grid // len(seeds), 'grid point')} x {_count(len(seeds), 'seed')}"
        if n_baseline:
            detail += f" + {_count(n_baseline, 'baseline job')}"
        message = (
            f"this sweep would create {n_grid + n_baseline} jobs ({detail}); the limit is "
            f"{cap} (setting CTTV2_MAX_SWEEP_JOBS)"
        )
        raise field_error("grid", message, summary=message, code="sweep_too_large")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _validate(
    session: Session, user: User, job: plan.PlannedJob, baseline_training: dict[str, Any] | None = None
) -> JobSpec:
    """The jobs' own checks on one planned spec; a failure names the grid axis (and value),
    the baseline_training key or the base field to blame, and the point where it failed."""
    try:
        return jobs.validate_spec(session, user, job.spec)
    except Invalid as exc:
        first = (exc.fields or [{"field": "body", "message": exc.message}])[0]
        key = first["field"].removeprefix("training.").split(".")[0]
        if job.is_baseline and first["field"].startswith("training.") and key in (baseline_training or {}):
            field, message = f"baseline_training.{key}", first["message"]
        else:
            field, message = _blame(first["field"], first["message"], job)
        where = ("digital baseline" if job.is_baseline else "grid point") + f" {json.dumps(job.grid)}"
        message = f"{message} (at {where}, seed {job.seed})" if job.grid or job.is_baseline else message
        raise field_error(field, message) from None


def _blame(field: str, message: str, job: plan.PlannedJob) -> tuple[str, str]:
    if field == "body":  # a check across fields of the whole spec
        return ("grid" if job.grid else "base"), message
    owner = max((a for a in job.grid if field == a or field.startswith(a + ".")), key=len, default=None)
    if owner is None:  # an object-level check of a section whose field the grid sets
        owner = next((a for a in job.grid if a.startswith(field + ".")), None)
    if owner is None:
        return f"base.{field}", message
    value = job.grid[owner]
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"grid.{owner}", f"value {shown}: {message}"


def _stored_request(body: SweepCreate, axes: list[str], seeds: list[int]) -> dict[str, Any]:
    """The request as sent (re-POSTing it makes the same study), with the axis order and the
    seeds made explicit: PostgreSQL's JSONB does not keep the grid's key order."""
    data = body.model_dump(mode="json", exclude_unset=True)
    data.update(grid=body.grid, axes=axes, seeds=seeds, baseline=body.baseline, mode=body.mode)
    return data


# -- reading --------------------------------------------------------------------------------------
def counts(session: Session, sweep_ids: list[int]) -> dict[int, dict[str, int]]:
    out = {sid: {status.value: 0 for status in JobStatus} for sid in sweep_ids}
    if sweep_ids:
        rows = session.execute(
            select(Job.sweep_id, Job.status, func.count())
            .where(Job.sweep_id.in_(sweep_ids))
            .group_by(Job.sweep_id, Job.status)
        )
        for sid, status, n in rows:
            out[sid][status] = n  # type: ignore[index]  # the query selects sweep_id IN sweep_ids
    return out


def derive_status(c: dict[str, int]) -> str:
    """queued (nothing started), running (some started, some left), then, once every job is
    done: succeeded (all), partial (some), cancelled or failed (none succeeded)."""
    total = sum(c.values())
    queued, succeeded = c[JobStatus.QUEUED], c[JobStatus.SUCCEEDED]
    if c[JobStatus.RUNNING] or (queued and queued < total):
        return JobStatus.RUNNING
    if queued:
        return JobStatus.QUEUED
    if succeeded == total:
        return JobStatus.SUCCEEDED
    if succeeded:
        return PARTIAL
    return JobStatus.CANCELLED if c[JobStatus.CANCELLED] else JobStatus.FAILED


def list_page(session: Session, user: User, params: PageParams):
    return paginate(session, select(Sweep).where(Sweep.user_id == user.id), Sweep.id, params)


def jobs_page(session: Session, user: User, sweep_id: int, params: PageParams, status: str | None):
    sweep = get(session, user, sweep_id)
    stmt = select(Job).where(Job.user_id == user.id, Job.sweep_id == sweep.id)
    if status:
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, Job.id, params)


def cancel(session: Session, user: User, sweep_id: int) -> Sweep:
    """Cancel every job not yet done, the queued ones first (so that no worker starts one
    while the running ones are being stopped)."""
    sweep = get(session, user, sweep_id)
    left = session.execute(
        select(Job.id, Job.status).where(Job.sweep_id == sweep.id, Job.status.in_(ACTIVE_STATUSES))
    ).all()
    for job_id, _ in sorted(left, key=lambda r: (r.status != JobStatus.QUEUED, r.id)):
        lifecycle.cancel(session, job_id)
        session.commit()  # one job at a time, as a single cancel does
    return sweep


def report(session: Session, user: User, sweep_id: int) -> tuple[dict[str, Any], str]:
    """The report (see report.build_report) and the base's algorithm (for the figure)."""
    sweep = get(session, user, sweep_id)
    rows = session.execute(
        select(Job.status, Job.is_baseline, Job.sweep_point, Job.result).where(Job.sweep_id == sweep.id)
    ).all()
    # How the baselines trained: one spec per baseline point is enough (only the seed differs).
    training: dict[str, dict[str, Any]] = {}
    for point, spec in session.execute(
        select(Job.sweep_point, Job.spec).where(Job.sweep_id == sweep.id, Job.is_baseline.is_(True))
    ):
        training.setdefault(_grid_key(point), baseline_training(spec))
    outcomes = [
        JobOutcome(
            status=status,
            is_baseline=is_baseline,
            grid=(point or {}).get("grid", {}),
            test_error=_test_error(result),
            training=training.get(_grid_key(point)) if is_baseline else None,
        )
        for status, is_baseline, point, result in rows
    ]
    req = sweep.request
    data = build_report(
        sweep_id=sweep.id,
        name=sweep.name,
        axes=req["axes"],
        grid=req["grid"],
        baseline=req["baseline"],
        jobs=outcomes,
        mode=req.get("mode", "grid"),
        reference_only=req.get("reference_only", []),
        crossed=req.get("crossed", []),
    )
    base_algorithm = req["base"].get("algorithm") or JobSpec.model_fields["algorithm"].default
    return data, base_algorithm


def baseline_training(spec: dict[str, Any] | None) -> dict[str, Any]:
    """{"lr", "epochs"} a baseline job trained with (an unset lr is the fp default, as in the
    engine's build)."""
    training = (spec or {}).get("training") or {}
    lr = training.get("lr") or DEFAULT_LR.get(plan.BASELINE_ALGORITHM)
    epochs = training.get("epochs", TrainingSpec.model_fields["epochs"].default)
    return {"lr": lr, "epochs": epochs}


def _grid_key(point: dict[str, Any] | None) -> str:
    return plan.value_key((point or {}).get("grid", {}))


def _test_error(result: dict[str, Any] | None) -> float | None:
    value = (result or {}).get("test_error")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def delete(session: Session, user: User, sweep_id: int) -> None:
    """Delete a sweep and all its jobs, rows and files, in one transaction (see
    service.jobs.deletion); a 409 while any of its jobs is queued or running."""
    sweep = get(session, user, sweep_id)
    rows = list(session.scalars(select(Job).where(Job.sweep_id == sweep.id).order_by(Job.id)))
    what = f"sweep {sweep_id}"
    deletion.check_deletable(session, rows, what)
    session.execute(sql_delete(Sweep).where(Sweep.id == sweep.id))
    deletion.delete_jobs(session, get_settings().artifact_dir, rows, what)  # commits both
