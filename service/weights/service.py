"""Users' pretrained weights: stored in the artifact store as weights/users/<user_id>/<name>
(WEIGHTS_DIR/users/<user_id>/<name> on the local store), checked by a worker (the API has no
torch) with weights_only loading against the declared architecture."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cttv2_engine.registry import check_model, get_model_config
from cttv2_engine.spec import SAFE_NAME
from service.artifacts.store import StoreError, get_store, weights_key
from service.core import broker
from service.core.config import get_settings
from service.core.errors import Conflict, NotFound, Unavailable, field_error
from service.core.pagination import PageParams, paginate
from service.jobs.models import ACTIVE_STATUSES, Job
from service.users import storage
from service.users.models import User
from service.weights.models import WeightsFile
from service.weights.upload import Upload

log = logging.getLogger("cttv2.weights")

SUFFIXES = (".safetensors", ".pt", ".pth")


def receive_folder(user_id: int) -> Path:
    """Where an upload streams to before it is stored: beside its final place on the local
    store (then a rename puts it there), this host's scratch folder on S3."""
    store = get_store()
    return store.local_path(weights_key(user_id)) if store.is_local else get_settings().scratch_dir / "uploads"


def _checked_fields(upload: Upload) -> tuple[str, str, int | None]:
    name = upload.fields.get("name") or (upload.filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    name_field = "name" if upload.fields.get("name") else "file"
    if not SAFE_NAME.match(name) or not name.lower().endswith(SUFFIXES):
        raise field_error(name_field, "a plain file name (letters, digits, . _ -) ending in .safetensors, .pt or .pth")
    arch = upload.fields.get("arch", "")
    if not arch:
        raise field_error("arch", "required: the architecture the weights are for")
    try:
        get_model_config(arch)
    except ValueError as exc:
        raise field_error("arch", str(exc)) from None
    img_size: int | None = None
    raw = upload.fields.get("img_size")
    if raw:
        if not raw.isdigit() or not 8 <= int(raw) <= 4096:
            raise field_error("img_size", "an integer from 8 to 4096")
        img_size = int(raw)
    try:
        check_model(arch, img_size)
    except ValueError as exc:
        raise field_error("img_size", str(exc)) from None
    return name, arch, img_size


def create(session: Session, user: User, upload: Upload) -> WeightsFile:
    """Register a received upload (its temporary file is moved into place or deleted) and
    queue its validation. The storage quota is checked again before the row is written (an
    upload of the same user may have finished meanwhile): over it, a 507 and no file kept."""
    try:
        name, arch, img_size = _checked_fields(upload)
        storage.check_upload(session, get_settings(), user.id, upload.size)
        record = WeightsFile(
            user_id=user.id,
            name=name,
            arch=arch,
            img_size=img_size,
            size=upload.size,
            sha256=upload.sha256,
            status="pending",
        )
        session.add(record)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            raise field_error(
                "name",
                "already used",
                summary=f"name: you already have weights named {name!r}",
                code="name_taken",
                error=Conflict,
            ) from None
        assert upload.path is not None  # receive() returned: the file part was written
        # Into the store while the row is uncommitted (its unique name reserved): a failed
        # upload leaves no row, a failed commit a file with no row (the orphan sweep's).
        try:
            get_store().put(weights_key(user.id, name), upload.path, upload.sha256)
        except StoreError as exc:
            session.rollback()
            raise Unavailable(f"{exc}; upload again shortly") from None
        upload.path = None
        session.commit()
    finally:
        upload.discard()
    if not broker.try_publish(broker.VALIDATE_WEIGHTS_TASK, record.id):
        session.delete(record)
        session.commit()
        get_store().delete([weights_key(user.id, name)])
        raise Unavailable("the work queue is unreachable; upload again shortly")
    return record


def get(session: Session, user: User, weights_id: int) -> WeightsFile:
    record = session.get(WeightsFile, weights_id)
    if record is None or record.user_id != user.id:
        raise NotFound(f"weights {weights_id} not found")
    return record


def list_page(session: Session, user: User, params: PageParams):
    return paginate(session, select(WeightsFile).where(WeightsFile.user_id == user.id), WeightsFile.id, params)


def users_of(session: Session, record: WeightsFile) -> list[int]:
    """The owner's queued or running jobs that start from this upload (their spec's
    model.pretrained.weights names it: a user's upload wins over a server-wide file)."""
    rows = session.execute(
        select(Job.id, Job.spec).where(Job.user_id == record.user_id, Job.status.in_(ACTIVE_STATUSES)).order_by(Job.id)
    ).all()
    out = []
    for job_id, spec in rows:
        pretrained = ((spec or {}).get("model") or {}).get("pretrained")
        if isinstance(pretrained, dict) and pretrained.get("weights") == record.name:
            out.append(job_id)
    return out


def delete(session: Session, user: User, weights_id: int) -> None:
    """Delete an upload: the row (committed), then the file. A crash between the two leaves a
    file with no row, which worker.maintenance.remove_orphans deletes after a grace period.
    A 409 while a queued or running job uses it."""
    record = get(session, user, weights_id)
    used = users_of(session, record)
    if used:
        raise Conflict(
            f"weights {weights_id} ({record.name}) are used by queued or running job "
            f"{', '.join(map(str, used[:10]))}: cancel it first or wait until it ends",
            code="weights_in_use",
        )
    key = stored_key(record.user_id, record.name)
    session.delete(record)
    session.commit()
    try:
        get_store().delete([key])
    except StoreError as exc:  # the row is gone: the orphan sweep removes the file later
        log.warning("weights %s: file left for the orphan sweep: %s", weights_id, exc)


def stored_key(user_id: int, name: str) -> str:
    """An upload's key in the store; the name was checked against SAFE_NAME at upload (no
    separators), and is checked again here before anything is deleted by it."""
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    return weights_key(int(user_id), name)
