"""Uploaded weights on the worker side: validating them (torch lives here, not in the API)
and choosing the weights folder a job's model.pretrained.weights name is read from."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.artifacts.store import ArtifactStore, get_store, job_key, sha256_of, weights_key
from service.core.config import Settings
from service.core.db import utcnow
from service.jobs.models import Job
from service.weights.models import WeightsFile
from worker.artifacts import wait_out_store
from worker.db import with_retry

log = logging.getLogger("cttv2.worker.weights")


def validate_upload(settings: Settings, weights_id: int) -> str:
    """pending -> valid | invalid. The file is only read by safetensors or
    torch.load(weights_only=True), so a pickle carrying code is refused, never run."""
    from cttv2_engine.errors import WeightsError
    from cttv2_engine.weights import validate_weights_file

    record = with_retry(lambda s: s.get(WeightsFile, weights_id), what="load weights")
    if record is None or record.status != "pending":
        return "ignored"
    store = get_store(settings)
    key = weights_key(record.user_id, record.name)
    error = None
    path = None
    try:
        # A store outage is waited out (the upload stays pending), not reported as invalid.
        path = wait_out_store(
            lambda: store.fetch(key),
            settings.store_retry_deadline_s,
            settings.heartbeat_interval_s,
            lambda exc: log.warning("weights %s: artifact store unreachable, retrying: %s", weights_id, exc),
        )
        if path is None:
            error = "the stored file is missing"
        elif sha256_of(path) != record.sha256:
            error = "the stored file does not match the uploaded one (sha256 differs)"
        else:
            summary = validate_weights_file(path, record.arch, record.img_size)
            log.info("weights %s (%s) valid: %s tensors", weights_id, record.name, summary["tensors"])
    except WeightsError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"cannot read the stored file: {exc.strerror or exc}"
    except Exception as exc:
        log.exception("weights %s: unexpected validation failure", weights_id)
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        if path is not None and not store.is_local:
            path.unlink(missing_ok=True)  # a scratch copy
    status = "invalid" if error else "valid"

    def tx(session: Session) -> None:
        session.execute(
            update(WeightsFile)
            .where(WeightsFile.id == weights_id, WeightsFile.status == "pending")
            .values(status=status, error=error, updated_at=utcnow())
        )

    with_retry(tx, what="weights status")
    return status


def weights_dir_for(settings: Settings, store: ArtifactStore, job: Job) -> Path:
    """The user's own valid upload of the pretrained name wins over a server-wide file. On
    S3 the upload is downloaded into the job's scratch folder first."""
    name = ((job.spec.get("model") or {}).get("pretrained") or {}).get("weights")
    if name:
        valid = with_retry(
            lambda s: s.scalar(
                select(WeightsFile.id).where(
                    WeightsFile.user_id == job.user_id, WeightsFile.name == name, WeightsFile.status == "valid"
                )
            ),
            what="find weights",
        )
        if valid is not None:
            if store.is_local:
                return store.local_path(weights_key(job.user_id))
            folder = store.local_path(job_key(job.id, ".inputs/weights"))
            if store.fetch(weights_key(job.user_id, name), folder / name) is not None:
                return folder
    return Path(settings.weights_dir)
