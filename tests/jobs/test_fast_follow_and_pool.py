"""What keeps a request and a follower cheap, in process: the followers of all jobs share one
poll of the event log per interval (service.jobs.stream's hub), and a pooled PostgreSQL
connection that the server closed is replaced at checkout without a round trip per checkout
and without failing the request."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.core.config import get_settings
from service.jobs import stream
from tests.support.specs import TINY_FP, spec

pytestmark = pytest.mark.fast


def _counting(fn, counts: dict[str, int], key: str):
    def wrapper(*args, **kwargs):
        counts[key] += 1
        return fn(*args, **kwargs)

    return wrapper


def test_followers_of_many_jobs_share_one_poll_and_each_gets_its_own_jobs_events(api, monkeypatch):
    alice = api.user()
    jobs = []
    for i in range(4):
        r = alice.post("/v1/jobs", json=spec(TINY_FP, name=f"followed-{i}"))
        assert r.status_code == 201, r.text
        jobs.append(r.json()["id"])
        api.sql("UPDATE jobs SET status = 'running' WHERE id = :id", id=jobs[-1])
    monkeypatch.setenv("CTTV2_SSE_POLL_S", "0.05")
    get_settings.cache_clear()
    counts = {"own": 0, "shared": 0}
    monkeypatch.setattr(stream, "poll", _counting(stream.poll, counts, "own"))
    monkeypatch.setattr(stream, "poll_many", _counting(stream.poll_many, counts, "shared"))

    def add_event(job_id: int, kind: str, data: dict) -> None:
        api.sql(
            "INSERT INTO job_events (job_id, kind, data, created_at) VALUES (:j, :k, :d, CURRENT_TIMESTAMP)",
            j=job_id,
            k=kind,
            d=json.dumps(data),
        )

    async def follow(job_id: int, out: list[bytes]) -> None:
        async for chunk in stream.events(job_id, 0, get_settings()):
            out.append(chunk)

    async def main() -> dict[int, list[list[bytes]]]:
        got: dict[int, list[list[bytes]]] = {j: [[], [], []] for j in jobs}  # three followers per job
        tasks = [asyncio.create_task(follow(j, out)) for j in jobs for out in got[j]]
        await asyncio.sleep(0.3)  # everyone caught up and idle
        shared_before = counts["shared"]
        await asyncio.sleep(0.5)  # ~10 intervals with nothing happening
        idle_polls = counts["shared"] - shared_before
        assert 3 <= idle_polls <= 14, idle_polls  # one read per interval for all 12 followers
        for j in jobs:
            await asyncio.to_thread(add_event, j, "progress", {"epoch": 1, "job": j})
        for j in jobs:  # the terminal event, then the status (a worker writes both in one transaction)
            await asyncio.to_thread(add_event, j, "status", {"status": "succeeded"})
            await asyncio.to_thread(api.sql, "UPDATE jobs SET status = 'succeeded' WHERE id = :id", id=j)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)  # every stream ends after its terminal event
        return got

    try:
        got = asyncio.run(main())
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert counts["own"] == 12  # each follower read its backlog once, then joined the hub
    for job_id, outs in got.items():
        expected = [
            (int(i), kind, data if isinstance(data, dict) else json.loads(data))
            for i, kind, data in api.sql(
                "SELECT id, kind, data FROM job_events WHERE job_id = :id ORDER BY id", id=job_id
            )
        ]
        for out in outs:
            text = b"".join(out).decode()
            assert text.startswith("retry: 2000\n\n")
            blocks = [b for b in text.split("\n\n") if b.startswith("id: ")]
            seen = []
            for block in blocks:
                fields = dict(line.split(": ", 1) for line in block.splitlines())
                seen.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
            assert [(i, k) for i, k, _ in seen] == [(i, k) for i, k, _ in expected]
            assert seen[-2][2] == {"epoch": 1, "job": job_id} and seen[-1][2] == {"status": "succeeded"}


def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error(api):
    if api.name != "postgres":
        pytest.skip("PostgreSQL closes its backends; SQLite has no server")
    alice = api.user()
    r = alice.post("/v1/jobs", json=spec(TINY_FP, name="pool"))
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    for _ in range(3):  # the pool holds a connection or more, idle between requests
        assert alice.get(f"/v1/jobs/{job}").status_code == 200
    ended = api.sql(
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "  # returns once they are gone
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )[0][0]
    assert ended >= 1  # the app's pooled connections (the test's own helper connection is spared)
    for _ in range(5):  # as after a PostgreSQL restart: no 503, no error
        r = alice.get(f"/v1/jobs/{job}")
        assert r.status_code == 200, r.text
    assert alice.get("/v1/jobs").status_code == 200
