"""`cttv2 worker`: a Celery worker that runs one job at a time, in its main process.

The solo pool keeps the job in the process that receives SIGTERM, so a shutdown can ask the
running job to checkpoint and go back to the queue (see worker.shutdown). The maintenance loop
(reaper + reconciler) runs beside it in a thread.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import signals

from service.core.config import Settings
from worker import shutdown
from worker.maintenance import MaintenanceLoop

log = logging.getLogger("cttv2.worker")


def start_worker(settings: Settings, *, name: str | None = None, loglevel: str = "INFO") -> None:
    from service.core.broker import get_celery

    app = get_celery()
    _end_frozen_transactions(settings)
    hostname = name or f"cttv2@{socket.gethostname()}-{os.getpid()}"
    loop = MaintenanceLoop(settings)

    @signals.worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        loop.start()
        log.info("worker %s ready on queue %s", hostname, settings.queue_name)

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(**_: object) -> None:
        shutdown.request()
        loop.stop()

    # Import torch and aihwkit now, not in the first job: the first job's timing stays honest
    # and an install problem shows at start.
    import cttv2_engine.train  # noqa: F401

    app.worker_main(
        [
            # JSON logs: no start-up banner either (it is printed, not logged), so every line
            # of the worker's output is one JSON object.
            *(["--quiet"] if settings.log_format == "json" else []),
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--prefetch-multiplier=1",
            f"--queues={settings.queue_name}",
            f"--hostname={hostname}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def _end_frozen_transactions(settings: Settings) -> None:
    """A worker frozen inside a transaction (SIGSTOP, a hung host) would keep its job's row
    locked, and the reaper could never take the job back. PostgreSQL ends a worker's
    transaction left idle longer than the heartbeat timeout (a live worker's last seconds)."""
    from sqlalchemy import event

    from service.core.db import get_engine

    engine = get_engine()
    if engine.dialect.name != "postgresql":
        return
    timeout_ms = max(1000, int(settings.heartbeat_timeout_s * 1000))

    @event.listens_for(engine, "connect")
    def _set_timeout(dbapi_conn, _record) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        dbapi_conn.commit()
