from __future__ import annotations

from fastapi import APIRouter, Depends, status

from service.core.deps import ID, CurrentUser, SessionDep
from service.core.errors import ErrorResponse
from service.core.pagination import Page, PageParams
from service.device_specs import service
from service.device_specs.schemas import DeviceSpecCreate, DeviceSpecOut

router = APIRouter(prefix="/device-specs", tags=["device-specs"])


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_device_spec")
def create_device_spec(body: DeviceSpecCreate, user: CurrentUser, session: SessionDep) -> DeviceSpecOut:
    return DeviceSpecOut.model_validate(service.create(session, user, body))


@router.get("", operation_id="list_device_specs")
def list_device_specs(user: CurrentUser, session: SessionDep, page: PageParams = Depends()) -> Page[DeviceSpecOut]:
    rows, cursor = service.list_page(session, user, page)
    return Page(items=[DeviceSpecOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/{spec_id}", operation_id="get_device_spec", responses={404: {"model": ErrorResponse}})
def get_device_spec(spec_id: ID, user: CurrentUser, session: SessionDep) -> DeviceSpecOut:
    return DeviceSpecOut.model_validate(service.get(session, user, spec_id))


@router.delete(
    "/{spec_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_device_spec",
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def delete_device_spec(spec_id: ID, user: CurrentUser, session: SessionDep) -> None:
    service.delete(session, user, spec_id)
