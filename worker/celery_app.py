"""The Celery app, shared by the API (to publish) and the worker (to consume). No torch here.

Protocol: a message carries only a job id. Late acks and prefetch 1 mean a worker holds at
most one job and a lost worker's message is delivered again; the job row's conditional claim
makes every extra delivery a no-op.
"""

from __future__ import annotations

from celery import Celery

from service.core.config import Settings


def make_celery(settings: Settings) -> Celery:
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
        }
    elif settings.broker_url.startswith(("redis", "rediss")):
        # Redelivery of an unacked message after a lost worker; the reaper is faster, and a
        # duplicate is harmless, so this only needs to outlive the longest job.
        transport_options = {"visibility_timeout": 7 * 24 * 3600, "socket_timeout": 5, "socket_connect_timeout": 5}
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
