"""AsyncClient: Client's surface for notebooks and async services, on httpx.AsyncClient.

    async with AsyncClient() as client:
        job = await client.jobs.submit("job.yaml")
        job = await client.jobs.wait(job.id)
        async for event in client.jobs.events(job.id): ...

It runs the very requests (cttv2_client.calls), retry rules (transport.RetryLoop) and wait /
stream / download state (waiting, artifacts.Download) of the sync Client through an async
transport: only the awaiting differs. Sleeps use anyio, so it works under asyncio and trio.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import anyio
import httpx

from cttv2_client.artifacts import Download
from cttv2_client.artifacts import list_call as artifacts_list_call
from cttv2_client.calls import Call, Pager, delete, get
from cttv2_client.client import __version__, resolve_settings
from cttv2_client.device_specs import create_call as device_spec_create_call
from cttv2_client.errors import APIConnectionError, APIError
from cttv2_client.jobs import (
    cancel_call,
    get_call,
    job_table,
    list_pager,
    logs_call,
    metrics_call,
    require_pandas,
    rerun_call,
    submit_call,
    update_call,
)
from cttv2_client.models import (
    APIModel,
    Artifact,
    DeviceSpecRecord,
    Event,
    Job,
    LogChunk,
    Metrics,
    Sweep,
    SweepReport,
    Weights,
)
from cttv2_client.progress import make_display
from cttv2_client.sweeps import cancel_call as sweep_cancel_call
from cttv2_client.sweeps import report_call
from cttv2_client.sweeps import submit_call as sweep_submit_call
from cttv2_client.transport import DEFAULT_TIMEOUT, AsyncTransport, RetryPolicy
from cttv2_client.waiting import (
    STREAM_TIMEOUT,
    EventFollower,
    JobFollower,
    Polled,
    Watch,
    is_terminal,
    raise_for_outcome,
)
from cttv2_client.weights import upload_call

M = TypeVar("M", bound=APIModel)
T = TypeVar("T")


class AsyncClient:
    """A connection to a cttv2 server for async code; the same resources and methods as Client
    (jobs, device_specs, artifacts, sweeps, weights), each a coroutine, and async iterators
    where Client returns iterators (jobs.list, jobs.events, jobs.follow_logs, ...).

        async with AsyncClient(url, token) as client:
            job = await client.jobs.wait((await client.jobs.submit(spec)).id)

    Use it as an async context manager or await close().
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_attempts: int | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        settings, retry = resolve_settings(base_url, token, retry, max_attempts)
        self.base_url: str = settings.url  # type: ignore[assignment]
        self._transport = AsyncTransport(
            self.base_url,
            settings.token,
            timeout=timeout,
            retry=retry,
            user_agent=f"cttv2-client/{__version__}",
            http_client=http_client,
        )
        self.jobs = AsyncJobs(self)
        self.device_specs = AsyncDeviceSpecs(self)
        self.artifacts = AsyncArtifacts(self)
        self.sweeps = AsyncSweeps(self)
        self.weights = AsyncWeightsFiles(self)

    # -- plumbing the resources share --------------------------------------------------------
    @property
    def retry(self) -> RetryPolicy:
        return self._transport.retry

    async def sleep(self, seconds: float) -> None:
        await self._transport.sleep(seconds)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Any API call, with the client's auth, retries and error mapping."""
        return await self._transport.request(method, path, **kwargs)

    def stream(self, method: str, path: str, **kwargs: Any) -> AbstractAsyncContextManager[httpx.Response]:
        return self._transport.stream(method, path, **kwargs)

    async def call(self, call: Call[T]) -> T:
        """Run one API call (see cttv2_client.calls) and parse its answer."""
        return call.parse(await self.request(call.method, call.path, idempotent=call.idempotent, **call.kwargs))

    async def pages(self, pager: Pager[M]) -> AsyncIterator[M]:
        """Items of a paged list endpoint, following next_cursor lazily."""
        while True:
            items, more = await self.call(pager.call())
            for item in items:
                yield item
            if not more:
                return

    # -- server-wide calls -----------------------------------------------------------------
    async def presets(self) -> dict[str, Any]:
        """Device families and presets (knobs, ranges, defaults), algorithms, models, datasets."""
        presets: dict[str, Any] = (await self.request("GET", "/v1/presets")).json()
        return presets

    async def version(self) -> dict[str, str]:
        version: dict[str, str] = (await self.request("GET", "/version")).json()
        return version

    async def ready(self) -> bool:
        """True when the server, its database and its broker are up."""
        try:  # one try, no retries: callers poll this
            return (await self._transport.http.get("/readyz", timeout=5)).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:  # noqa: PYI034 - no typing.Self on 3.10
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"


async def _wait_within(watch: Watch[Polled], body: Callable[[], Awaitable[Polled]]) -> Polled:
    """Run body() (a coroutine function returning the final item), raising WaitTimeout at the
    deadline even in the middle of a request."""
    result: Polled | None = None
    with anyio.move_on_after(watch.remaining()):
        result = await body()
    if result is None:
        raise watch.expired()
    return result


class AsyncJobs:
    """client.jobs of an AsyncClient: the methods of Jobs, as coroutines."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def submit(
        self,
        spec: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
    ) -> Job:
        """As Jobs.submit."""
        return await self._client.call(submit_call(spec, overrides, idempotency_key, tags, notes))

    async def get(self, job_id: int) -> Job:
        return await self._client.call(get_call(job_id))

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
    ) -> AsyncIterator[Job]:
        """As Jobs.list: `async for job in client.jobs.list(...)`."""
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

    async def update(self, job_id: int, tags: Sequence[str] | None = None, notes: str | None = None) -> Job:
        return await self._client.call(update_call(job_id, tags, notes))

    async def to_pandas(self, **filters: Any) -> Any:
        """As Jobs.to_pandas (needs pandas)."""
        pd = require_pandas()
        columns, rows = job_table([job async for job in self.list(**filters)])
        return pd.DataFrame(rows, columns=columns)

    async def cancel(self, job_id: int) -> Job:
        return await self._client.call(cancel_call(job_id))

    async def delete(self, job_id: int) -> None:
        await self._client.call(delete(f"/v1/jobs/{int(job_id)}"))

    async def rerun(self, job_id: int, *, idempotency_key: str | None = None) -> Job:
        return await self._client.call(rerun_call(job_id, idempotency_key))

    async def wait(
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
        """As Jobs.wait: follows the event stream (polling with backoff where there is none);
        on_progress is a plain function, called in the event loop."""
        job_id = job_id.id if isinstance(job_id, Job) else int(job_id)
        display = make_display(label or f"job {job_id}", progress_bar)
        watch: Watch[Job] = Watch(f"job {job_id}", display, on_progress, timeout, poll_interval)
        try:
            job = await _wait_within(watch, lambda: self._follow(job_id, watch))
        finally:
            display.close()
        if raise_on_failure:
            raise_for_outcome(job)
        return job

    async def _follow(self, job_id: int, watch: Watch[Job]) -> Job:
        job = watch.report(await self.get(job_id))
        if job.done:
            return job
        follower = JobFollower(watch, job, self._client.retry)
        while not follower.polling:
            headers, timeout = follower.connect()
            try:
                async with self._client.stream("GET", follower.events.path, headers=headers, timeout=timeout) as r:
                    async for line in r.aiter_lines():
                        if follower.feed(line):
                            return watch.report(await self.get(job_id))
            except (httpx.TransportError, APIError) as exc:
                follower.broke(exc)
            else:
                job = watch.report(await self.get(job_id))
                if job.done:
                    return job
                follower.closed()
            if not follower.polling:
                await self._client.sleep(follower.delay())
        job = follower.job
        while True:
            await self._client.sleep(watch.next_poll(job))
            job = watch.report(await self.get(job_id))
            if job.done:
                return job

    async def events(
        self, job_id: int, *, last_event_id: str | None = None, reconnect: bool = True
    ) -> AsyncIterator[Event]:
        """As Jobs.events: `async for event in client.jobs.events(job_id)`."""
        follower = EventFollower(int(job_id), last_event_id, reconnect, self._client.retry)
        while True:
            headers = follower.connect()
            try:
                async with self._client.stream("GET", follower.path, headers=headers, timeout=STREAM_TIMEOUT) as r:
                    async for line in r.aiter_lines():
                        event = follower.feed(line)
                        if event is not None:
                            yield event
                            if is_terminal(event):
                                return
            except (httpx.TransportError, APIConnectionError) as exc:
                follower.broke(exc)
            else:
                ended = follower.closed()
                if ended == "stop" or (ended == "check" and (await self.get(job_id)).done):
                    return
            await self._client.sleep(follower.delay())

    async def metrics(self, job_id: int, keys: Sequence[str] | None = None, since_step: int | None = None) -> Metrics:
        return await self._client.call(metrics_call(job_id, keys, since_step))

    async def logs(self, job_id: int, offset: int = 0) -> LogChunk:
        return await self._client.call(logs_call(job_id, offset))

    async def follow_logs(self, job_id: int, offset: int = 0, poll_interval: float = 1.0) -> AsyncIterator[str]:
        """As Jobs.follow_logs: `async for line in client.jobs.follow_logs(job_id)`."""
        while True:
            chunk = await self.logs(job_id, offset)
            for line in chunk.lines:
                yield line
            offset = chunk.next_offset
            if chunk.done:
                return
            if not chunk.lines:
                await self._client.sleep(poll_interval)

    async def artifacts(self, job_id: int) -> Sequence[Artifact]:
        return await self._client.artifacts.list(job_id)


class AsyncArtifacts:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, job_id: int) -> list[Artifact]:
        return await self._client.call(artifacts_list_call(job_id))

    async def download(self, job_id: int, name: str, path: str | os.PathLike[str] | None = None) -> Path:
        """As Artifacts.download (resumed, checked against the sha256). The file is written
        with plain blocking writes as chunks arrive."""
        d = Download(job_id, name, path, self._client.retry)
        while True:
            headers = d.start()
            try:
                async with self._client.stream("GET", d.url, **d.request_options(headers)) as r:
                    step = d.begin(r)
                    if step == "again":
                        continue
                    if step == "write":
                        with d.open() as fh:
                            async for chunk in r.aiter_bytes():
                                d.write(fh, chunk)
                            d.flush(fh)
                break
            except (httpx.TransportError, APIConnectionError) as exc:
                await self._client.sleep(d.broke(exc))
        if d.expected is None:
            d.expected = next((a.sha256 for a in await self.list(job_id) if a.name == name), None)
        return d.finish()


class AsyncDeviceSpecs:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, spec: Any, name: str | None = None) -> DeviceSpecRecord:
        return await self._client.call(device_spec_create_call(spec, name))

    async def get(self, spec_id: int) -> DeviceSpecRecord:
        return await self._client.call(get(f"/v1/device-specs/{int(spec_id)}", DeviceSpecRecord))

    def list(self, *, page_size: int | None = None) -> AsyncIterator[DeviceSpecRecord]:
        return self._client.pages(Pager("/v1/device-specs", DeviceSpecRecord, {}, page_size))

    async def delete(self, spec_id: int) -> None:
        await self._client.call(delete(f"/v1/device-specs/{int(spec_id)}"))


class AsyncSweeps:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def submit(
        self,
        sweep: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Sweep:
        return await self._client.call(sweep_submit_call(sweep, overrides, idempotency_key))

    async def get(self, sweep_id: int) -> Sweep:
        return await self._client.call(get(f"/v1/sweeps/{int(sweep_id)}", Sweep))

    def list(self, *, page_size: int | None = None) -> AsyncIterator[Sweep]:
        return self._client.pages(Pager("/v1/sweeps", Sweep, {}, page_size))

    def jobs(self, sweep_id: int, *, page_size: int | None = None) -> AsyncIterator[Job]:
        return self._client.pages(Pager(f"/v1/sweeps/{int(sweep_id)}/jobs", Job, {}, page_size))

    async def cancel(self, sweep_id: int) -> Sweep:
        return await self._client.call(sweep_cancel_call(sweep_id))

    async def delete(self, sweep_id: int) -> None:
        await self._client.call(delete(f"/v1/sweeps/{int(sweep_id)}"))

    async def wait(
        self,
        sweep_id: int | Sweep,
        timeout: float | None = None,
        *,
        on_progress: Callable[[Sweep], None] | None = None,
        poll_interval: float = 2.0,
        progress_bar: bool | None = None,
    ) -> Sweep:
        """As Sweeps.wait (polling with backoff)."""
        sweep_id = sweep_id.id if isinstance(sweep_id, Sweep) else int(sweep_id)
        display = make_display(f"sweep {sweep_id}", progress_bar)
        watch: Watch[Sweep] = Watch(f"sweep {sweep_id}", display, on_progress, timeout, poll_interval)

        async def poll() -> Sweep:
            while True:
                sweep = watch.report(await self.get(sweep_id))
                if sweep.done:
                    return sweep
                await self._client.sleep(watch.next_poll(sweep))

        try:
            return await _wait_within(watch, poll)
        finally:
            display.close()

    @overload
    async def report(self, sweep_id: int, format: Literal["json"] = "json") -> SweepReport: ...
    @overload
    async def report(self, sweep_id: int, format: Literal["csv"]) -> str: ...
    @overload
    async def report(self, sweep_id: int, format: Literal["png"]) -> bytes: ...

    async def report(self, sweep_id: int, format: str = "json") -> SweepReport | str | bytes:
        return await self._client.call(report_call(sweep_id, format))


class AsyncWeightsFiles:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def upload(
        self, path: str | os.PathLike[str], arch: str, name: str | None = None, img_size: int | None = None
    ) -> Weights:
        path = Path(path)
        # httpx reads the file with blocking reads as it sends it, as the sync client does.
        with open(path, "rb") as fh:  # noqa: ASYNC230
            return await self._client.call(upload_call(path, fh, arch, name, img_size))

    async def get(self, weights_id: int) -> Weights:
        return await self._client.call(get(f"/v1/weights/{int(weights_id)}", Weights))

    def list(self, *, page_size: int | None = None) -> AsyncIterator[Weights]:
        return self._client.pages(Pager("/v1/weights", Weights, {}, page_size))

    async def delete(self, weights_id: int) -> None:
        await self._client.call(delete(f"/v1/weights/{int(weights_id)}"))
