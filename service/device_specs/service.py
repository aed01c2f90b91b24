from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from service.core.errors import Conflict, NotFound
from service.core.pagination import PageParams, paginate
from service.device_specs.models import DeviceSpecRecord
from service.device_specs.schemas import DeviceSpecCreate
from service.jobs.models import TERMINAL_STATUSES, Job
from service.users.models import User


def create(session: Session, user: User, body: DeviceSpecCreate) -> DeviceSpecRecord:
    record = DeviceSpecRecord(user_id=user.id, name=body.name, spec=body.spec.model_dump(mode="json"))
    session.add(record)
    session.commit()
    return record


def get(session: Session, user: User, spec_id: int) -> DeviceSpecRecord:
    record = session.get(DeviceSpecRecord, spec_id)
    # Another user's spec is indistinguishable from a missing one.
    if record is None or record.user_id != user.id:
        raise NotFound(f"device spec {spec_id} not found")
    return record


def list_page(session: Session, user: User, params: PageParams):
    stmt = select(DeviceSpecRecord).where(DeviceSpecRecord.user_id == user.id)
    return paginate(session, stmt, DeviceSpecRecord.id, params)


def delete(session: Session, user: User, spec_id: int) -> None:
    record = get(session, user, spec_id)
    in_use = session.scalar(
        select(exists().where(Job.device_spec_id == record.id, Job.status.not_in(TERMINAL_STATUSES)))
    )
    if in_use:
        raise Conflict(f"device spec {spec_id} is used by a queued or running job")
    session.delete(record)
    session.commit()
