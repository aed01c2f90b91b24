"""client.jobs: submit, read, list (with filters, or as a table), tag, wait for, stream and
cancel training jobs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from cttv2_client.calls import Call, Pager, delete, get, parse_model
from cttv2_client.errors import APIConnectionError, APIError
from cttv2_client.models import Artifact, Event, Job, LogChunk, Metrics
from cttv2_client.progress import make_display
from cttv2_client.specfile import apply_overrides, load_document
from cttv2_client.waiting import (
    STREAM_TIMEOUT,
    EventFollower,
    JobFollower,
    Watch,
    is_terminal,
    raise_for_outcome,
)

if TYPE_CHECKING:
    from cttv2_client.client import Client

__all__ = ["STREAM_TIMEOUT", "Jobs", "csv_value", "flatten", "job_table", "raise_for_outcome", "require_pandas"]


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
        self,
        spec: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
    ) -> Job:
        """Create a job from a dict, a YAML/JSON file path or a JobSpec model.

        overrides set dotted paths, e.g. {"training.epochs": 2, "model.pretrained": {"job": 7}}.
        tags and notes (not part of the spec; editable later with update) replace any the
        document gives.
        A retried submit reuses one Idempotency-Key, so it never creates a second job; pass
        your own key to make a resubmission from another process idempotent too.
        """
        return self._client.call(submit_call(spec, overrides, idempotency_key, tags, notes))

    def get(self, job_id: int) -> Job:
        return self._client.call(get_call(job_id))

    def list(
        self,
        status: str | None = None,
        *,
        tag: str | None = None,
        name: str | None = None,
        sweep: int | None = None,
        algorithm: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Job]:
        """Your jobs, newest first, fetched page by page as you iterate; the filters (all
        optional) must all hold: status, a tag the job has, a name prefix (case-sensitive), a
        sweep id, an algorithm, created at or after / before a time (a datetime or ISO text;
        no zone: UTC)."""
        filters = {
            "status": status,
            "tag": tag,
            "name": name,
            "sweep": sweep,
            "algorithm": algorithm,
            "created_after": created_after,
            "created_before": created_before,
        }
        return self._client.pages(list_pager(filters, page_size))

    def update(self, job_id: int, tags: Sequence[str] | None = None, notes: str | None = None) -> Job:
        """Set a job's tags (replacing them; [] removes all) and/or notes ("" removes them);
        what is None is left as it is. Works in any status."""
        return self._client.call(update_call(job_id, tags, notes))

    def to_pandas(self, **filters: Any) -> Any:  # a pandas.DataFrame; pandas is optional
        """Every job that list(**filters) gives (all pages) as a DataFrame, one row per job
        (needs pandas): id, name, status, algorithm, tags (joined by ","), created_at,
        finished_at, then the spec flattened with dotted names (device.sp_skew, training.lr,
        ...), then the final result's scalar values as result.<key> (result.test_accuracy,
        ...). The columns are those of job_table."""
        pd = require_pandas()
        columns, rows = job_table(self.list(**filters))
        return pd.DataFrame(rows, columns=columns)

    def cancel(self, job_id: int) -> Job:
        """Cancel: a queued job at once, a running one at its next batch boundary."""
        return self._client.call(cancel_call(job_id))

    def delete(self, job_id: int) -> None:
        """Delete a finished job (its record, metrics, logs and files). Raises Conflict while
        it is queued or running (cancel it first), NotFound if it is not yours or gone."""
        self._client.call(delete(f"/v1/jobs/{int(job_id)}"))

    def rerun(self, job_id: int, *, idempotency_key: str | None = None) -> Job:
        """A new job with the same spec (rerun_of = job_id); retried safely like submit."""
        return self._client.call(rerun_call(job_id, idempotency_key))

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

        Follows the job's event stream: on_progress(job) is called whenever its status or
        progress changes, and the wait ends as soon as the job does. Where the stream is not
        available (an old server, a proxy that forbids or buffers it, a stream that keeps
        breaking) it polls the job instead, every poll_interval seconds at first, doubling up
        to 10 s. A progress bar is shown when attached to a terminal or a notebook
        (progress_bar=True/False forces it), titled `label` (default "job ID").
        Raises JobFailed / JobCancelled (unless raise_on_failure=False) and WaitTimeout after
        `timeout` seconds; the job keeps running on the server either way.
        """
        job_id = job_id.id if isinstance(job_id, Job) else int(job_id)
        display = make_display(label or f"job {job_id}", progress_bar)
        watch: Watch[Job] = Watch(f"job {job_id}", display, on_progress, timeout, poll_interval)
        try:
            job = self._follow(job_id, watch)
        finally:
            display.close()
        if raise_on_failure:
            raise_for_outcome(job)
        return job

    def _follow(self, job_id: int, watch: Watch[Job]) -> Job:
        job = watch.report(self.get(job_id))
        if job.done:
            return job
        follower = JobFollower(watch, job, self._client.retry)
        while not follower.polling:
            headers, timeout = follower.connect()
            try:
                with self._client.stream("GET", follower.events.path, headers=headers, timeout=timeout) as response:
                    for line in response.iter_lines():
                        if follower.feed(line):
                            return watch.report(self.get(job_id))
            except (httpx.TransportError, APIError) as exc:
                follower.broke(exc)
            else:
                job = watch.report(self.get(job_id))
                if job.done:
                    return job
                follower.closed()
            if not follower.polling:
                self._client.sleep(follower.delay())
        job = follower.job
        while True:
            self._client.sleep(watch.next_poll(job))
            job = watch.report(self.get(job_id))
            if job.done:
                return job

    def events(self, job_id: int, *, last_event_id: str | None = None, reconnect: bool = True) -> Iterator[Event]:
        """The job's live events (status, progress, metrics) as they happen, from the start or
        after last_event_id. A dropped connection is resumed with Last-Event-ID, so no event
        is lost or repeated; the iterator ends after the job's terminal status event."""
        follower = EventFollower(int(job_id), last_event_id, reconnect, self._client.retry)
        while True:
            headers = follower.connect()
            try:
                with self._client.stream("GET", follower.path, headers=headers, timeout=STREAM_TIMEOUT) as response:
                    for line in response.iter_lines():
                        event = follower.feed(line)
                        if event is not None:
                            yield event
                            if is_terminal(event):
                                return
            except (httpx.TransportError, APIConnectionError) as exc:
                follower.broke(exc)
            else:
                ended = follower.closed()
                if ended == "stop" or (ended == "check" and self.get(job_id).done):
                    return
            self._client.sleep(follower.delay())

    def metrics(self, job_id: int, keys: Sequence[str] | None = None, since_step: int | None = None) -> Metrics:
        """The job's metric series (train_loss, test_accuracy, ...); .to_pandas() with pandas."""
        return self._client.call(metrics_call(job_id, keys, since_step))

    def logs(self, job_id: int, offset: int = 0) -> LogChunk:
        """Log lines from line `offset` on; next_offset continues, done means no more will come."""
        return self._client.call(logs_call(job_id, offset))

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


# -- the requests (shared with the async client) ----------------------------------------------
def submit_call(
    spec: Any,
    overrides: Mapping[str, Any] | None,
    idempotency_key: str | None,
    tags: Sequence[str] | None,
    notes: str | None,
) -> Call[Job]:
    body = apply_overrides(load_document(spec), overrides)
    if tags is not None:
        body["tags"] = list(tags)
    if notes is not None:
        body["notes"] = notes
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", "/v1/jobs", parse_model(Job), {"json": body, "headers": {"Idempotency-Key": key}})


def get_call(job_id: int) -> Call[Job]:
    return get(f"/v1/jobs/{int(job_id)}", Job)


def list_pager(filters: Mapping[str, Any], page_size: int | None) -> Pager[Job]:
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items() if v is not None}
    return Pager("/v1/jobs", Job, params, page_size)


def update_call(job_id: int, tags: Sequence[str] | None, notes: str | None) -> Call[Job]:
    body: dict[str, Any] = {}
    if tags is not None:
        body["tags"] = list(tags)
    if notes is not None:
        body["notes"] = notes
    # Setting the same values twice is the same as once, so the PATCH may be retried.
    return Call("PATCH", f"/v1/jobs/{int(job_id)}", parse_model(Job), {"json": body}, idempotent=True)


def cancel_call(job_id: int) -> Call[Job]:
    # Cancelling twice is the same as once, so the POST may be retried.
    return Call("POST", f"/v1/jobs/{int(job_id)}/cancel", parse_model(Job), idempotent=True)


def rerun_call(job_id: int, idempotency_key: str | None) -> Call[Job]:
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", f"/v1/jobs/{int(job_id)}/rerun", parse_model(Job), {"headers": {"Idempotency-Key": key}})


def metrics_call(job_id: int, keys: Sequence[str] | None, since_step: int | None) -> Call[Metrics]:
    params: dict[str, Any] = {}
    if keys:
        params["keys"] = ",".join(keys)
    if since_step is not None:
        params["since_step"] = since_step
    return get(f"/v1/jobs/{int(job_id)}/metrics", Metrics, params=params)


def logs_call(job_id: int, offset: int) -> Call[LogChunk]:
    return get(f"/v1/jobs/{int(job_id)}/logs", LogChunk, params={"offset": offset})


def require_pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("to_pandas needs pandas: pip install 'cttv2-client[pandas]'") from None
    return pd


# -- jobs as a table (to_pandas, `cttv2 jobs --csv`) ------------------------------------------------
JOB_COLUMNS = ("id", "name", "status", "algorithm", "tags", "created_at", "finished_at")


def job_table(jobs: Iterable[Job]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of jobs, one row (a dict) per job: JOB_COLUMNS (tags joined by ","),
    then every spec field by its dotted path (nested sections flattened; lists kept), then
    result.<key> for each scalar of the job's result. A column a job lacks is None in its row."""
    spec_cols: dict[str, None] = {}
    result_cols: dict[str, None] = {}
    rows = []
    for job in jobs:
        row: dict[str, Any] = {
            "id": job.id,
            "name": job.name,
            "status": job.status,
            "algorithm": job.algorithm,
            "tags": ",".join(job.tags),
            "created_at": job.created_at,
            "finished_at": job.finished_at,
        }
        for key, value in flatten(job.spec).items():
            if key not in JOB_COLUMNS:  # name and algorithm: the same as the job's
                spec_cols.setdefault(key)
                row[key] = value
        result = job.result.model_dump(mode="json", exclude_unset=True) if job.result else {}
        for key, value in result.items():
            if not isinstance(value, (dict, list)):
                result_cols.setdefault(f"result.{key}")
                row[f"result.{key}"] = value
        rows.append(row)
    columns = [*JOB_COLUMNS, *spec_cols, *result_cols]
    return columns, [{c: row.get(c) for c in columns} for row in rows]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict with dotted keys: {"device": {"sp_skew": 0.1}} -> {"device.sp_skew": 0.1};
    an empty section disappears, lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def csv_value(value: Any) -> str:
    """A table cell as CSV text: None empty, times in ISO 8601, lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
