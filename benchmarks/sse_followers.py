"""What following jobs costs the server (not a test: it prints a table).

    PYTHONPATH=. .venv/bin/python benchmarks/sse_followers.py [--followers 200] [--duration 20]

Starts `cttv2 serve` (one process) on a fresh PostgreSQL database with Redis and no worker,
creates --followers jobs and marks them running (straight in the database: nothing ends
them), opens one GET /v1/jobs/{id}/events stream per job and, after a warm-up, measures over
--duration seconds while nothing happens: the API process's CPU (utime + stime from /proc)
and the database's transactions per second (pg_stat_database xact_commit + xact_rollback of
the benchmark's database: every poll is at least one). Then it writes --events events into
followed jobs' logs (one every 0.2 s, as a worker does) and prints how long each took to
reach its follower (event row committed -> line read by the client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.specs import TINY_FP, spec
from tests.support.stack import REDIS_URL, Stack


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def tree_cpu(pid: int) -> float:
    """CPU seconds of pid and its children (cttv2 serve --workers N forks them)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            total += tree_cpu(int(c))
    return total


async def follow(base: str, token: str, job_id: int, seen: dict[int, float], opened: list[int]) -> None:
    async with (
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=None) as c,
        c.stream("GET", f"/v1/jobs/{job_id}/events") as r,
    ):
        r.raise_for_status()
        opened.append(job_id)
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                seen[int(line[4:])] = time.monotonic()


async def run(args, stack: Stack, token: str, job_ids: list[int], dsn: str) -> None:
    import psycopg

    seen: dict[int, float] = {}
    opened: list[int] = []
    tasks = [asyncio.create_task(follow(stack.url, token, j, seen, opened)) for j in job_ids]
    started = time.monotonic()
    deadline = started + 60
    while len(opened) < len(job_ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    failed = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
    print(f"{len(opened)} of {len(job_ids)} streams open after {time.monotonic() - started:.1f} s", flush=True)
    for exc in failed[:3]:
        print(f"  a follower failed: {exc!r}", flush=True)
    await asyncio.sleep(args.warmup)
    pid = stack.api.popen.pid
    with psycopg.connect(dsn, autocommit=True) as conn:

        def xacts() -> int:
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
            return int(row[0])

        c0, x0, t0 = tree_cpu(pid), xacts(), time.monotonic()
        await asyncio.sleep(args.duration)
        c1, x1, t1 = tree_cpu(pid), xacts(), time.monotonic()
        # Events: one at a time, each into a followed job, as a worker's progress would come.
        lat = []
        for i in range(args.events):
            job_id = job_ids[i % len(job_ids)]
            row = conn.execute(
                "INSERT INTO job_events (job_id, kind, data, created_at) "
                "VALUES (%s, 'progress', %s, now()) RETURNING id",
                (job_id, json.dumps({"step": i})),
            ).fetchone()
            written = time.monotonic()
            event_id = int(row[0])
            until = written + 10
            while event_id not in seen and time.monotonic() < until:
                await asyncio.sleep(0.005)
            lat.append(seen.get(event_id, float("inf")) - written)
            await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = t1 - t0
    print(
        f"{len(opened)} followers of running jobs, {wall:.0f} s with nothing happening, cttv2 serve (1 process), "
        f"PostgreSQL + Redis, {os.cpu_count()} CPUs shared with the clients"
    )
    print("| API CPU (% of one core) | database transactions/s | event delivery p50 ms | p95 ms | max ms |")
    print("|---:|---:|---:|---:|---:|")
    if lat:
        ordered = sorted(lat)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        delivery = f"{statistics.median(lat) * 1000:.0f} | {p95 * 1000:.0f} | {max(lat) * 1000:.0f}"
    else:
        delivery = "- | - | -"
    print(f"| {100 * (c1 - c0) / wall:.1f} | {(x1 - x0) / wall:.1f} | {delivery} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--followers", type=int, default=200)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--events", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cttv2-sse-"))
    stack = Stack.create("postgres", root, {"CTTV2_MAX_ACTIVE_JOBS_PER_USER": "1000000"})
    try:
        stack.start_api()
        token = stack.create_user()
        client = stack.client(token)
        job_ids = []
        for i in range(args.followers):
            r = client.post("/v1/jobs", json=spec(TINY_FP, name=f"follow-{i}-{uuid.uuid4().hex[:6]}"))
            r.raise_for_status()
            job_ids.append(r.json()["id"])
        stack.sql("UPDATE jobs SET status = 'running', started_at = now()")
        dsn = stack.env["CTTV2_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        asyncio.run(run(args, stack, token, job_ids, dsn))
    finally:
        stack.destroy()
        import redis

        redis.Redis.from_url(REDIS_URL).delete(stack.env["CTTV2_QUEUE_NAME"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
