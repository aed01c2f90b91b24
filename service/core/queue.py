"""Sending work to the workers. The API only enqueues a job id; the job row is the truth."""

from __future__ import annotations

import logging
from functools import lru_cache

from service.core.config import Settings, get_settings

log = logging.getLogger("cttv2.queue")

RUN_JOB_TASK = "cttv2.run_job"
VALIDATE_WEIGHTS_TASK = "cttv2.validate_weights"


@lru_cache
def get_celery():
    from worker.celery_app import make_celery

    return make_celery(get_settings())


def send(task: str, *args: object, settings: Settings | None = None) -> None:
    """Publish one message; raises when the broker is unreachable."""
    settings = settings or get_settings()
    get_celery().send_task(task, args=list(args), queue=settings.queue_name)


def try_send(task: str, *args: object) -> bool:
    """Publish, or log and return False: the reconciler re-sends what did not get through."""
    try:
        send(task, *args)
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure means "not sent"
        log.warning("could not enqueue %s%r: %s", task, args, exc)
        return False


def broker_ping(settings: Settings) -> None:
    """Raise when the broker cannot be reached."""
    if settings.broker_url.startswith("filesystem"):
        d = settings.broker_dir
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".ready-probe"
        probe.write_text("ok")
        probe.unlink()
        return
    with get_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
