"""Retries, resume and reconnects through a real HTTP proxy that fails on cue, in front of the
live API (tests/support/httpproxy.py): no mock transport."""

from __future__ import annotations

import hashlib

import pytest
from cttv2_client import (
    APIConnectionError,
    ChecksumMismatch,
    Client,
    RateLimited,
    RetryPolicy,
    ServerError,
)

from tests.sdk.conftest import FAST_RETRY
from tests.support.httpproxy import DROP, FORWARD_THEN_DROP, Corrupt, CutBody, FaultyProxy, status
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


@pytest.fixture(scope="module")
def finished(followed):
    return followed[0]


def test_a_retried_submit_creates_exactly_one_job(via_proxy, proxy, live, token):
    # 1st try: the API creates the job but the answer is lost; 2nd: a 503; 3rd goes through.
    proxy.on("POST", "/v1/jobs", FORWARD_THEN_DROP, status(503, retry_after="0"))
    job = via_proxy.jobs.submit(spec(TINY_FP, name="retried"))
    posts = proxy.seen("POST", "/v1/jobs")[-3:]
    assert [p.action for p in posts][:2] == [FORWARD_THEN_DROP, status(503, retry_after="0")]
    keys = {p.headers["Idempotency-Key"] for p in posts}
    assert len(keys) == 1  # one key, reused by every retry of the call
    assert posts[0].response_status == 201  # the first try did create the job...
    assert posts[2].response_headers.get("idempotent-replayed") == "true"  # ...the last got it back
    named = live.sql("SELECT id FROM jobs WHERE name = 'retried'")
    assert named == [(job.id,)]  # exactly one job, and it is the one returned
    with live.client(token) as raw:
        listed = [j["id"] for j in raw.get("/v1/jobs", params={"limit": 100}).json()["items"] if j["name"] == "retried"]
    assert listed == [job.id]
    via_proxy.jobs.cancel(job.id)


def test_reads_are_retried_through_drops_and_gateway_errors(via_proxy, proxy, client):
    job = client.jobs.submit(spec(TINY_FP, name="read-retry"))
    client.jobs.cancel(job.id)
    before = len(proxy.seen("GET", f"/v1/jobs/{job.id}"))
    proxy.on("GET", f"/v1/jobs/{job.id}", DROP, status(502), status(504), status(503))
    assert via_proxy.jobs.get(job.id).id == job.id
    assert len(proxy.seen("GET", f"/v1/jobs/{job.id}")) - before == 5


def test_retry_after_is_honoured(via_proxy, proxy, client):
    job = client.jobs.submit(spec(TINY_FP, name="slow-down"))
    client.jobs.cancel(job.id)
    proxy.on("GET", f"/v1/jobs/{job.id}", status(429, retry_after="1"))
    via_proxy.jobs.get(job.id)
    first, second = proxy.seen("GET", f"/v1/jobs/{job.id}")[-2:]
    assert second.at - first.at >= 0.95  # waited as told, not the short test backoff


def test_retries_give_up_with_the_last_error(proxy, token, client):
    job = client.jobs.submit(spec(TINY_FP, name="gives-up"))
    client.jobs.cancel(job.id)
    with Client(proxy.url, token, retry=RetryPolicy(max_attempts=2, **FAST_RETRY)) as c:
        proxy.on("GET", f"/v1/jobs/{job.id}", status(429, retry_after="0"), status(429, retry_after="7"))
        with pytest.raises(RateLimited) as info:
            c.jobs.get(job.id)
        assert info.value.retry_after == 7
        before = len(proxy.seen("GET", f"/v1/jobs/{job.id}"))
        proxy.on("GET", f"/v1/jobs/{job.id}", status(500))
        with pytest.raises(ServerError):  # a 500 is not retried: it would fail again
            c.jobs.get(job.id)
        assert len(proxy.seen("GET", f"/v1/jobs/{job.id}")) - before == 1


def test_a_post_without_idempotency_is_not_retried_after_a_lost_answer(via_proxy, proxy, client):
    # Creating a device spec has no idempotency key: a retry could store it twice, so the
    # client reports the broken connection instead.
    proxy.on("POST", "/v1/device-specs", FORWARD_THEN_DROP)
    with pytest.raises(APIConnectionError, match="lost the connection"):
        via_proxy.device_specs.create({"family": "SoftBounds"}, name="not-retried")
    assert len(proxy.seen("POST", "/v1/device-specs")) == 1
    assert [d.name for d in client.device_specs.list()].count("not-retried") == 1


def test_download_resumes_after_a_cut_connection(finished, via_proxy, proxy, client, tmp_path):
    name = "weights.safetensors"
    listing = {a.name: a for a in client.artifacts.list(finished.id)}
    size, sha = listing[name].size, listing[name].sha256
    assert size > 4096
    cut = size // 3
    proxy.on("GET", f"/v1/jobs/{finished.id}/artifacts/{name}", CutBody(cut))
    path = via_proxy.artifacts.download(finished.id, name, tmp_path)
    assert path == tmp_path / name and not (tmp_path / f"{name}.part").exists()
    data = path.read_bytes()
    assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
    first, second = proxy.seen("GET", f"/v1/jobs/{finished.id}/artifacts/{name}")[-2:]
    assert "Range" not in first.headers and second.headers["Range"] == f"bytes={cut}-"
    assert second.response_status == 206


def test_download_resumes_a_part_file_left_by_an_earlier_call(finished, via_proxy, proxy, token, tmp_path):
    name = "weights.safetensors"
    with Client(proxy.url, token, retry=RetryPolicy(max_attempts=1)) as fragile:
        proxy.on("GET", f"/v1/jobs/{finished.id}/artifacts/{name}", CutBody(1000))
        with pytest.raises(APIConnectionError, match="call again to resume"):
            fragile.artifacts.download(finished.id, name, tmp_path / "w.bin")
    assert (tmp_path / "w.bin.part").stat().st_size == 1000 and not (tmp_path / "w.bin").exists()
    path = via_proxy.artifacts.download(finished.id, name, tmp_path / "w.bin")
    assert proxy.seen("GET", f"/v1/jobs/{finished.id}/artifacts/{name}")[-1].headers["Range"] == "bytes=1000-"
    assert path.read_bytes() == (tmp_path / "w.bin").read_bytes() and path.stat().st_size > 1000


def test_a_corrupted_download_keeps_nothing(finished, via_proxy, proxy, tmp_path):
    name = "result.json"
    proxy.on("GET", f"/v1/jobs/{finished.id}/artifacts/{name}", Corrupt(5))
    with pytest.raises(ChecksumMismatch, match="nothing was saved"):
        via_proxy.artifacts.download(finished.id, name, tmp_path / "result.json")
    assert list(tmp_path.iterdir()) == []


def test_events_reconnect_with_last_event_id(finished, via_proxy, proxy, client, live, token):
    everything = list(client.jobs.events(finished.id))
    assert everything[-1].event == "status" and everything[-1].data["status"] == "succeeded"
    assert len(everything) >= 4
    path = f"/v1/jobs/{finished.id}/events"
    with live.client(token) as raw:
        total = len(raw.get(path).content)
    # Cut the first connection mid-stream, the second inside its first event.
    proxy.on("GET", path, CutBody(total // 3), CutBody(20))
    resumed = list(via_proxy.jobs.events(finished.id))
    assert [(e.id, e.event, e.data) for e in resumed] == [(e.id, e.event, e.data) for e in everything]
    tries = proxy.seen("GET", path)[-3:]
    assert "Last-Event-ID" not in tries[0].headers
    resumed_after = tries[1].headers["Last-Event-ID"]
    assert int(everything[0].id) <= int(resumed_after) < int(everything[-1].id)
    # The half-received event did not count: the third try resumes after the same event.
    assert tries[2].headers["Last-Event-ID"] == resumed_after
