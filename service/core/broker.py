"""The broker: the Celery app (the API publishes, the worker consumes), publishing, the
readiness ping and the job queue's depth. No torch here, and no import of the worker: the
worker's tasks are named by string (`include`) and registered by worker.tasks.

Protocol: a message carries only an id; the job row is the truth. A run message means "one
unit of queued work exists": the worker claims the fairest queued job, not necessarily the one
named (service.jobs.lifecycle.claim_next). Late acks and prefetch 1 mean a worker holds at
most one job and a lost worker's message is delivered again; the conditional claim means an
extra delivery never runs a job twice (it takes the next fair job, or nothing).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING

from service.core.config import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("cttv2.broker")

RUN_JOB_TASK = "cttv2.run_job"
VALIDATE_WEIGHTS_TASK = "cttv2.validate_weights"


def make_celery(settings: Settings) -> Celery:
    from celery import Celery  # imported on first use: the API starts without it

    app = Celery("cttv2", broker=settings.broker_url, include=["worker.tasks"])
    transport_options: dict[str, object] = {}
    if settings.broker_url.startswith("filesystem"):
        # The embedded default: messages are files in one folder shared by API and workers.
        folder = settings.broker_dir / "queue"
        for sub in ("queue", "control", "processed"):
            (settings.broker_dir / sub).mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(settings.broker_dir / "control"),
            "processed_folder": str(settings.broker_dir / "processed"),
            "store_processed": False,
            # An idle worker lists the folder this often (kombu's default, 1 s, made a job
            # wait 0.5 s on average, up to 1 s, before a worker saw it): one directory
            # listing per 0.1 s per worker, so submit -> running stays well under 0.5 s.
            "polling_interval": 0.1,
        }
    elif settings.broker_url.startswith(("redis", "rediss")):
        # Redelivery of an unacked message after a lost worker; the reaper is faster, and a
        # duplicate is harmless, so this only needs to outlive the longest job.
        transport_options = {"visibility_timeout": 7 * 24 * 3600, "socket_timeout": 5, "socket_connect_timeout": 5}
    if settings.broker_url.startswith("filesystem"):
        # kombu's own, but each message written whole before a worker can see it (the module
        # says why): given explicitly, it takes the place of the URL's scheme.
        app.conf.broker_transport = "service.core.filesystem_transport:Transport"
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_default_queue=settings.queue_name,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
    )
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def publish(task: str, *args: object, settings: Settings | None = None) -> None:
    """Publish one message; raises when the broker is unreachable."""
    settings = settings or get_settings()
    get_celery().send_task(task, args=list(args), queue=settings.queue_name)


def try_publish(task: str, *args: object) -> bool:
    """Publish, or log and return False: the reconciler re-sends what did not get through."""
    try:
        publish(task, *args)
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure means "not sent"
        log.warning("could not enqueue %s%r: %s", task, args, exc)
        return False


def ping(settings: Settings) -> None:
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


def queue_depth(settings: Settings) -> int | None:
    """Messages waiting in the job queue, or None when the broker cannot tell."""
    from kombu.exceptions import ChannelError

    try:
        with get_celery().connection_for_read() as conn:
            try:
                return conn.default_channel.queue_declare(queue=settings.queue_name, passive=True).message_count
            except ChannelError:
                return 0  # Redis keeps no key for an empty list: a passive declare says NOT_FOUND
    except Exception as exc:  # noqa: BLE001 - unknown depth: fall back to age-based republishing
        log.warning("cannot read broker depth: %s", exc)
    return None
