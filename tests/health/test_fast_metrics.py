"""GET /metrics, in process on both backends: admin only; Prometheus text that the reference
parser reads; requests counted under their route template; jobs by status, claims, requeues,
reaps and busy workers as the database has them. And the JSON log line format."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.core.log_context import JsonFormatter, RequestIdFilter, job_id_var, request_id_var
from service.jobs.models import JobStatus
from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2

pytestmark = pytest.mark.fast


def scrape(api) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of one admin scrape."""
    r = api.admin.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_metrics_needs_an_admin_token(api):
    assert_error(api.client().get("/metrics"), 401, "unauthorized")
    assert_error(api.client("not-a-token").get("/metrics"), 401, "unauthorized")
    assert_error(api.user().get("/metrics"), 403)
    assert api.admin.get("/metrics").status_code == 200


def test_requests_are_counted_by_route_template(api):
    alice = api.user()
    job = alice.post("/v1/jobs", json=TINY_CTTV2).json()
    before = scrape(api)
    labels = dict(method="GET", route="/v1/jobs/{job_id}", status="200")
    for _ in range(3):
        assert alice.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert alice.get("/v1/jobs/2147483647").status_code == 404
    alice.get("/v1/no-such-route")
    after = scrape(api)
    assert (
        value(after, "cttv2_http_requests_total", **labels) - value(before, "cttv2_http_requests_total", **labels) == 3
    )
    assert value(after, "cttv2_http_request_duration_seconds_count", **labels) >= 3
    assert value(after, "cttv2_http_requests_total", **{**labels, "status": "404"}) >= 1
    assert value(after, "cttv2_http_requests_total", method="GET", route="unmatched", status="404") >= 1
    routes = {dict(k)["route"] for k in after["cttv2_http_requests_total"]}
    assert not [r for r in routes if re.search(r"/\d+(/|$)", r)], routes  # never a raw path with an id


def test_jobs_by_status_match_the_database(api):
    alice = api.user()
    before = scrape(api)
    ids = [alice.post("/v1/jobs", json=TINY_CTTV2).json()["id"] for _ in range(3)]
    assert alice.post(f"/v1/jobs/{ids[0]}/cancel").status_code == 200
    after = scrape(api)

    def delta(status: JobStatus) -> float:
        return value(after, "cttv2_jobs", status=status.value) - value(before, "cttv2_jobs", status=status.value)

    assert delta(JobStatus.QUEUED) == 2 and delta(JobStatus.CANCELLED) == 1
    assert delta(JobStatus.RUNNING) == delta(JobStatus.SUCCEEDED) == delta(JobStatus.FAILED) == 0
    in_db = dict(api.sql("SELECT status, count(*) FROM jobs GROUP BY status"))
    for status in JobStatus:
        assert value(after, "cttv2_jobs", status=status.value) == in_db.get(status.value, 0), status
    assert value(after, "cttv2_database_up") == 1
    assert "cttv2_queue_depth" in after  # both brokers can tell their depth


@pytest.mark.parametrize("settled", [False, True], ids=["fresh", "settled"])
def test_claims_requeues_reaps_and_workers(api, monkeypatch, settled):
    """Claim, requeue (shutdown), claim, reap (lost worker), as service.jobs.lifecycle does:
    the counters move by one each, and the busy worker shows with its job and heartbeat.
    `settled`: the events are old enough to be counted once and remembered."""
    from service.core.db import session_scope, utcnow
    from service.jobs import lifecycle
    from service.metrics import collector

    if settled:
        monkeypatch.setattr(collector, "SETTLE_S", -60.0)
    alice = api.user()
    job_id = alice.post("/v1/jobs", json=TINY_CTTV2).json()["id"]
    worker = f"w-{job_id}"
    before = scrape(api)
    with session_scope() as s:
        assert lifecycle.claim(s, job_id, "t1", worker) == 1
    busy = scrape(api)
    assert value(busy, "cttv2_worker_current_job", worker=worker) == job_id
    beat = value(busy, "cttv2_worker_last_heartbeat_timestamp_seconds", worker=worker)
    assert abs(beat - utcnow().timestamp()) < 60
    with session_scope() as s:
        assert lifecycle.requeue(s, job_id, "t1", "worker_shutdown")
        assert lifecycle.claim(s, job_id, "t2", worker) == 2
    with session_scope() as s:
        stale = utcnow() + timedelta(seconds=1)
        assert lifecycle.reap(s, job_id, "t2", 0, worker, 3, stale) == JobStatus.QUEUED
    after = scrape(api)

    def delta(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cttv2_job_claims_total") == 2
    assert delta("cttv2_job_requeues_total", reason="worker_shutdown") == 1
    assert delta("cttv2_job_requeues_total", reason="worker_lost") == 1
    assert delta("cttv2_job_reaps_total", status="queued") == 1
    assert delta("cttv2_job_reaps_total", status="failed") == 0
    assert value(after, "cttv2_worker_current_job", worker=worker) == 0  # not busy any more
    assert alice.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    again = scrape(api)  # a second scrape counts nothing twice
    assert value(again, "cttv2_job_claims_total") == value(after, "cttv2_job_claims_total")


def test_durations_and_artifacts(api):
    samples = scrape(api)
    assert "cttv2_job_duration_window_jobs" in samples
    if value(samples, "cttv2_job_duration_window_jobs"):
        assert value(samples, "cttv2_job_duration_seconds", quantile="0.5") <= value(
            samples, "cttv2_job_duration_seconds", quantile="1.0"
        )
    total = api.sql("SELECT coalesce(sum(size), 0) FROM artifacts")[0][0]
    assert sum(samples.get("cttv2_artifact_bytes", {}).values()) == total


# -- JSON log lines ------------------------------------------------------------------------------


def test_json_log_line_has_ids_and_exception():
    formatter = JsonFormatter()
    rid, jid = request_id_var.set("job-42"), job_id_var.set(42)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("cttv2.worker.runner").makeRecord(
                "cttv2.worker.runner", logging.ERROR, __file__, 1, "job %s: failed\nsecond line", (42,), sys.exc_info()
            )
        RequestIdFilter().filter(record)
        line = formatter.format(record)
    finally:
        job_id_var.reset(jid)
        request_id_var.reset(rid)
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "ERROR" and out["logger"] == "cttv2.worker.runner"
    assert out["message"] == "job 42: failed\nsecond line"
    assert out["request_id"] == "job-42" and out["job_id"] == 42
    assert "ValueError: boom" in out["exc_info"] and "Traceback" in out["exc_info"]
    assert out["time"].endswith("+00:00")


def test_json_log_line_of_an_api_request():
    record = logging.LogRecord("cttv2.access", logging.INFO, __file__, 1, "GET /v1/jobs 200", None, None)
    rid = request_id_var.set("abc123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(rid)
    out = json.loads(JsonFormatter().format(record))
    assert out["request_id"] == "abc123" and "job_id" not in out and "exc_info" not in out
    assert set(out) == {"time", "level", "logger", "message", "request_id"}
    outside = logging.LogRecord("cttv2.worker", logging.WARNING, __file__, 1, "no request here", None, None)
    assert json.loads(JsonFormatter().format(outside))["request_id"] is None  # the formatter alone, no filter
