"""Fair claim order and the cost of a claim, on PostgreSQL (not a test: it prints tables).

    PYTHONPATH=. .venv/bin/python benchmarks/queue_order.py [--users 3] [--jobs 1000] [--workers 2]

What it does:
1. creates a scratch PostgreSQL database (dropped at the end), migrates it to head, and
   inserts the users and their queued jobs directly: all of user A's jobs first, then B's,
   then C's (the order a FIFO queue would run them in);
2. claims every job with service.jobs.lifecycle.claim_next, one transaction per claim as a
   worker does, simulating --workers workers: once that many jobs run, the oldest running
   one is finished (lifecycle.finish, in its own transaction, not timed) before the next
   claim, so the running counts are what a real queue sees;
3. prints the order's fairness, next to what FIFO would have done: per user the positions of
   their first 10 claims, the largest gap between two consecutive claims of a user, and
   Jain's fairness index over the first 300 claims (1 = every user got as many, 1/users = one
   user got them all);
4. times each claim (median, p95) against a floor measured in the same run on the same
   table: a plain `SELECT id FROM jobs WHERE id = :id FOR UPDATE` + `UPDATE jobs ... WHERE
   id = :id`, one transaction each, as many times; and shows the selection query's plan.

Ratios only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from service.core.config import Settings  # noqa: E402
from service.core.db import make_engine, utcnow  # noqa: E402
from service.core.migrate import run as migrate  # noqa: E402
from service.jobs import lifecycle  # noqa: E402
from service.jobs.models import Job, JobStatus  # noqa: E402
from service.users.models import User  # noqa: E402
from tests.support.stack import create_pg_database, drop_pg_database, pg_url  # noqa: E402


def jain(counts: list[int]) -> float:
    total = sum(counts)
    squares = sum(c * c for c in counts)
    return (total * total) / (len(counts) * squares) if squares else float("nan")


def fairness(order: list[str], users: list[str], window: int = 300) -> dict[str, object]:
    positions = {u: [i + 1 for i, owner in enumerate(order) if owner == u] for u in users}
    gaps = {u: max((b - a for a, b in zip(p, p[1:])), default=0) for u, p in positions.items()}
    head = order[:window]
    return {
        "first10": {u: p[:10] for u, p in positions.items()},
        "max_gap": gaps,
        "jain": jain([head.count(u) for u in users]),
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed(engine, users: list[str], jobs_per_user: int, finished_per_user: int = 0) -> dict[int, str]:
    now = utcnow()
    with Session(engine) as s, s.begin():
        ids = {}
        for name in users:
            ids[s.execute(insert(User).values(name=name, created_at=now).returning(User.id)).scalar_one()] = name
        for status, n in ((JobStatus.SUCCEEDED, finished_per_user), (JobStatus.QUEUED, jobs_per_user)):
            rows = [
                {
                    "user_id": user_id,
                    "name": f"{name}-{i}",
                    "spec": {},
                    "spec_hash": "0" * 64,
                    "algorithm": "fp",
                    "status": status.value,
                    "created_at": now,
                    "updated_at": now,
                }
                for user_id, name in ids.items()
                for i in range(n)
            ]
            if rows:
                s.execute(insert(Job), rows)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return ids


def claim_all(engine, workers: int, max_running: int) -> tuple[list[int], list[float]]:
    claimed: list[int] = []
    times: list[float] = []
    running: deque[tuple[int, str]] = deque()

    def finish_oldest() -> None:
        job_id, token = running.popleft()
        with Session(engine) as s, s.begin():
            assert lifecycle.finish(s, job_id, token, JobStatus.SUCCEEDED)

    while True:
        if len(running) >= workers:
            finish_oldest()
        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        with Session(engine) as s, s.begin():
            got = lifecycle.claim_next(s, token, f"w{len(claimed) % workers}", max_running=max_running)
        elapsed = time.perf_counter() - t0
        if got is None:
            if not running:
                return claimed, times
            finish_oldest()  # every waiting user is at the limit (or none is left): free a slot
            continue
        times.append(elapsed)
        claimed.append(got[0])
        running.append((got[0], token))


def floor(engine, job_ids: list[int]) -> list[float]:
    times = []
    for job_id in job_ids:
        t0 = time.perf_counter()
        with Session(engine) as s, s.begin():
            s.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
            s.execute(text("UPDATE jobs SET updated_at = now() WHERE id = :id"), {"id": job_id})
        times.append(time.perf_counter() - t0)
    return times


def selection_plan(engine, max_running: int) -> str:
    """EXPLAIN of fair_candidates' query, the scans only."""
    stmt = lifecycle._fair_order_query().params(max_running=max_running, limit=8)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = [r[0] for r in conn.execute(text("EXPLAIN " + sql))]
    return "\n".join(line for line in plan if "Scan" in line or "Cond" in line)


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1000, help="queued jobs per user")
    ap.add_argument("--workers", type=int, default=2, help="simulated workers (jobs running at once)")
    ap.add_argument("--max-running", type=int, default=4, help="max_running_jobs_per_user")
    ap.add_argument(
        "--finished", type=int, default=0, help="finished jobs per user inserted before the queued ones (a used table)"
    )
    args = ap.parse_args()

    db = create_pg_database("cttv2_bench_queue")
    engine = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database_url=pg_url(db), state_dir=Path(tmp))
            migrate(settings, "upgrade", "head")
            engine = make_engine(settings)
            names = [chr(ord("A") + i) if args.users <= 26 else f"u{i}" for i in range(args.users)]
            owner = seed(engine, names, args.jobs, args.finished)
            with Session(engine) as s:
                fifo_order = [
                    owner[u]
                    for (u,) in s.execute(text("SELECT user_id FROM jobs WHERE status = 'queued' ORDER BY id")).all()
                ]
            plan = selection_plan(engine, args.max_running)

            t0 = time.perf_counter()
            claimed, claim_s = claim_all(engine, args.workers, args.max_running)
            total_s = time.perf_counter() - t0
            with Session(engine) as s:
                by_job = dict(s.execute(text("SELECT id, user_id FROM jobs")).all())
            fair_order = [owner[by_job[j]] for j in claimed]
            floor_s = floor(engine, claimed)
    finally:
        if engine is not None:
            engine.dispose()
        drop_pg_database(db)

    n = args.users * args.jobs
    print(
        f"\n{args.users} users x {args.jobs} queued jobs (inserted user by user; {args.finished} finished jobs "
        f"each before them), {args.workers} simulated workers, "
        f"max_running_jobs_per_user {args.max_running}: {len(claimed)} of {n} claimed in {total_s:.1f} s\n"
    )
    fair, fifo = fairness(fair_order, names), fairness(fifo_order, names)
    rows = []
    for u in names:
        rows.append(
            [
                u,
                " ".join(map(str, fair["first10"][u])),  # type: ignore[index]
                fair["max_gap"][u],  # type: ignore[index]
                " ".join(map(str, fifo["first10"][u])),  # type: ignore[index]
                fifo["max_gap"][u],  # type: ignore[index]
            ]
        )
    print(table(["user", "claim_next: first 10 claims at", "max gap", "FIFO: first 10 at", "max gap"], rows))
    print(
        f"\nJain's fairness index over the first 300 claims: claim_next {fair['jain']:.3f}, "
        f"FIFO {fifo['jain']:.3f} (1 = equal shares, {1 / args.users:.3f} = one user only)\n"
    )
    med, p95 = statistics.median(claim_s) * 1e3, pct(claim_s, 0.95) * 1e3
    first, last = statistics.median(claim_s[:300]) * 1e3, statistics.median(claim_s[-300:]) * 1e3
    fmed, fp95 = statistics.median(floor_s) * 1e3, pct(floor_s, 0.95) * 1e3
    print(
        table(
            ["operation (one transaction each)", "n", "median ms", "p95 ms", "median / floor", "p95 / floor"],
            [
                [
                    "claim_next (select + lock + claim + event)",
                    len(claim_s),
                    f"{med:.2f}",
                    f"{p95:.2f}",
                    f"{med / fmed:.2f}",
                    f"{p95 / fp95:.2f}",
                ],
                [
                    "floor: SELECT .. FOR UPDATE + UPDATE by id",
                    len(floor_s),
                    f"{fmed:.2f}",
                    f"{fp95:.2f}",
                    "1.00",
                    "1.00",
                ],
            ],
        )
    )
    print(f"\nclaim_next median over the first 300 claims {first:.2f} ms, over the last 300 {last:.2f} ms")
    index = "ix_jobs_user_id_status_priority_id"
    print(f"\nselection query plan (EXPLAIN, {'uses' if index in plan else 'does NOT use'} {index}):\n{plan}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
