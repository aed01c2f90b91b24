"""Load test of the API on PostgreSQL + Redis (not a test: it prints a table).

    PYTHONPATH=. .venv/bin/python benchmarks/load.py [--clients 50] [--duration 60]

What it does:
1. starts `cttv2 serve` (one process) on a fresh PostgreSQL database and a private Redis queue
   name, no workers (the load is on the API; submitted jobs wait in the queue);
2. seeds 100,000 finished jobs for one user (bulk INSERT), so listing runs on a big table;
3. drives N concurrent clients for D seconds, each its own user, each looping over:
   submit a job (POST /v1/jobs, with an Idempotency-Key), poll one of its jobs
   (GET /v1/jobs/{id}), list its jobs (GET /v1/jobs), and list the 100,000-job user's
   jobs, first page and a deep keyset page;
4. runs the same clients against the floor (benchmarks/floor_app.py): a bare FastAPI route
   doing one primary-key read on the same database;
5. checks that nothing was lost (every 201 is a row) and prints p50/p95/p99 and requests/s
   per route, and the error count (any non-2xx or exception is an error).

The clients run in this process (asyncio + httpx) on the same machine as the server, so they
take CPU from it: the figures are a lower bound for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.seed import seed_jobs
from tests.support.specs import TINY_FP, spec
from tests.support.stack import REDIS_URL, Stack, free_port

# What one client does per loop, by weight.
MIX = (("submit", 2), ("poll", 5), ("list own", 2), ("list 100k first page", 1), ("list 100k deep page", 1))


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def add(self, route: str, seconds: float, ok: bool, detail: str = "") -> None:
        self.latency[route].append(seconds)
        if not ok:
            self.errors[route].append(detail)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(rec: Recorder, route: str, call, expect: int = 200):
    t0 = time.perf_counter()
    try:
        r = await call
        ok = r.status_code == expect
        rec.add(route, time.perf_counter() - t0, ok, "" if ok else f"{r.status_code} {r.text[:120]}")
        return r if ok else None
    except httpx.HTTPError as exc:
        rec.add(route, time.perf_counter() - t0, False, repr(exc))
        return None


async def api_client(
    base: str, token: str, lister: str, deep_cursor: str, until: float, rec: Recorder, created: list[int]
) -> None:
    routes = [name for name, w in MIX for _ in range(w)]
    mine: list[int] = []
    async with (
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c,
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {lister}"}, timeout=30) as big,
    ):
        while time.monotonic() < until:
            route = random.choice(routes)
            if route == "submit" or (route == "poll" and not mine):
                body = spec(TINY_FP, name=f"load-{uuid.uuid4().hex[:8]}")
                r = await timed(
                    rec,
                    "POST /v1/jobs",
                    c.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}),
                    expect=201,
                )
                if r is not None:
                    mine.append(r.json()["id"])
                    created.append(r.json()["id"])
            elif route == "poll":
                await timed(rec, "GET /v1/jobs/{id}", c.get(f"/v1/jobs/{random.choice(mine)}"))
            elif route == "list own":
                await timed(rec, "GET /v1/jobs (own, <=50)", c.get("/v1/jobs", params={"limit": 50}))
            elif route == "list 100k first page":
                await timed(rec, "GET /v1/jobs (100k jobs, first page)", big.get("/v1/jobs", params={"limit": 50}))
            else:
                await timed(
                    rec,
                    "GET /v1/jobs (100k jobs, deep page)",
                    big.get("/v1/jobs", params={"limit": 50, "cursor": deep_cursor}),
                )


async def floor_client(base: str, ids: list[int], until: float, rec: Recorder) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        while time.monotonic() < until:
            await timed(rec, "floor: bare FastAPI, 1 PK read", c.get(f"/floor/{random.choice(ids)}"))


async def drive(clients: list) -> float:
    t0 = time.monotonic()
    await asyncio.gather(*clients)
    return time.monotonic() - t0


def table(rec: Recorder, wall: dict[str, float]) -> str:
    lines = ["| route | requests | errors | p50 ms | p95 ms | p99 ms | req/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for route, values in rec.latency.items():
        ms = [v * 1000 for v in values]
        lines.append(
            f"| {route} | {len(ms)} | {len(rec.errors.get(route, []))} | {pct(ms, 0.5):.1f} | "
            f"{pct(ms, 0.95):.1f} | {pct(ms, 0.99):.1f} | {len(ms) / wall[route]:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of API load")
    ap.add_argument("--floor-duration", type=float, default=30.0, help="seconds against the floor route")
    ap.add_argument("--seed-jobs", type=int, default=100_000)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cttv2-load-"))
    stack = Stack.create("postgres", root, {"CTTV2_MAX_ACTIVE_JOBS_PER_USER": "1000000", "CTTV2_PAGE_SIZE_MAX": "500"})
    floor_proc = None
    try:
        stack.start_api()
        admin = stack.client(stack.create_user(admin=True))

        def new_user() -> str:
            r = admin.post("/v1/admin/users", json={"name": f"load{uuid.uuid4().hex[:10]}"})
            r.raise_for_status()
            return r.json()["token"]["token"]

        tokens = [new_user() for _ in range(args.clients)]
        lister = new_user()
        import psycopg

        from service.core.pagination import encode_cursor

        dsn = stack.env["CTTV2_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            lister_id = conn.execute("SELECT user_id FROM api_tokens WHERE prefix = %s", (lister[:12],)).fetchone()[0]
            t0 = time.monotonic()
            seed_jobs(conn, lister_id, args.seed_jobs)
            conn.commit()
            seeded_s = time.monotonic() - t0
            lo, hi = conn.execute("SELECT min(id), max(id) FROM jobs WHERE user_id = %s", (lister_id,)).fetchone()
        deep_cursor = encode_cursor(lo + 1000)
        print(
            f"seeded {args.seed_jobs} jobs in {seeded_s:.1f} s; {args.clients} clients for {args.duration:.0f} s ...",
            flush=True,
        )

        rec, created = Recorder(), []
        until = time.monotonic() + args.duration
        api_wall = asyncio.run(
            drive([api_client(stack.url, t, lister, deep_cursor, until, rec, created) for t in tokens])
        )

        port = free_port()
        floor_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.floor_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env={**stack.env, "PYTHONPATH": str(ROOT)},
        )
        floor = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{floor}/floor/{lo}", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        until = time.monotonic() + args.floor_duration
        ids = list(range(lo, hi + 1))
        floor_wall = asyncio.run(drive([floor_client(floor, ids, until, rec) for _ in range(args.clients)]))

        with psycopg.connect(dsn) as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM jobs WHERE id = ANY(%s)", (created,))}
        lost = len(set(created) - stored)
        wall = {r: (floor_wall if r.startswith("floor") else api_wall) for r in rec.latency}
        total_errors = sum(len(v) for v in rec.errors.values())
        print()
        print(
            f"{args.clients} concurrent clients, {args.duration:.0f} s against cttv2 serve (1 process) on "
            f"PostgreSQL + Redis, {args.seed_jobs} jobs seeded; floor {args.floor_duration:.0f} s; "
            f"{os.cpu_count()} CPUs shared by server and clients"
        )
        print(table(rec, wall))
        api_total = sum(len(v) for r, v in rec.latency.items() if not r.startswith("floor"))
        print(
            f"\nAPI: {api_total} requests, {api_total / api_wall:.1f} req/s overall; errors: {total_errors}; "
            f"jobs submitted: {len(created)}, lost: {lost}"
        )
        for route, errs in rec.errors.items():
            for e in errs[:3]:
                print(f"  error on {route}: {e}")
        return 0 if total_errors == 0 and lost == 0 else 1
    finally:
        if floor_proc is not None:
            floor_proc.terminate()
            floor_proc.wait(10)
        stack.destroy()
        import redis  # the queued messages of this run: drop them from the shared Redis

        redis.Redis.from_url(REDIS_URL).delete(stack.env["CTTV2_QUEUE_NAME"])


if __name__ == "__main__":
    sys.exit(main())
