from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from service.core.deps import ID, CurrentUser, SessionDep
from service.core.errors import ErrorResponse
from service.core.pagination import Page, PageParams
from service.jobs.models import JobStatusName
from service.jobs.router import IdempotencyKey
from service.jobs.schemas import JobOut
from service.sweeps import plots, report, service
from service.sweeps.models import Sweep
from service.sweeps.schemas import SweepCounts, SweepCreate, SweepOut, SweepReport

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
Paging = Annotated[PageParams, Depends()]


def _out(sweep: Sweep, counts: dict[str, int]) -> SweepOut:
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        status=service.derive_status(counts),
        counts=SweepCounts(**counts),
        total_jobs=sum(counts.values()),
        request=sweep.request,
        created_at=sweep.created_at,
    )


def _one(session, sweep: Sweep) -> SweepOut:
    return _out(sweep, service.counts(session, [sweep.id])[sweep.id])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_sweep",
    responses={403: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
def create_sweep(
    body: SweepCreate,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SweepOut:
    """One job per grid point and seed (plus the digital baselines), created together."""
    sweep, replayed = service.create(session, user, body, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _one(session, sweep)


@router.get("", operation_id="list_sweeps")
def list_sweeps(user: CurrentUser, session: SessionDep, page: Paging) -> Page[SweepOut]:
    rows, cursor = service.list_page(session, user, page)
    counts = service.counts(session, [s.id for s in rows])
    return Page(items=[_out(s, counts[s.id]) for s in rows], next_cursor=cursor)


@router.get("/{sweep_id}", operation_id="get_sweep", responses=NOT_FOUND)
def get_sweep(sweep_id: ID, user: CurrentUser, session: SessionDep) -> SweepOut:
    return _one(session, service.get(session, user, sweep_id))


@router.post("/{sweep_id}/cancel", operation_id="cancel_sweep", responses=NOT_FOUND)
def cancel_sweep(sweep_id: ID, user: CurrentUser, session: SessionDep) -> SweepOut:
    """Cancel every job of the sweep that is still queued or running."""
    return _one(session, service.cancel(session, user, sweep_id))


@router.delete(
    "/{sweep_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_sweep",
    responses={**NOT_FOUND, 409: {"model": ErrorResponse}},
)
def delete_sweep(sweep_id: ID, user: CurrentUser, session: SessionDep) -> None:
    """Delete the sweep and all its jobs (records and files); a 409 while any of them is
    queued or running (cancel the sweep first)."""
    service.delete(session, user, sweep_id)


@router.get("/{sweep_id}/jobs", operation_id="list_sweep_jobs", responses=NOT_FOUND)
def list_sweep_jobs(
    sweep_id: ID,
    user: CurrentUser,
    session: SessionDep,
    page: Paging,
    status: JobStatusName | None = Query(None),
) -> Page[JobOut]:
    rows, cursor = service.jobs_page(session, user, sweep_id, page, status)
    return Page(items=[JobOut.from_row(j) for j in rows], next_cursor=cursor)


@router.get(
    "/{sweep_id}/report",
    operation_id="get_sweep_report",
    response_model=SweepReport,
    responses={
        **NOT_FOUND,
        200: {
            "description": "JSON (default), CSV (one row per grid point, a column per axis) or "
            "a PNG figure. Headers X-Sweep-Complete and X-Sweep-Pending say how far it is.",
            "content": {"text/csv": {}, "image/png": {}},
        },
    },
)
def get_sweep_report(
    sweep_id: ID,
    user: CurrentUser,
    session: SessionDep,
    format: Literal["json", "csv", "png"] = Query("json", description="json, csv or png"),
):
    """Final test error per grid point over seeds, against the digital baseline; correct
    while the sweep is partly done (complete: false)."""
    data, base_algorithm = service.report(session, user, sweep_id)
    headers = {
        "X-Sweep-Complete": "true" if data["complete"] else "false",
        "X-Sweep-Pending": str(data["pending"]),
        "Cache-Control": "no-store",
    }
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="sweep-{sweep_id}-report.csv"'
        return Response(report.to_csv(data), media_type="text/csv; charset=utf-8", headers=headers)
    if format == "png":
        headers["Content-Disposition"] = f'inline; filename="sweep-{sweep_id}-report.png"'
        png = plots.render_png(data, base_algorithm=base_algorithm)
        return Response(png, media_type="image/png", headers=headers)
    return Response(SweepReport.model_validate(data).model_dump_json(), media_type="application/json", headers=headers)
