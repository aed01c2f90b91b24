"""The dashboard: server-rendered pages under /ui over the same service layer as the API.

Every page reads through the domain services (service.jobs.service, service.sweeps.service,
...) with the signed-in user, so isolation is the API's: another user's job is a 404 here too.
Live parts (a job's status, progress, curves and log; a sweep's table and figure) are updated
by service/ui/static/app.js from the endpoints below that end in /events, /logs and /state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter, Depends, Form, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import func, select

from service.artifacts import service as artifacts
from service.core.db import utcnow
from service.core.deps import ID, SessionDep, SettingsDep
from service.core.errors import Forbidden, Unauthorized, invalid_from
from service.core.pagination import PageParams
from service.device_specs import service as device_specs
from service.jobs import results, stream
from service.jobs import service as jobs
from service.jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job, JobEvent, JobLogLine, JobStatus
from service.jobs.schemas import JobFilters
from service.sweeps import plots
from service.sweeps import service as sweeps
from service.sweeps.plan import baseline_axes, point_key
from service.ui import auth
from service.ui.render import PREFIX, UiRoute, page
from service.users.models import User

router = APIRouter(prefix=PREFIX, route_class=UiRoute, include_in_schema=False)

LOG_TAIL = 200
STATUSES = [s.value for s in JobStatus]


def current_viewer(request: Request, session: SessionDep, settings: SettingsDep) -> auth.Viewer:
    return auth.viewer(session, settings, request.cookies.get(auth.COOKIE))


ViewerDep = Annotated[auth.Viewer, Depends(current_viewer)]
CsrfField = Annotated[str | None, Form(max_length=200)]


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard (never another site: no '//host' or scheme)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/jobs"


def next_page_url(page_name: str, cursor: str | None, **filters: str | None) -> str | None:
    """The link to a list page's next page (None on the last one), keeping its filters."""
    if not cursor:
        return None
    query = {k: v for k, v in {**filters, "cursor": cursor}.items() if v}
    return f"{PREFIX}/{page_name}?{urlencode(query)}"


# -- signing in and out ------------------------------------------------------------------


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/jobs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = Query(None, max_length=2000)) -> HTMLResponse:
    return page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    try:
        session_id, row = auth.sign_in(session, settings, token.strip())
    except Unauthorized as exc:
        message = "That token is not valid." if exc.message == Unauthorized().message else exc.message
        return page(request, "login.html", status_code=401, next=_safe_next(next), error=message)
    response = RedirectResponse(_safe_next(next), status_code=303)
    max_age = int((row.expires_at - utcnow()).total_seconds()) if row.expires_at else None
    response.set_cookie(
        auth.COOKIE,
        session_id,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(
    request: Request, session: SessionDep, settings: SettingsDep, viewer: ViewerDep, csrf: CsrfField = None
) -> RedirectResponse:
    auth.check_csrf(viewer, csrf)
    auth.sign_out(session, settings, request.cookies.get(auth.COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


# -- jobs ---------------------------------------------------------------------------------


def job_row(job: Job, now: datetime) -> dict[str, Any]:
    """What the jobs table shows of a job."""
    progress = job.progress or {}
    total, step = progress.get("total_steps"), progress.get("step")
    fraction = step / total if isinstance(total, int) and total > 0 and isinstance(step, int) else None
    if job.status == JobStatus.SUCCEEDED:
        fraction = 1.0
    end = job.finished_at or (now if job.status == JobStatus.RUNNING else None)
    device = (job.spec or {}).get("device") or {}
    return {
        "job": job,
        "family": device.get("family", "") if job.algorithm != "fp" else "digital",
        "fraction": fraction,
        "eta_s": progress.get("eta_s") if job.status == JobStatus.RUNNING else None,
        "accuracy": (job.result or {}).get("test_accuracy"),
        "wall_s": (end - job.started_at).total_seconds() if end and job.started_at else None,
    }


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    status = status if status in STATUSES else None
    name = (name or "").strip() or None
    try:
        filters = JobFilters(status=status, name=name)
    except ValidationError as exc:  # e.g. a NUL in the name: a 422 page naming the field
        raise invalid_from(exc) from None
    rows, next_cursor = jobs.list_page(session, viewer.user.id, PageParams(limit=None, cursor=cursor), filters)
    now = utcnow()
    return page(
        request,
        "jobs.html",
        viewer=viewer,
        rows=[job_row(j, now) for j in rows],
        statuses=STATUSES,
        status=status,
        name=name or "",
        next_url=next_page_url("jobs", next_cursor, status=status, name=name),
    )


def _series(session, job: Job) -> dict[str, list[list[float]]]:
    """Per-epoch curves: {metric: [[epoch, value], ...]} for the charted metrics."""
    keys = ["train_loss", "test_loss", "test_accuracy"]
    out: dict[str, list[list[float]]] = {k: [] for k in keys}
    for point in results.metrics(session, job, keys, None):
        if point.epoch is not None:
            out[point.key].append([point.epoch, point.value])
    return out


def _baseline_job(session, job: Job) -> Job | None:
    """The digital baseline of a sweep job: the sweep's baseline job with the same seed, else
    the first finished one."""
    if job.sweep_id is None or job.is_baseline:
        return None
    candidates = list(
        session.scalars(
            select(Job).where(Job.sweep_id == job.sweep_id, Job.is_baseline.is_(True)).order_by(Job.id).limit(50)
        )
    )
    seed = (job.spec.get("training") or {}).get("seed")
    same_seed = [b for b in candidates if (b.spec.get("training") or {}).get("seed") == seed]
    return (same_seed or candidates or [None])[0]


def _job_context(session, viewer: auth.Viewer, job: Job) -> dict[str, Any]:
    artifact_rows = artifacts.list_for_job(session, viewer.user, job.id)
    has_checkpoint = any(a.kind == "checkpoint" for a in artifact_rows)
    return {
        "viewer": viewer,
        "job": job,
        "row": job_row(job, utcnow()),
        "artifacts": artifact_rows,
        "active": job.status in ACTIVE_STATUSES,
        "can_resume": job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and has_checkpoint,
        "environment": (job.result or {}).get("environment") or {},
    }


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: ID, request: Request, session: SessionDep, viewer: ViewerDep) -> HTMLResponse:
    job = jobs.get(session, viewer.user, job_id)
    last_event = session.scalar(select(func.max(JobEvent.id)).where(JobEvent.job_id == job.id)) or 0
    lines, next_offset, _ = results.log_lines(session, job, 0)
    if len(lines) == results.LOG_PAGE:  # a long log: show its tail, follow from its end
        count = session.scalar(select(func.count()).select_from(JobLogLine).where(JobLogLine.job_id == job.id))
        start = max((count or 0) - LOG_TAIL, 0)
        lines, next_offset, _ = results.log_lines(session, job, start)
    baseline = _baseline_job(session, job)
    data = {
        "id": job.id,
        "status": job.status,
        "terminal": job.status in TERMINAL_STATUSES,
        "progress": job.progress,
        "series": _series(session, job),
        "baseline": {"id": baseline.id, "series": _series(session, baseline)} if baseline else None,
        "last_event_id": last_event,
        "log_offset": next_offset,
        "urls": {
            "events": f"{PREFIX}/jobs/{job.id}/events",
            "logs": f"{PREFIX}/jobs/{job.id}/logs",
            "panel": f"{PREFIX}/jobs/{job.id}/panel",
        },
    }
    spec_yaml = yaml.safe_dump(job.spec, sort_keys=False, default_flow_style=False)
    return page(
        request,
        "job.html",
        **_job_context(session, viewer, job),
        data=data,
        spec_yaml=spec_yaml,
        log_lines=lines[-LOG_TAIL:],
        baseline=baseline,
    )


@router.get("/jobs/{job_id}/panel", response_class=HTMLResponse)
def job_panel(job_id: ID, request: Request, session: SessionDep, viewer: ViewerDep) -> HTMLResponse:
    """The parts of the job page that change when the job ends (actions, error, result,
    artifacts), for the page to swap in without reloading."""
    job = jobs.get(session, viewer.user, job_id)
    return page(request, "job_panel.html", **_job_context(session, viewer, job))


@router.get("/jobs/{job_id}/events")
def job_events(
    job_id: ID,
    session: SessionDep,
    viewer: ViewerDep,
    last_event_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    last_event_id_header: Annotated[int | None, Header(alias="last-event-id", ge=0, le=2**62)] = None,
) -> StreamingResponse:
    """The API's event stream (GET /v1/jobs/{id}/events), signed in by the session cookie:
    EventSource cannot send an Authorization header."""
    after = last_event_id_header if last_event_id_header is not None else (last_event_id or 0)
    return stream.follow(session, viewer.user, job_id, after)


@router.get("/jobs/{job_id}/logs")
def job_logs(
    job_id: ID, session: SessionDep, viewer: ViewerDep, offset: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0
) -> JSONResponse:
    job = jobs.get(session, viewer.user, job_id)
    lines, next_offset, done = results.log_lines(session, job, offset)
    return JSONResponse({"lines": lines, "next_offset": next_offset, "done": done})


@router.get("/jobs/{job_id}/artifacts/{name:path}")
def job_artifact(
    job_id: ID,
    session: SessionDep,
    viewer: ViewerDep,
    name: str = Path(max_length=500),
    range_header: str | None = Header(None, alias="range", max_length=200),
) -> StreamingResponse:
    return artifacts.download(session, viewer.user, job_id, name, range_header, None)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: ID, session: SessionDep, viewer: ViewerDep, csrf: CsrfField = None) -> RedirectResponse:
    auth.check_csrf(viewer, csrf)
    jobs.cancel(session, viewer.user, job_id)
    return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/rerun")
def rerun_job(job_id: ID, session: SessionDep, viewer: ViewerDep, csrf: CsrfField = None) -> RedirectResponse:
    auth.check_csrf(viewer, csrf)
    job, _ = jobs.rerun(session, viewer.user, job_id, None)
    return RedirectResponse(f"{PREFIX}/jobs/{job.id}", status_code=303)


@router.post("/jobs/{job_id}/resume")
def resume_job(job_id: ID, session: SessionDep, viewer: ViewerDep, csrf: CsrfField = None) -> RedirectResponse:
    """A new job with the same spec that starts from this job's latest checkpoint."""
    auth.check_csrf(viewer, csrf)
    job = jobs.resume(session, viewer.user, job_id)
    return RedirectResponse(f"{PREFIX}/jobs/{job.id}", status_code=303)


# -- sweeps -------------------------------------------------------------------------------


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    rows, next_cursor = sweeps.list_page(session, viewer.user, PageParams(limit=None, cursor=cursor))
    counts = sweeps.counts(session, [s.id for s in rows])
    items = [
        {
            "sweep": s,
            "counts": counts[s.id],
            "status": sweeps.derive_status(counts[s.id]),
            "total": sum(counts[s.id].values()),
        }
        for s in rows
    ]
    return page(request, "sweeps.html", viewer=viewer, items=items, next_url=next_page_url("sweeps", next_cursor))


def _cell_status(statuses: list[str]) -> str:
    """One word for a grid cell's jobs: running while any runs, queued while any waits, then
    succeeded (all), failed (any failed) or cancelled."""
    for status in (JobStatus.RUNNING, JobStatus.QUEUED):
        if status in statuses:
            return status
    if statuses and all(s == JobStatus.SUCCEEDED for s in statuses):
        return JobStatus.SUCCEEDED
    return JobStatus.FAILED if JobStatus.FAILED in statuses else JobStatus.CANCELLED


def sweep_state(session, viewer: auth.Viewer, sweep_id: int) -> dict[str, Any]:
    """What the sweep page shows: the report (rows: mean and std over seeds, delta to the
    baseline), the figure's kind, and each grid cell with its jobs."""
    sweep = sweeps.get(session, viewer.user, sweep_id)
    report, base_algorithm = sweeps.report(session, viewer.user, sweep_id)
    axes = report["axes"]
    b_axes = baseline_axes(axes)
    cells: dict[tuple[bool, tuple[str, ...]], dict[str, Any]] = {}
    for job in session.scalars(select(Job).where(Job.sweep_id == sweep.id).order_by(Job.id)):
        grid = (job.sweep_point or {}).get("grid") or {}
        keys = b_axes if job.is_baseline else axes
        cell = cells.setdefault(
            (job.is_baseline, point_key(grid, keys)),
            {"key": "", "baseline": job.is_baseline, "point": {a: grid.get(a) for a in keys}, "jobs": []},
        )
        cell["jobs"].append({"id": job.id, "status": job.status, "accuracy": (job.result or {}).get("test_accuracy")})
    ordered = sorted(cells.values(), key=lambda c: c["baseline"])  # the grid first, then baselines
    for n, cell in enumerate(ordered, 1):
        cell["key"] = f"cell-{n}"
        cell["status"] = _cell_status([j["status"] for j in cell["jobs"]])
    anchor = {(c["baseline"], point_key(c["point"], b_axes if c["baseline"] else axes)): c["key"] for c in ordered}
    for row in report["rows"]:
        row["cell"] = anchor.get((False, point_key(row["point"], axes)))
    counts = sweeps.counts(session, [sweep.id])[sweep.id]
    return {
        "id": sweep.id,
        "name": sweep.name,
        "status": sweeps.derive_status(counts),
        "counts": counts,
        "total": sum(counts.values()),
        "report": report,
        "figure": plots.figure_kind(report),
        "plot_axes": plots.plot_axes(report),
        "algorithms": plots.algorithms(report, base_algorithm),
        "base_algorithm": base_algorithm,
        "cells": ordered,
    }


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(sweep_id: ID, request: Request, session: SessionDep, viewer: ViewerDep) -> HTMLResponse:
    state = sweep_state(session, viewer, sweep_id)
    urls = {"state": f"{PREFIX}/sweeps/{sweep_id}/state", "panel": f"{PREFIX}/sweeps/{sweep_id}/panel"}
    return page(request, "sweep.html", viewer=viewer, state=state, data={**state, "urls": urls})


@router.get("/sweeps/{sweep_id}/panel", response_class=HTMLResponse)
def sweep_panel(sweep_id: ID, request: Request, session: SessionDep, viewer: ViewerDep) -> HTMLResponse:
    """The sweep page's tables, for the page to swap in while the sweep runs."""
    return page(request, "sweep_panel.html", viewer=viewer, state=sweep_state(session, viewer, sweep_id))


@router.get("/sweeps/{sweep_id}/state")
def sweep_state_json(sweep_id: ID, session: SessionDep, viewer: ViewerDep) -> Response:
    return JSONResponse(jsonable_encoder(sweep_state(session, viewer, sweep_id)))


# -- devices, presets, admin --------------------------------------------------------------


@router.get("/devices", response_class=HTMLResponse)
def devices_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    rows, next_cursor = device_specs.list_page(session, viewer.user, PageParams(limit=None, cursor=cursor))
    items = [{"record": r, "yaml": yaml.safe_dump(r.spec, sort_keys=False)} for r in rows]
    return page(request, "devices.html", viewer=viewer, items=items, next_url=next_page_url("devices", next_cursor))


@router.get("/presets", response_class=HTMLResponse)
def presets_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    from cttv2_engine.presets import listing

    return page(request, "presets.html", viewer=viewer, catalogue=listing())


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, session: SessionDep, viewer: ViewerDep) -> HTMLResponse:
    """Every user's queue (counts by status) and the workers with their running job: no job
    contents of other users."""
    if not viewer.user.is_admin:
        raise Forbidden("this page is for admins")
    counts = session.execute(
        select(User.name, Job.status, func.count()).join(Job, Job.user_id == User.id).group_by(User.name, Job.status)
    ).all()
    queues: dict[str, dict[str, int]] = {}
    for name, status, n in counts:
        queues.setdefault(name, {s: 0 for s in STATUSES})[status] = n
    workers = session.execute(
        select(Job.worker_id, Job.id, User.name, Job.heartbeat_at, Job.started_at)
        .join(User, User.id == Job.user_id)
        .where(Job.status == JobStatus.RUNNING)
        .order_by(Job.worker_id, Job.id)
    ).all()
    return page(
        request,
        "admin.html",
        viewer=viewer,
        queues=sorted(queues.items()),
        statuses=STATUSES,
        workers=workers,
        now=utcnow(),
    )
