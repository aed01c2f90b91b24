"""client.jobs: submit, read, list, wait for, stream and cancel training jobs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from cttv2_client.errors import APIConnectionError, JobCancelled, JobFailed, WaitTimeout
from cttv2_client.models import TERMINAL_JOB_STATUSES, Artifact, Event, Job, LogChunk, Metrics, Sweep
from cttv2_client.progress import Display, make_display
from cttv2_client.specfile import apply_overrides, load_document
from cttv2_client.sse import SSEParser, iter_events

if TYPE_CHECKING:
    from cttv2_client.client import Client

# Reading an event stream: the server sends keep-alive comments while idle, so a long silence
# means a dead connection.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=90.0)


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
        self,
        spec: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create a job from a dict, a YAML/JSON file path or a JobSpec model.

        overrides set dotted paths, e.g. {"training.epochs": 2, "model.pretrained": {"job": 7}}.
        A retried submit reuses one Idempotency-Key, so it never creates a second job; pass
        your own key to make a resubmission from another process idempotent too.
        """
        body = apply_overrides(load_document(spec), overrides)
        key = idempotency_key or str(uuid.uuid4())
        r = self._client.request("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        return Job.model_validate(r.json())

    def get(self, job_id: int) -> Job:
        return Job.model_validate(self._client.request("GET", f"/v1/jobs/{int(job_id)}").json())

    def list(self, status: str | None = None, *, page_size: int | None = None) -> Iterator[Job]:
        """Every job of yours, newest first, fetched page by page as you iterate."""
        params = {"status": status} if status else {}
        return self._client.paginate("/v1/jobs", Job, params, page_size)

    def cancel(self, job_id: int) -> Job:
        """Cancel: a queued job at once, a running one at its next batch boundary."""
        # Cancelling twice is the same as once, so the POST may be retried.
        r = self._client.request("POST", f"/v1/jobs/{int(job_id)}/cancel", idempotent=True)
        return Job.model_validate(r.json())

    def delete(self, job_id: int) -> None:
        """Delete a finished job (its record, metrics, logs and files). Raises Conflict while
        it is queued or running (cancel it first), NotFound if it is not yours or gone."""
        self._client.request("DELETE", f"/v1/jobs/{int(job_id)}")

    def rerun(self, job_id: int, *, idempotency_key: str | None = None) -> Job:
        """A new job with the same spec (rerun_of = job_id); retried safely like submit."""
        key = idempotency_key or str(uuid.uuid4())
        r = self._client.request("POST", f"/v1/jobs/{int(job_id)}/rerun", headers={"Idempotency-Key": key})
        return Job.model_validate(r.json())

    def wait(
        self,
        job_id: int | Job,
        timeout: float | None = None,
        *,
        on_progress: Callable[[Job], None] | None = None,
        poll_interval: float = 1.0,
        progress_bar: bool | None = None,
        label: str | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Block until the job ends and return it.

        on_progress(job) is called whenever its status or progress changes. A progress bar is
        shown when attached to a terminal or a notebook (progress_bar=True/False forces it),
        titled `label` (default "job ID").
        Raises JobFailed / JobCancelled (unless raise_on_failure=False) and WaitTimeout after
        `timeout` seconds; the job keeps running on the server either way.
        """
        job_id = job_id.id if isinstance(job_id, Job) else int(job_id)
        display = make_display(label or f"job {job_id}", progress_bar)
        try:
            job = poll_until_done(
                lambda: self.get(job_id),
                display,
                on_progress,
                timeout,
                poll_interval,
                what=f"job {job_id}",
            )
        finally:
            display.close()
        if raise_on_failure:
            raise_for_outcome(job)
        return job

    def events(self, job_id: int, *, last_event_id: str | None = None, reconnect: bool = True) -> Iterator[Event]:
        """The job's live events (status, progress, metrics) as they happen, from the start or
        after last_event_id. A dropped connection is resumed with Last-Event-ID, so no event
        is lost or repeated; the iterator ends after the job's terminal status event."""
        path = f"/v1/jobs/{int(job_id)}/events"
        parser = SSEParser(last_event_id=last_event_id)
        retry = self._client.retry
        failures = empty_in_a_row = 0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if parser.last_event_id:
                headers["Last-Event-ID"] = parser.last_event_id
            got_any = False
            parser.reset()
            try:
                with self._client.stream("GET", path, headers=headers, timeout=STREAM_TIMEOUT) as response:
                    for event in iter_events(response.iter_lines(), parser):
                        got_any, failures = True, 0
                        yield event
                        if event.event == "status" and _status_of(event) in TERMINAL_JOB_STATUSES:
                            return
            except (httpx.TransportError, APIConnectionError) as exc:
                if not reconnect:
                    raise APIConnectionError(f"event stream of job {job_id} broke: {exc}") from exc
                failures += 1
                if failures >= retry.max_attempts:
                    raise APIConnectionError(f"event stream of job {job_id} broke {failures} times: {exc}") from exc
            else:
                # Closed before a terminal event: a restart or a cut (reconnect), or a stream that
                # began after the end (nothing to send, twice in a row, for a finished job).
                empty_in_a_row = 0 if got_any else empty_in_a_row + 1
                if not reconnect or (empty_in_a_row >= 2 and self.get(job_id).done):
                    return
            delay = parser.retry_ms / 1000 if parser.retry_ms is not None else retry.delay(max(failures, 1))
            self._client.sleep(delay)

    def metrics(self, job_id: int, keys: Sequence[str] | None = None, since_step: int | None = None) -> Metrics:
        """The job's metric series (train_loss, test_accuracy, ...); .to_pandas() with pandas."""
        params: dict[str, Any] = {}
        if keys:
            params["keys"] = ",".join(keys)
        if since_step is not None:
            params["since_step"] = since_step
        return Metrics.model_validate(
            self._client.request("GET", f"/v1/jobs/{int(job_id)}/metrics", params=params).json()
        )

    def logs(self, job_id: int, offset: int = 0) -> LogChunk:
        """Log lines from line `offset` on; next_offset continues, done means no more will come."""
        r = self._client.request("GET", f"/v1/jobs/{int(job_id)}/logs", params={"offset": offset})
        return LogChunk.model_validate(r.json())

    def follow_logs(self, job_id: int, offset: int = 0, poll_interval: float = 1.0) -> Iterator[str]:
        """Log lines as they are written, until the job has ended and every line was read."""
        while True:
            chunk = self.logs(job_id, offset)
            yield from chunk.lines
            offset = chunk.next_offset
            if chunk.done:
                return
            if not chunk.lines:
                self._client.sleep(poll_interval)

    def artifacts(self, job_id: int) -> Sequence[Artifact]:
        """Shortcut for client.artifacts.list(job_id)."""
        return self._client.artifacts.list(job_id)


def _status_of(event: Event) -> str | None:
    return event.data.get("status") if isinstance(event.data, dict) else None


Polled = TypeVar("Polled", Job, Sweep)


def poll_until_done(
    fetch: Callable[[], Polled],
    display: Display,
    on_progress: Callable[[Polled], None] | None,
    timeout: float | None,
    poll_interval: float,
    what: str,
) -> Polled:
    """Fetch until .done, reporting each change to the display and the callback."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_seen = None
    while True:
        item = fetch()
        seen = item.model_dump(mode="json", include={"status", "progress", "counts", "result"})
        if seen != last_seen:
            last_seen = seen
            display.update(item)
            if on_progress is not None:
                on_progress(item)
        if item.done:
            return item
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"{what} is still {item.status} after {timeout:g} s")
        pause = poll_interval if deadline is None else min(poll_interval, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)


def raise_for_outcome(job: Job) -> None:
    if job.status == "failed":
        reason = f"{job.error.code}: {job.error.message}" if job.error else "no reason given"
        raise JobFailed(f"job {job.id} failed ({reason})", job)
    if job.status == "cancelled":
        raise JobCancelled(f"job {job.id} was cancelled", job)
