"""Celery tasks. Each message carries an id only; everything else is read from the database.

A run message names a job but means "one unit of queued work exists": the worker claims the
fairest queued job (service.jobs.lifecycle.claim_next), which may be another, and runs that
one (worker.runner.run_job). validate_weights runs exactly the upload it names."""

from __future__ import annotations

import os
import socket

from service.core.broker import RUN_JOB_TASK, VALIDATE_WEIGHTS_TASK, get_celery
from service.core.config import get_settings
from worker.runner import run_job as run_job_now
from worker.weights import validate_upload

app = get_celery()


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, ignore_result=True)
def run_job(self, job_id: int) -> str:
    worker_id = self.request.hostname or f"{socket.gethostname()}-{os.getpid()}"
    return run_job_now(get_settings(), int(job_id), worker_id)


@app.task(name=VALIDATE_WEIGHTS_TASK, acks_late=True, ignore_result=True)
def validate_weights(weights_id: int) -> str:
    return validate_upload(get_settings(), int(weights_id))
