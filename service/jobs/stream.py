"""GET /v1/jobs/{id}/events: the job's event log as server-sent events.

The stream polls job_events by id (the same on SQLite and PostgreSQL). Each poll opens a
session in a worker thread and closes it before sleeping, so an idle or slow client holds no
database connection; a client that goes away cancels the sleep, and a poll in flight finishes
and closes its session. Events resume after Last-Event-ID; the stream ends after the job's
terminal status event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from service.core.config import Settings
from service.core.db import get_sessionmaker
from service.jobs.models import TERMINAL_STATUSES, Job, JobEvent

log = logging.getLogger("cttv2.jobs.stream")

BATCH = 500


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    data: dict

    def encode(self) -> bytes:
        payload = json.dumps(self.data, separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.kind}\ndata: {payload}\n\n".encode()

    @property
    def is_terminal(self) -> bool:
        return self.kind == "status" and self.data.get("status") in TERMINAL_STATUSES


def poll(job_id: int, after_id: int) -> tuple[list[Event], bool]:
    """(events after `after_id`, whether the job had ended before they were read).

    The status is read first: the worker ends a job and writes its terminal event in one
    transaction, so if the job had ended, the events read next include that last one."""
    with get_sessionmaker()() as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        rows = session.execute(
            select(JobEvent.id, JobEvent.kind, JobEvent.data)
            .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id)
            .limit(BATCH)
        ).all()
        session.rollback()  # end the read transaction before the connection goes back
    return [Event(r.id, r.kind, r.data) for r in rows], status is None or status in TERMINAL_STATUSES


async def events(job_id: int, after_id: int, settings: Settings) -> AsyncIterator[bytes]:
    """The body of the stream: events as they come, keep-alive comments while idle."""
    yield b"retry: 2000\n\n"
    last_sent = time.monotonic()
    delay = settings.sse_poll_s
    while True:
        try:
            batch, ended = await anyio.to_thread.run_sync(poll, job_id, after_id)
            delay = settings.sse_poll_s
        except SQLAlchemyError as exc:  # a database blip: keep the stream, try again later
            log.warning("events poll for job %s failed: %s", job_id, str(exc).splitlines()[0][:200])
            batch, ended = [], False
            delay = min(delay * 2, 10.0)
        for event in batch:
            after_id = event.id
            yield event.encode()
            last_sent = time.monotonic()
            if event.is_terminal:
                return
        if ended and len(batch) < BATCH:
            return  # ended before this poll and everything is sent (terminal event was earlier)
        if len(batch) == BATCH:
            continue  # more waiting: no sleep
        if time.monotonic() - last_sent >= settings.sse_keepalive_s:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(delay)
