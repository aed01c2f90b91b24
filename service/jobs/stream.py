"""GET /v1/jobs/{id}/events: the job's event log as server-sent events.

A new follower first reads what it missed (after Last-Event-ID) with polls of its own, in a
worker thread with a short session (an idle or slow client holds no database connection).
Once caught up it joins its process's hub: one poller per API process (per event loop) that
reads the new events of every followed job at once, one short transaction per poll interval
however many clients follow however many jobs, and hands each follower its job's events
through an in-memory queue. Following costs the server next to nothing while nothing
happens: one small query per interval, and keep-alive comments. The semantics are the
polling's: events in id order after Last-Event-ID, the stream ends after the job's terminal
status event (or when the job is gone), a database blip keeps the stream and retries later.
The same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from fastapi.responses import StreamingResponse
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.core.config import Settings, get_settings
from service.core.db import get_sessionmaker
from service.jobs.models import TERMINAL_STATUSES, Job, JobEvent
from service.users.models import User

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


def poll_many(after: dict[int, int]) -> tuple[dict[int, str], list[Event], list[int], bool]:
    """The hub's one read for all followed jobs: (status by job id, events after each job's
    position in id order, their job ids, whether the read was cut at its limit). Statuses
    first, as in poll: a job that had ended has its terminal event among the events read."""
    ids = list(after)
    limit = BATCH * 4
    with get_sessionmaker()() as session:
        statuses = {r.id: r.status for r in session.execute(select(Job.id, Job.status).where(Job.id.in_(ids)))}
        rows = session.execute(
            select(JobEvent.id, JobEvent.job_id, JobEvent.kind, JobEvent.data)
            .where(or_(*(and_(JobEvent.job_id == job_id, JobEvent.id > last) for job_id, last in after.items())))
            .order_by(JobEvent.id)
            .limit(limit)
        ).all()
        session.rollback()
    return (
        statuses,
        [Event(r.id, r.kind, r.data) for r in rows],
        [r.job_id for r in rows],
        len(rows) == limit,
    )


@dataclass(eq=False)
class _Follower:
    job_id: int
    after_id: int  # the last event handed to this follower
    queue: asyncio.Queue[tuple[list[Event], bool]] = field(default_factory=asyncio.Queue)


class _Hub:
    """The followers of one event loop (one API process) and their one poller task."""

    def __init__(self) -> None:
        self.followers: dict[int, set[_Follower]] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, job_id: int, after_id: int) -> _Follower:
        follower = _Follower(job_id, after_id)
        self.followers.setdefault(job_id, set()).add(follower)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="cttv2-events-hub")
        return follower

    def remove(self, follower: _Follower) -> None:
        group = self.followers.get(follower.job_id)
        if group is not None:
            group.discard(follower)
            if not group:
                del self.followers[follower.job_id]

    async def _run(self) -> None:
        delay = get_settings().sse_poll_s
        while self.followers:
            await asyncio.sleep(delay)
            if not self.followers:
                return
            # Who this read is for: a follower that joins while it is in flight waits for the
            # next one (its position may be older than what this one reads after).
            members = {job_id: list(group) for job_id, group in self.followers.items()}
            after = {job_id: min(f.after_id for f in group) for job_id, group in members.items()}
            try:
                statuses, batch, job_ids, cut = await anyio.to_thread.run_sync(poll_many, after)
                delay = get_settings().sse_poll_s
            except Exception as exc:  # noqa: BLE001 - a database blip: every stream stays, the hub retries
                if isinstance(exc, SQLAlchemyError):
                    log.warning("events poll for %d jobs failed: %s", len(after), str(exc).splitlines()[0][:200])
                else:
                    log.exception("events poll for %d jobs failed", len(after))
                delay = min(max(delay, 0.1) * 2, 10.0)
                continue
            by_job: dict[int, list[Event]] = {}
            for job_id, event in zip(job_ids, batch, strict=True):
                by_job.setdefault(job_id, []).append(event)
            for job_id, group in members.items():
                events = by_job.get(job_id, [])
                status = statuses.get(job_id)
                # Cut at the limit: a job's events read are a prefix of what is new (id
                # order), but its terminal event may lie beyond the cut: end nobody yet.
                ended = not cut and (status is None or status in TERMINAL_STATUSES)
                for follower in group:
                    mine = [e for e in events if e.id > follower.after_id]
                    if mine or ended:
                        if mine:
                            follower.after_id = mine[-1].id
                        follower.queue.put_nowait((mine, ended))
            if cut:
                delay = 0  # more waiting: read on at once


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = weakref.WeakKeyDictionary()


def _hub() -> _Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = _Hub()
    return hub


async def events(job_id: int, after_id: int, settings: Settings) -> AsyncIterator[bytes]:
    """The body of the stream: events as they come, keep-alive comments while idle."""
    yield b"retry: 2000\n\n"
    last_sent = time.monotonic()
    delay = settings.sse_poll_s
    # Catch up on our own (a resumed or late follower may have many events to read).
    while True:
        try:
            batch, ended = await anyio.to_thread.run_sync(poll, job_id, after_id)
        except SQLAlchemyError as exc:  # a database blip: keep the stream, try again later
            log.warning("events poll for job %s failed: %s", job_id, str(exc).splitlines()[0][:200])
            delay = min(delay * 2, 10.0)
            if time.monotonic() - last_sent >= settings.sse_keepalive_s:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(delay)
            continue
        for event in batch:
            after_id = event.id
            yield event.encode()
            last_sent = time.monotonic()
            if event.is_terminal:
                return
        if ended and len(batch) < BATCH:
            return  # ended before this poll and everything is sent (terminal event was earlier)
        if len(batch) < BATCH:
            break  # caught up: the hub takes over
    hub = _hub()
    follower = hub.add(job_id, after_id)
    try:
        while True:
            wait = settings.sse_keepalive_s - (time.monotonic() - last_sent)
            try:
                batch, ended = await asyncio.wait_for(follower.queue.get(), timeout=max(wait, 0.0))
            except TimeoutError:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
                continue
            for event in batch:
                yield event.encode()
                last_sent = time.monotonic()
                if event.is_terminal:
                    return
            if ended:
                return
    finally:
        hub.remove(follower)


def follow(session: Session, user: User, job_id: int, after_id: int) -> StreamingResponse:
    """GET /v1/jobs/{id}/events and the dashboard's /ui/jobs/{id}/events: the job's events
    after `after_id` as server-sent events, for its owner (another user's job is a 404). The
    request's connection goes back first: the stream polls with short sessions of its own."""
    from service.jobs import service as jobs

    jobs.get(session, user, job_id)
    session.close()
    return StreamingResponse(
        events(job_id, after_id, get_settings()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
