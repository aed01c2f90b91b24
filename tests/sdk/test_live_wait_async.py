"""jobs.wait on the live stack, through the test proxy (tests/support/httpproxy.py) that counts
what arrives: it follows the event stream instead of polling, and polls (with backoff) when
the stream is refused. And the AsyncClient end to end: submit, wait, metrics, download."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from cttv2_client import AsyncClient, Client, JobStatus, NotFound, RetryPolicy

from tests.sdk.conftest import FAST_RETRY
from tests.support.httpproxy import FaultyProxy, status
from tests.support.specs import TINY_FP, spec


@pytest.fixture(scope="module")
def proxy(live):
    p = FaultyProxy(live.url)
    yield p
    p.close()


@pytest.fixture(scope="module")
def via_proxy(proxy, token):
    with Client(proxy.url, token, retry=RetryPolicy(**FAST_RETRY)) as c:
        yield c


def test_wait_follows_the_event_stream_instead_of_polling(via_proxy, proxy):
    job = via_proxy.jobs.submit(spec(TINY_FP, name="wait-events"))
    seen = []
    done = via_proxy.jobs.wait(job.id, timeout=300, poll_interval=0.1, on_progress=seen.append, progress_bar=False)
    assert done.status is JobStatus.SUCCEEDED and done.result.test_accuracy is not None
    # A GET before and one after the terminal event; polling every 0.1 s would be dozens.
    assert len(proxy.seen("GET", f"/v1/jobs/{job.id}")) == 2
    assert len(proxy.seen("GET", f"/v1/jobs/{job.id}/events")) == 1
    assert seen[-1].status == "succeeded" and any(j.status == "running" for j in seen)
    steps = [j.progress.step for j in seen if j.progress]
    assert steps == sorted(steps) and steps[-1] == done.progress.total_steps


def test_wait_polls_with_backoff_when_the_stream_is_refused(via_proxy, proxy):
    job = via_proxy.jobs.submit(spec(TINY_FP, name="wait-polls", **{"training.epochs": 4}))  # a few polls long
    path = f"/v1/jobs/{job.id}/events"
    proxy.on("GET", path, status(404))  # an old server, or a proxy that forbids the stream
    done = via_proxy.jobs.wait(job.id, timeout=300, poll_interval=0.1, progress_bar=False)
    assert done.status == "succeeded"
    assert len(proxy.seen("GET", path)) == 1  # refused once: no more tries
    polls = [r.at for r in proxy.seen("GET", f"/v1/jobs/{job.id}")]
    gaps = [b - a for a, b in zip(polls[1:], polls[2:])]
    # Sleeps of 0.1 s, then doubling: the k-th gap between polls is at least 0.1 * 2^(k+1).
    assert len(gaps) >= 2 and all(gap >= 0.9 * 0.1 * 2 ** (k + 1) for k, gap in enumerate(gaps)), gaps


def test_async_client_submit_wait_metrics_download(live, token, tmp_path):
    async def run():
        async with AsyncClient(live.url, token, retry=RetryPolicy(**FAST_RETRY)) as c:
            assert await c.ready() and (await c.version())["api"] == "v1"
            job = await c.jobs.submit(spec(TINY_FP, name="async"), tags=["async-sdk"])
            assert job.status == "queued"
            seen = []
            done = await c.jobs.wait(job.id, timeout=300, on_progress=seen.append, progress_bar=False)
            metrics = await c.jobs.metrics(job.id)
            listing = {a.name: a for a in await c.artifacts.list(job.id)}
            path = await c.artifacts.download(job.id, "weights.safetensors", tmp_path)
            events = [e async for e in c.jobs.events(job.id)]
            listed = [j.id async for j in c.jobs.list(tag="async-sdk", page_size=1)]
            logs = await c.jobs.logs(job.id)
            lines = [line async for line in c.jobs.follow_logs(job.id)]
            again = await c.jobs.rerun(job.id)
            await c.jobs.cancel(again.id)
            record = await c.device_specs.create({"family": "SoftBounds", "dw_min": 0.01}, name="async-sb")
            assert (await c.device_specs.get(record.id)).spec["dw_min"] == 0.01
            assert record.id in [d.id async for d in c.device_specs.list()]
            await c.device_specs.delete(record.id)
            with pytest.raises(NotFound):
                await c.jobs.get(999999)
            return job, done, seen, metrics, listing, path, events, listed, logs, lines, again

    job, done, seen, metrics, listing, path, events, listed, logs, lines, again = asyncio.run(run())
    assert done.id == job.id and done.status is JobStatus.SUCCEEDED and seen[-1].status == "succeeded"
    assert {"train_loss", "test_accuracy"} <= set(metrics.keys)
    assert metrics.last("test_accuracy") == pytest.approx(done.result.test_accuracy)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == listing["weights.safetensors"].sha256
    assert events[0].data["status"] == "queued" and events[-1].data["status"] == "succeeded"
    assert listed == [job.id] and logs.done and lines == logs.lines
    assert again.rerun_of == job.id
    with Client(live.url, token) as sync:  # the same job, seen by the sync client
        assert sync.jobs.get(job.id).model_dump() == done.model_dump()
