from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from service.core.deps import ID, CallerDep, CurrentUser, SessionDep
from service.core.errors import ErrorResponse
from service.core.pagination import Page, PageParams, page_params
from service.jobs import results, service, stream
from service.jobs.schemas import JobCreate, JobFilters, JobOut, JobUpdate, LogsOut, MetricPoint, MetricsOut
from service.users.models import User

router = APIRouter(prefix="/jobs", tags=["jobs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="same key + same body returns the same job; same key + another body is 409",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_job",
    responses={403: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def create_job(
    body: JobCreate,
    caller: CallerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    def work(session: Session, user: User) -> JobOut:
        job, replayed = service.submit(session, user, body, idempotency_key)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return JobOut.from_row(job)

    return await caller.session(work)


@router.get("", operation_id="list_jobs")
async def list_jobs(
    caller: CallerDep,
    filters: Annotated[JobFilters, Query()],
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[JobOut]:
    """Your jobs, newest first, narrowed by any of the filters (all must hold)."""
    rows, cursor = await caller.read(
        lambda conn: service.list_page(conn, caller.user_id(conn), page, filters, rows=True)
    )
    return Page(items=[JobOut.from_row(j) for j in rows], next_cursor=cursor)


@router.get("/{job_id}", operation_id="get_job", responses={404: {"model": ErrorResponse}})
async def get_job(job_id: ID, caller: CallerDep) -> JobOut:
    return JobOut.from_row(await caller.read(lambda conn: service.get_row(conn, caller.digest, job_id)))


@router.patch(
    "/{job_id}",
    operation_id="update_job",
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
def update_job(job_id: ID, user: CurrentUser, session: SessionDep, body: JobUpdate | None = None) -> JobOut:
    """Set a job's tags and/or notes, in any status: only the fields given change (tags
    replace the job's tags); no body changes nothing."""
    return JobOut.from_row(service.update_job(session, user, job_id, body or JobUpdate()))


@router.post("/{job_id}/cancel", operation_id="cancel_job", responses={404: {"model": ErrorResponse}})
def cancel_job(job_id: ID, user: CurrentUser, session: SessionDep) -> JobOut:
    return JobOut.from_row(service.cancel(session, user, job_id))


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_job",
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def delete_job(job_id: ID, user: CurrentUser, session: SessionDep) -> None:
    """Delete a finished job (succeeded, failed or cancelled): its record, metrics, logs,
    events and files. A queued or running job is a 409: cancel it first."""
    service.delete(session, user, job_id)


@router.post(
    "/{job_id}/rerun",
    status_code=status.HTTP_201_CREATED,
    operation_id="rerun_job",
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def rerun_job(
    job_id: ID,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """A new job with the same spec; its rerun_of names this one."""
    job, replayed = service.rerun(session, user, job_id, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.from_row(job)


@router.get("/{job_id}/metrics", operation_id="get_job_metrics", responses={404: {"model": ErrorResponse}})
def get_job_metrics(
    job_id: ID,
    user: CurrentUser,
    session: SessionDep,
    keys: str | None = Query(None, max_length=2000, description="comma-separated metric names; all when absent"),
    since_step: int | None = Query(None, ge=-1, le=2_147_483_647, description="only steps after this one"),
) -> MetricsOut:
    job = service.get(session, user, job_id)
    points = results.metrics(session, job, results.parse_keys(keys), since_step)
    return MetricsOut(items=[MetricPoint.model_validate(p) for p in points])


@router.get("/{job_id}/logs", operation_id="get_job_logs", responses={404: {"model": ErrorResponse}})
def get_job_logs(
    job_id: ID,
    user: CurrentUser,
    session: SessionDep,
    offset: int = Query(0, ge=0, le=2_147_483_647, description="first line number to return"),
) -> LogsOut:
    job = service.get(session, user, job_id)
    lines, next_offset, done = results.log_lines(session, job, offset)
    return LogsOut(lines=lines, next_offset=next_offset, done=done)


@router.get(
    "/{job_id}/events",
    operation_id="stream_job_events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        404: {"model": ErrorResponse},
    },
)
def stream_job_events(
    job_id: ID,
    user: CurrentUser,
    session: SessionDep,
    last_event_id_header: Annotated[
        int | None, Header(alias="last-event-id", ge=0, le=2**62, description="resume after this event")
    ] = None,
    last_event_id: int | None = Query(None, ge=0, le=2**62, description="as the Last-Event-ID header"),
) -> StreamingResponse:
    """Status, progress and metrics events as they happen; ends after the job ends."""
    after = last_event_id_header if last_event_id_header is not None else (last_event_id or 0)
    return stream.follow(session, user, job_id, after)
