from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status
from fastapi.concurrency import run_in_threadpool

from service.core.config import get_settings
from service.core.deps import ID, CurrentUser, SessionDep
from service.core.errors import ErrorResponse
from service.core.pagination import Page, PageParams
from service.users import storage
from service.weights import service, upload
from service.weights.schemas import UPLOAD_SCHEMA, WeightsOut

router = APIRouter(prefix="/weights", tags=["weights"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="upload_weights",
    openapi_extra=UPLOAD_SCHEMA,
    responses={
        409: {"model": ErrorResponse},
        413: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        507: {"model": ErrorResponse, "description": "storage_quota_exceeded: over CTTV2_MAX_STORAGE_MB_PER_USER"},
    },
)
async def upload_weights(request: Request, user: CurrentUser, session: SessionDep) -> WeightsOut:
    """Upload pretrained weights (multipart: file, arch, name?, img_size?). They start
    `pending`; a worker checks them and sets `valid` or `invalid` (with the reason). An upload
    that would take you past your storage quota is a 507 (storage_quota_exceeded)."""
    settings = get_settings()
    use = await run_in_threadpool(storage.usage, session, settings, user.id)
    await run_in_threadpool(session.close)  # no connection held while the file streams in
    received = await upload.receive(request, service.receive_folder(user.id), settings.max_upload_mb << 20, use)
    record = await run_in_threadpool(service.create, session, user, received)
    return WeightsOut.model_validate(record)


@router.get("", operation_id="list_weights")
def list_weights(user: CurrentUser, session: SessionDep, page: PageParams = Depends()) -> Page[WeightsOut]:
    rows, cursor = service.list_page(session, user, page)
    return Page(items=[WeightsOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/{weights_id}", operation_id="get_weights", responses={404: {"model": ErrorResponse}})
def get_weights(weights_id: ID, user: CurrentUser, session: SessionDep) -> WeightsOut:
    return WeightsOut.model_validate(service.get(session, user, weights_id))


@router.delete(
    "/{weights_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_weights",
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def delete_weights(weights_id: ID, user: CurrentUser, session: SessionDep) -> None:
    """Delete an upload (its record and its file); a 409 while a queued or running job of
    yours names it in model.pretrained.weights."""
    service.delete(session, user, weights_id)
