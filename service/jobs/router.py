from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status

from service.core.deps import ID, CurrentUser, SessionDep
from service.core.errors import ErrorResponse
from service.core.pagination import Page, PageParams
from service.jobs import service
from service.jobs.schemas import JobCreate, JobOut

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
    responses={409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
def create_job(
    body: JobCreate,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    job, replayed = service.submit(session, user, body, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return JobOut.from_row(job)


@router.get("", operation_id="list_jobs")
def list_jobs(
    user: CurrentUser,
    session: SessionDep,
    page: PageParams = Depends(),
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = Query(None),
) -> Page[JobOut]:
    rows, cursor = service.list_page(session, user, page, status)
    return Page(items=[JobOut.from_row(j) for j in rows], next_cursor=cursor)


@router.get("/{job_id}", operation_id="get_job", responses={404: {"model": ErrorResponse}})
def get_job(job_id: ID, user: CurrentUser, session: SessionDep) -> JobOut:
    return JobOut.from_row(service.get(session, user, job_id))


@router.post("/{job_id}/cancel", operation_id="cancel_job", responses={404: {"model": ErrorResponse}})
def cancel_job(job_id: ID, user: CurrentUser, session: SessionDep) -> JobOut:
    return JobOut.from_row(service.cancel(session, user, job_id))
