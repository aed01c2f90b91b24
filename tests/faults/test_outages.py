"""The database and the broker go away and come back; jobs carry on.

Neither outage touches the machine's shared PostgreSQL or Redis (other test runs use them at
the same time): the database goes away behind a TCP proxy that the API and the worker
connect through (cut = every connection reset and new ones refused, as when the server stops),
and the broker is a private redis-server that the test kills and restarts empty."""

from __future__ import annotations

import time

import pytest

from tests.support.faults import (
    STEADY,
    STEPS_PER_EPOCH,
    RedisServer,
    assert_metrics_complete,
    events,
    job_row,
    wait_checkpointed_and_running,
    wait_until,
)
from tests.support.specs import TINY_FP, spec
from tests.support.stack import FAST_PROTOCOL, wait_for_job
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

HEARTBEAT_TIMEOUT_S = float(FAST_PROTOCOL["CTTV2_HEARTBEAT_TIMEOUT_S"])


def test_database_outage_503s_then_both_recover_and_the_job_is_not_reaped(make_stack):
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        s = make_stack("postgres")
        s.env["CTTV2_DATABASE_URL"] = s.env["CTTV2_DATABASE_URL"].replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        s.start_api()
        s.start_worker()
        client = s.client(s.create_user())
        job = client.post("/v1/jobs", json=STEADY).json()
        wait_checkpointed_and_running(s, job["id"], min_epochs=1)

        proxy.down()
        down_at = time.monotonic()
        for method, path, body in (
            ("GET", "/v1/jobs", None),
            ("GET", f"/v1/jobs/{job['id']}", None),
            ("POST", "/v1/jobs", TINY_FP),
        ):
            t0 = time.monotonic()
            r = client.request(method, path, json=body)
            assert r.status_code == 503, r.text
            assert r.json() == {
                "error": {"code": "database_unavailable", "message": "the database is unavailable; try again shortly"}
            }
            assert r.headers["Retry-After"] and time.monotonic() - t0 < 15  # answered, not hung
        assert client.get("/readyz").status_code == 503
        # Stay down well past the heartbeat timeout: every heartbeat of the live worker fails.
        time.sleep(max(0.0, 3 * HEARTBEAT_TIMEOUT_S - (time.monotonic() - down_at)))
        proxy.up()

        wait_until(lambda: client.get("/readyz").status_code == 200, 60, "the API to be ready again")
        assert client.get("/v1/jobs").status_code == 200
        done = wait_for_job(client, job["id"], timeout=240, stack=s)
        assert done["status"] == "succeeded", done
        row = job_row(s, job["id"])
        assert (done["attempt"], row["lost_count"]) == (1, 0), "the live worker's job was reaped"
        assert [e["status"] for e in events(s, job["id"])] == ["queued", "running", "succeeded"]
        assert_metrics_complete(s, job["id"], STEADY["training"]["epochs"], STEPS_PER_EPOCH)
        log = s.workers[0].log()
        assert "database unavailable during" in log and "database reachable again" in log
        assert s.workers[0].alive() and s.api.alive()
    finally:
        proxy.close()


def test_redis_restarted_empty_every_queued_job_runs_once(make_stack, tmp_path):
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        s = make_stack("postgres", {"CTTV2_BROKER_URL": redis.url})
        s.start_api()
        busy = s.start_worker()
        client = s.client(s.create_user())
        running = client.post("/v1/jobs", json=spec(STEADY, **{"training.epochs": 16})).json()
        wait_checkpointed_and_running(s, running["id"], min_epochs=1)
        waiting = [
            client.post("/v1/jobs", json=spec(TINY_FP, name=f"w{i}", **{"training.epochs": 1})).json() for i in range(4)
        ]
        queue = s.env["CTTV2_QUEUE_NAME"]
        assert int(redis.cli("LLEN", queue)) == len(waiting)

        redis.kill()
        time.sleep(1)
        redis.start()  # same port, no data
        assert int(redis.cli("LLEN", queue)) == 0

        # A stale duplicate of the running job's message too (what a broker that kept its
        # data, or a visibility timeout, redelivers), and a second worker to take work.
        s.send_task(running["id"])
        idle = s.start_worker()
        after = client.post("/v1/jobs", json=spec(TINY_FP, name="after", **{"training.epochs": 1}))
        assert after.status_code == 201, after.text  # the API publishes to the new Redis

        for job in [running, *waiting, after.json()]:
            done = wait_for_job(client, job["id"], timeout=240, stack=s)
            assert done["status"] == "succeeded", done
            assert done["attempt"] == 1, f"job {job['id']} ran more than once"
            assert [e["status"] for e in events(s, job["id"])] == ["queued", "running", "succeeded"]
        duplicate_refused = f"job {running['id']}: not claimable"
        wait_until(lambda: any(duplicate_refused in w.log() for w in s.workers), 60, "the duplicate to be refused")
        # The worker that was busy through the restart reconnected on its own.
        wait_until(lambda: busy.log().count("Connected to redis") >= 2, 60, "the busy worker to reconnect")
        assert s.api.alive() and busy.alive() and idle.alive()
    finally:
        redis.close()
