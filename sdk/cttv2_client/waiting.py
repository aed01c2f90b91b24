"""How jobs.events, jobs.wait and sweeps.wait behave, without I/O: the state and the decisions
that the sync resources (Client) and the async ones (AsyncClient) both run, each through its
own transport, so the two cannot drift apart.

wait follows the job's event stream: status and progress events update the job it reports,
and the terminal status event ends the wait (one GET then returns the final job). When the
stream cannot be opened (a 404 from an old server, a proxy that forbids it), delivers nothing
(a proxy that buffers it) or breaks STREAM_FAILURES times in a row, wait polls the job instead,
every poll_interval at first, doubling up to MAX_POLL_INTERVAL. A sweep has no event stream:
its wait polls the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import httpx

from cttv2_client.errors import (
    APIConnectionError,
    APIError,
    JobCancelled,
    JobFailed,
    RateLimited,
    ServerError,
    WaitTimeout,
)
from cttv2_client.models import TERMINAL_JOB_STATUSES, Event, Job, JobStatus, Progress, Sweep, parse_status
from cttv2_client.progress import Display
from cttv2_client.sse import SSEParser
from cttv2_client.transport import RetryPolicy

# Reading an event stream: the server sends keep-alive comments while idle (every 15 s by
# default), so a long silence means a dead connection.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=90.0)
# wait's stream: a shorter silence ends a connection (wait reconnects, or with nothing ever
# received, e.g. behind a proxy that buffers the stream, falls back to polling).
WAIT_STREAM_READ_S = 30.0
STREAM_FAILURES = 3  # broken event streams in a row before wait falls back to polling
MAX_POLL_INTERVAL = 10.0  # the polling backoff's ceiling (or poll_interval, if longer)

Polled = TypeVar("Polled", Job, Sweep)


def status_of(event: Event) -> str | None:
    return event.data.get("status") if isinstance(event.data, dict) else None


def is_terminal(event: Event) -> bool:
    return event.event == "status" and status_of(event) in TERMINAL_JOB_STATUSES


class EventFollower:
    """jobs.events: the SSE parser and the reconnect rules. A dropped connection is resumed
    with Last-Event-ID; `retry.max_attempts` failures in a row give up."""

    def __init__(self, job_id: int, last_event_id: str | None, reconnect: bool, retry: RetryPolicy) -> None:
        self.job_id = job_id
        self.path = f"/v1/jobs/{int(job_id)}/events"
        self.parser = SSEParser(last_event_id=last_event_id)
        self.reconnect = reconnect
        self.retry = retry
        self.failures = 0
        self.empty_in_a_row = 0
        self.got_event = False  # on the current connection
        self.got_line = False  # anything at all (the server sends a retry: line first)

    def connect(self) -> dict[str, str]:
        """The headers of a new connection; drops a partly received event."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.parser.last_event_id:
            headers["Last-Event-ID"] = self.parser.last_event_id
        self.got_event = self.got_line = False
        self.parser.reset()
        return headers

    def feed(self, line: str) -> Event | None:
        self.got_line = True
        event = self.parser.feed(line.rstrip("\r\n"))
        if event is not None:
            self.got_event, self.failures = True, 0
        return event

    def broke(self, exc: Exception) -> None:
        """The connection failed: raise APIConnectionError when giving up, else return (the
        caller sleeps delay() and reconnects)."""
        if not self.reconnect:
            raise APIConnectionError(f"event stream of job {self.job_id} broke: {exc}") from exc
        self.failures += 1
        if self.failures >= self.retry.max_attempts:
            raise APIConnectionError(f"event stream of job {self.job_id} broke {self.failures} times: {exc}") from exc

    def closed(self) -> Literal["stop", "check", "reconnect"]:
        """The server closed the stream before a terminal event: a restart or a cut (reconnect),
        or a stream that began after the end (nothing to send, twice in a row: "check" whether
        the job is done, and stop if so)."""
        self.empty_in_a_row = 0 if self.got_event else self.empty_in_a_row + 1
        if not self.reconnect:
            return "stop"
        return "check" if self.empty_in_a_row >= 2 else "reconnect"

    def delay(self) -> float:
        if self.parser.retry_ms is not None:
            return self.parser.retry_ms / 1000
        return self.retry.delay(max(self.failures, 1))


class Watch(Generic[Polled]):
    """A wait's bookkeeping: the deadline, reporting each change to the display and to
    on_progress, and the polling backoff (poll_interval, doubling up to MAX_POLL_INTERVAL)."""

    def __init__(
        self,
        what: str,
        display: Display,
        on_progress: Callable[[Polled], None] | None,
        timeout: float | None,
        poll_interval: float,
    ) -> None:
        self.what = what
        self.display = display
        self.on_progress: Callable[[Polled], None] | None = on_progress
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = max(0.0, poll_interval)
        self.max_interval = max(MAX_POLL_INTERVAL, self.interval)
        self._last_seen: Any = None
        self.last: Polled | None = None  # the last item reported

    def report(self, item: Polled) -> Polled:
        """Show item if its status or progress changed since the last report; returns it."""
        self.last = item
        seen = item.model_dump(mode="json", include={"status", "progress", "counts", "result"})
        if seen != self._last_seen:
            self._last_seen = seen
            self.display.update(item)
            if self.on_progress is not None:
                self.on_progress(item)
        return item

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check(self, item: Polled) -> None:
        """Raise WaitTimeout once the deadline has passed."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise self.expired(item)

    def expired(self, item: Polled | None = None) -> WaitTimeout:
        item = item or self.last
        status = f"still {item.status}" if item is not None else "not done"
        return WaitTimeout(f"{self.what} is {status} after {self.timeout:g} s")

    def capped(self, seconds: float) -> float:
        """seconds, but not past the deadline."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def next_poll(self, item: Polled) -> float:
        """Seconds to sleep before the next poll (WaitTimeout if the time is up)."""
        self.check(item)
        pause = self.capped(self.interval)
        self.interval = min(self.max_interval, max(self.interval * 2, 0.1))
        return pause


class JobFollower:
    """A job's wait over its event stream: applies status and progress events to the job it
    reports, and decides when to give the stream up for polling (`polling` turns True).

    The stream replays the job's events from its start, while the job wait began from (a GET)
    may be further on: status events count only once the stream has reached that job's status
    (and attempt), and a progress event never moves the step back within one attempt."""

    def __init__(self, watch: Watch[Job], job: Job, retry: RetryPolicy) -> None:
        self.watch = watch
        self.job = job
        self.events = EventFollower(job.id, None, True, retry)
        self.polling = False
        self.failures = 0
        self._caught_up = False

    def connect(self) -> tuple[dict[str, str], httpx.Timeout]:
        """(headers, timeout) of a new connection; the read timeout ends at the deadline."""
        self.watch.check(self.job)
        read = self.watch.capped(WAIT_STREAM_READ_S)
        return self.events.connect(), httpx.Timeout(min(10.0, max(read, 0.05)), read=max(read, 0.05))

    def feed(self, line: str) -> bool:
        """Take one line of the stream; True at the job's terminal status event (the caller
        then fetches the final job)."""
        event = self.events.feed(line)
        if event is not None:
            if is_terminal(event):
                return True
            self._apply(event)
        self.watch.check(self.job)
        return False

    def _apply(self, event: Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        job = self.job
        if event.event == "status" and data.get("status") is not None:
            status = parse_status(JobStatus, data["status"])
            attempt = data.get("attempt")
            if not self._caught_up:
                same_attempt = status != JobStatus.RUNNING or attempt in (None, job.attempt)
                self._caught_up = status == job.status and same_attempt
                return  # history from before the job wait began with
            update: dict[str, Any] = {"status": status}
            if status == JobStatus.RUNNING and isinstance(attempt, int) and attempt != job.attempt:
                update.update(attempt=attempt, progress=None)  # a resumed run counts afresh
            job = job.model_copy(update=update)
        elif event.event == "progress" and data:
            progress = Progress.model_validate(data)
            now = job.progress
            if now is None or now.step is None or progress.step is None or progress.step >= now.step:
                job = job.model_copy(update={"progress": progress})
        else:
            return
        self.job = self.watch.report(job)

    def broke(self, exc: Exception) -> None:
        """The stream could not be opened or failed: WaitTimeout if the time is up; else polling
        from now on when the server has no stream for it (a 4xx such as a 404), nothing ever
        arrived before a read timeout (a buffering proxy), or it failed STREAM_FAILURES times in
        a row; else the caller reconnects after delay()."""
        self.watch.check(self.job)
        refused = isinstance(exc, APIError) and not isinstance(exc, (ServerError, RateLimited))
        buffered = isinstance(exc, httpx.ReadTimeout) and not self.events.got_line
        self.failures = 1 if self.events.got_event else self.failures + 1
        if refused or buffered or self.failures >= STREAM_FAILURES:
            self.polling = True

    def closed(self) -> None:
        """The server ended the stream before the terminal event and the job (just fetched) is
        not done: reconnect, or poll after STREAM_FAILURES such empty streams in a row."""
        self.failures = 0 if self.events.got_event else self.failures + 1
        if self.failures >= STREAM_FAILURES:
            self.polling = True

    def delay(self) -> float:
        delay = self.events.delay() if self.failures == 0 else self.events.retry.delay(self.failures)
        return self.watch.capped(delay)


def raise_for_outcome(job: Job) -> None:
    if job.status == JobStatus.FAILED:
        reason = f"{job.error.code}: {job.error.message}" if job.error else "no reason given"
        raise JobFailed(f"job {job.id} failed ({reason})", job)
    if job.status == JobStatus.CANCELLED:
        raise JobCancelled(f"job {job.id} was cancelled", job)
