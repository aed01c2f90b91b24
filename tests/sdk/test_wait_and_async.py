"""jobs.wait following the event stream (and its polling fallback), the AsyncClient's parity with
Client, the status enums and the sweep report's fields: against a small API on a real local
HTTP server (tests/sdk/fakeapi.py) and the server's own models; no live stack, seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cttv2_client import (
    AsyncClient,
    Client,
    Job,
    JobCancelled,
    JobStatus,
    RateLimited,
    RetryPolicy,
    ServerError,
    Sweep,
    SweepReport,
    SweepStatus,
    WaitTimeout,
)
from cttv2_client import waiting as waiting_module
from cttv2_client.models import ACTIVE_JOB_STATUSES, TERMINAL_JOB_STATUSES, TERMINAL_SWEEP_STATUSES, APIModel

from tests.sdk.fakeapi import EMPTY, NOT_FOUND, SILENT, Answer, FakeAPI, running_job

FAST = RetryPolicy(backoff_base=0.05, backoff_max=0.2)
JOB = "/v1/jobs/1"
EVENTS = "/v1/jobs/1/events"


@pytest.fixture
def make_api():
    made: list[FakeAPI] = []

    def make(timeline: Any, **kwargs: Any) -> FakeAPI:
        api = FakeAPI(timeline, **kwargs)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


def wait_with(kind: str, api: FakeAPI, **kwargs: Any) -> tuple[Job, list[Job]]:
    """jobs.wait through a Client or an AsyncClient; (the job, what on_progress saw)."""
    seen: list[Job] = []
    kwargs = {"progress_bar": False, "on_progress": seen.append, **kwargs}
    if kind == "sync":
        with Client(api.url, "t", retry=FAST) as c:
            return c.jobs.wait(api.job_id, **kwargs), seen

    async def run() -> Job:
        async with AsyncClient(api.url, "t", retry=FAST) as c:
            return await c.jobs.wait(api.job_id, **kwargs)

    return asyncio.run(run()), seen


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_wait_follows_the_event_stream(make_api, kind):
    api = make_api(running_job(end_at=1.5, steps=5))
    job, seen = wait_with(kind, api, timeout=20, poll_interval=0.05)
    ended = api.start + 1.5
    assert job.status == JobStatus.SUCCEEDED == "succeeded" and job.result.test_accuracy == 0.9
    assert time.monotonic() - ended < 0.8  # returns as the job ends, not at a poll
    # One GET before, one after the terminal event: no polling (at 0.05 s it would be ~30).
    assert len(api.seen("GET", JOB)) == 2 and len(api.seen("GET", EVENTS)) == 1
    assert [j.status for j in seen][0] == "queued" and seen[-1].status == "succeeded"
    statuses = [j.status for j in seen]
    assert statuses == sorted(statuses, key=["queued", "running", "succeeded"].index)
    steps = [j.progress.step for j in seen if j.progress and j.status == "running"]
    assert steps == [1, 2, 3, 4, 5]  # each progress event reported once, in order


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_wait_joining_late_does_not_replay_old_progress(make_api, kind):
    api = make_api(running_job(end_at=2.0, steps=4))
    time.sleep(1.3)  # running, at step 2 or 3
    job, seen = wait_with(kind, api, timeout=20)
    first = seen[0]
    assert first.status == "running" and first.progress.step >= 2
    steps = [j.progress.step for j in seen if j.progress]
    assert steps == sorted(steps) and steps[-1] == 4
    assert [j.status for j in seen if j.status != "running"] == ["succeeded"]  # no replayed "queued"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("mode", [NOT_FOUND, SILENT, EMPTY])
def test_wait_falls_back_to_polling_with_backoff(make_api, monkeypatch, kind, mode):
    monkeypatch.setattr(waiting_module, "WAIT_STREAM_READ_S", 0.3)  # the silent stream's limit
    api = make_api(running_job(end_at=1.2), events_mode=mode)
    job, seen = wait_with(kind, api, timeout=20, poll_interval=0.05, raise_on_failure=False)
    assert job.status == "succeeded" and seen[-1].status == "succeeded"
    streams = len(api.seen("GET", EVENTS))
    assert streams == (3 if mode == EMPTY else 1)  # a 404 or a silent stream: polling at once
    polls = [r.at for r in api.seen("GET", JOB)]
    first_poll = 1 + (3 if mode == EMPTY else 0)  # the first GET; an empty stream's check GETs
    gaps = [b - a for a, b in zip(polls[first_poll:], polls[first_poll + 1 :])]
    # Sleeps of 0.05 s, then doubling: the k-th gap between polls is at least 0.05 * 2^(k+1).
    assert len(gaps) >= 2 and len(polls) - first_poll <= 8, gaps
    assert all(gap >= 0.9 * 0.05 * 2 ** (k + 1) for k, gap in enumerate(gaps)), gaps


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_wait_times_out_on_time(make_api, kind):
    api = make_api([(0.0, "status", {"status": "queued"})], keepalive_s=5.0)  # never runs, quiet stream
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="job 1 is still queued after 0.6 s"):
        wait_with(kind, api, timeout=0.6)
    assert 0.55 < time.monotonic() - started < 1.5


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_wait_raises_for_a_cancelled_job(make_api, kind):
    api = make_api(running_job(end_at=0.5, status="cancelled"))
    with pytest.raises(JobCancelled) as info:
        wait_with(kind, api, timeout=20)
    assert info.value.job.status == JobStatus.CANCELLED


def test_async_events_match_the_sync_ones(make_api):
    api = make_api(running_job(end_at=0.8))
    with Client(api.url, "t", retry=FAST) as c:
        sync_events = list(c.jobs.events(1))

    async def collect() -> list[Any]:
        async with AsyncClient(api.url, "t", retry=FAST) as c:
            return [e async for e in c.jobs.events(1)]

    async_events = asyncio.run(collect())
    assert [(e.id, e.event, e.data) for e in async_events] == [(e.id, e.event, e.data) for e in sync_events]
    assert sync_events[-1].data == {"status": "succeeded"} and len(sync_events) == 11
    with Client(api.url, "t", retry=FAST) as c:  # resumed after an event id: the rest only
        assert [e.id for e in c.jobs.events(1, last_event_id="9")] == ["10", "11"]


def test_sync_and_async_retry_the_same_way(make_api):
    """Overload 429s and 503s are retried (idempotent calls only); a quota 429 and a 500 at once."""

    async def with_async(call: str) -> Any:
        async with AsyncClient(api.url, "t", retry=FAST) as c:
            return await (c.jobs.get(1) if call == "get" else c.jobs.submit({"name": "x"}))

    def with_sync(call: str) -> Any:
        with Client(api.url, "t", retry=FAST) as c:
            return c.jobs.get(1) if call == "get" else c.jobs.submit({"name": "x"})

    api = make_api(running_job(end_at=0.1))
    for run in (with_sync, lambda call: asyncio.run(with_async(call))):
        before = len(api.seen("GET", JOB))
        api.on("GET", JOB, Answer(503), Answer(429, "rate_limited", retry_after="0"), Answer(502))
        assert run("get").id == 1
        assert len(api.seen("GET", JOB)) - before == 4

        before = len(api.seen("POST", "/v1/jobs"))
        api.on("POST", "/v1/jobs", Answer(503), Answer(429, "too_many_active_jobs"))
        with pytest.raises(RateLimited) as info:  # the submit's key makes it retryable, the quota does not
            run("submit")
        assert info.value.code == "too_many_active_jobs"
        posts = api.seen("POST", "/v1/jobs")[before:]
        assert len(posts) == 2 and posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]

        before = len(api.seen("GET", JOB))
        api.on("GET", JOB, Answer(500))
        with pytest.raises(ServerError):
            run("get")
        assert len(api.seen("GET", JOB)) - before == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sweep_wait_polls_with_backoff(make_api, kind):
    api = make_api([])
    running = {"id": 3, "status": "running", "total_jobs": 2, "counts": {"running": 1, "succeeded": 1}}
    api.serve("/v1/sweeps/3", *[running] * 4, {**running, "status": "partial", "counts": {"failed": 1, "succeeded": 1}})
    seen: list[Sweep] = []
    kwargs: dict[str, Any] = {"timeout": 20, "poll_interval": 0.05, "progress_bar": False, "on_progress": seen.append}
    if kind == "sync":
        with Client(api.url, "t", retry=FAST) as c:
            sweep = c.sweeps.wait(3, **kwargs)
    else:

        async def run() -> Sweep:
            async with AsyncClient(api.url, "t", retry=FAST) as c:
                return await c.sweeps.wait(3, **kwargs)

        sweep = asyncio.run(run())
    assert sweep.status == SweepStatus.PARTIAL and sweep.done
    assert [s.status for s in seen] == ["running", "partial"]
    polls = [r.at for r in api.seen("GET", "/v1/sweeps/3")]
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    assert len(polls) == 5 and all(gap >= 0.9 * 0.05 * 2**k for k, gap in enumerate(gaps)), gaps  # doubling


def test_status_enums_match_the_server_and_tolerate_new_statuses():
    from service.jobs.models import JobStatus as ServerJobStatus
    from service.sweeps.schemas import PARTIAL

    assert [s.value for s in JobStatus] == [s.value for s in ServerJobStatus]
    assert {s.value for s in SweepStatus} == {s.value for s in ServerJobStatus} | {PARTIAL}
    assert set(TERMINAL_JOB_STATUSES) == {"succeeded", "failed", "cancelled"}
    assert set(ACTIVE_JOB_STATUSES) == {"queued", "running"}
    assert set(TERMINAL_SWEEP_STATUSES) == {"succeeded", "partial", "failed", "cancelled"}

    job = Job.model_validate({"id": 1, "status": "succeeded"})
    assert job.status is JobStatus.SUCCEEDED and job.status == "succeeded" and job.done
    assert f"{job.status}" == str(job.status) == "succeeded"
    assert {"succeeded": 1}[job.status] == 1 and job.model_dump(mode="json")["status"] == "succeeded"
    newer = Job.model_validate({"id": 1, "status": "paused"})  # a status from a newer server
    assert newer.status == "paused" and not isinstance(newer.status, JobStatus) and not newer.done
    assert Sweep.model_validate({"id": 1, "status": "archived"}).status == "archived"
    assert Sweep.model_validate({"id": 1, "status": "partial"}).status is SweepStatus.PARTIAL


def _undeclared(model: APIModel, data: Any, where: str = "report") -> list[str]:
    """Keys of the server's JSON that are not declared fields of the SDK model (recursively)."""
    missing = [f"{where}.{k}" for k in data if k not in type(model).model_fields]
    for key, value in data.items():
        attr = getattr(model, key, None)
        if isinstance(attr, APIModel) and isinstance(value, dict):
            missing += _undeclared(attr, value, f"{where}.{key}")
        elif isinstance(attr, list) and isinstance(value, list):
            for i, (item, raw) in enumerate(zip(attr, value)):
                if isinstance(item, APIModel) and isinstance(raw, dict):
                    missing += _undeclared(item, raw, f"{where}.{key}[{i}]")
    return missing


@pytest.mark.parametrize("mode", ["grid", "one_at_a_time"])
def test_the_sweep_report_carries_every_field_the_server_sends(mode):
    from service.sweeps import schemas
    from service.sweeps.report import JobOutcome, build_report

    grid = {"algorithm": ["c-ttv2", "sgd"], "device.transfer_noise": [0.0, 0.1], "device.sp_skew": [0.0, 0.2]}
    axes = list(grid)
    jobs = [JobOutcome("succeeded", True, {}, 0.1, {"lr": 0.001, "epochs": 4})] * 2
    for alg in grid["algorithm"]:
        for noise in grid["device.transfer_noise"]:
            for skew in grid["device.sp_skew"]:
                point = {"algorithm": alg, "device.transfer_noise": noise, "device.sp_skew": skew}
                jobs += [JobOutcome("succeeded", False, point, 0.2 + noise), JobOutcome("running", False, point, None)]
    raw = build_report(sweep_id=7, name="s", axes=axes, grid=grid, baseline=True, jobs=jobs, mode=mode)
    server = schemas.SweepReport.model_validate(raw).model_dump(mode="json")
    assert server["rows"] and server["baseline"] and server["baselines"]
    assert mode == "grid" or (server["not_applicable"] and server["reference"])

    report = SweepReport.model_validate(server)
    assert _undeclared(report, server) == []
    assert report.model_extra == {} and report.rows[0].model_extra == {}
    # Fields the server declares, whether or not this report filled them.
    from cttv2_client.models import BaselineStats, NotApplicable, ReportRow

    pairs = [
        (schemas.SweepReport, SweepReport),
        (schemas.ReportRow, ReportRow),
        (schemas.BaselineStats, BaselineStats),
        (schemas.NotApplicable, NotApplicable),
    ]
    for theirs, ours in pairs:
        assert set(theirs.model_fields) <= set(ours.model_fields), (
            ours.__name__,
            set(theirs.model_fields) - set(ours.model_fields),
        )
    assert report.pending == report.total_jobs // 2 - 1 and not report.complete
    row = report.rows[0]
    assert row.n_pending == 1 and row.baseline_mean_test_error == pytest.approx(0.1)
    assert row.delta_vs_baseline == pytest.approx(row.mean_test_error - 0.1)
    assert report.baseline.n_finished == 2 and report.baseline.training == {"lr": 0.001, "epochs": 4}
    pd = pytest.importorskip("pandas")
    frame = report.to_pandas()
    assert list(frame.columns)[: len(axes)] == axes and "n_pending" in frame.columns
    assert ("knobs" in frame.columns) == (mode == "one_at_a_time") and isinstance(frame, pd.DataFrame)


def test_polling_backoff_doubles_up_to_ten_seconds():
    from cttv2_client.progress import NoDisplay
    from cttv2_client.waiting import Watch

    job = Job.model_validate({"id": 1, "status": "running"})
    watch: Watch[Job] = Watch("job 1", NoDisplay(), None, None, 3.0)
    assert [watch.next_poll(job) for _ in range(4)] == [3.0, 6.0, 10.0, 10.0]
    slow: Watch[Job] = Watch("job 1", NoDisplay(), None, None, 30.0)  # a longer interval stays
    assert [slow.next_poll(job) for _ in range(2)] == [30.0, 30.0]
    timed: Watch[Job] = Watch("job 1", NoDisplay(), None, 0.5, 3.0)  # never past the deadline
    assert timed.next_poll(job) <= 0.5
