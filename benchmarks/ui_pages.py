"""The dashboard's jobs page against the API's job list, on 100,000 jobs (not a test: it
prints a table).

    PYTHONPATH=. .venv/bin/python benchmarks/ui_pages.py [--jobs 100000] [--requests 40]

A real `cttv2 serve` on a scratch PostgreSQL database (dropped at the end); one user with
--jobs finished jobs seeded straight into the table (tests/support/seed.py); a browser-like
client signed in to /ui with a session cookie, and an API client with the same user's token.
Each row is timed over --requests sequential requests (after 3 warm-up requests) and compared
with the floor measured in the same run: `GET /v1/jobs` (the API's first page, 50 jobs,
serialized to JSON). The page renders the same 50 rows as HTML, after the same token check
(plus the session lookup). Ratios only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from tests.support.seed import seed_jobs  # noqa: E402
from tests.support.stack import Stack  # noqa: E402


def timed(client: httpx.Client, url: str, n: int) -> tuple[float, float, int]:
    """(median ms, p95 ms, bytes of the last response) over n requests after 3 warm-ups."""
    for _ in range(3):
        client.get(url).raise_for_status()
    samples = []
    size = 0
    for _ in range(n):
        start = time.perf_counter()
        r = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
        size = len(r.content)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    stack = Stack.create("postgres", Path(tempfile.mkdtemp(prefix="cttv2-ui-bench-")))
    try:
        stack.start_api()
        token = stack.create_user("bench")
        user_id = stack.sql("SELECT id FROM users WHERE name = 'bench'")[0][0]
        started = time.perf_counter()
        with psycopg.connect(stack.database_url().replace("postgresql+psycopg", "postgresql")) as conn:
            seed_jobs(conn, user_id, args.jobs)
        print(f"seeded {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")

        api = stack.client(token)
        browser = httpx.Client(base_url=stack.url, timeout=60)
        r = browser.post("/ui/login", data={"token": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        deep_id = stack.sql("SELECT id FROM jobs ORDER BY id LIMIT 1 OFFSET 1000")[0][0]
        from service.core.pagination import encode_cursor

        cursor = encode_cursor(deep_id)
        rows = [
            ("GET /v1/jobs (floor: API, first page)", api, "/v1/jobs"),
            ("GET /ui/jobs (first page)", browser, "/ui/jobs"),
            ("GET /v1/jobs?cursor= (deep page)", api, f"/v1/jobs?cursor={cursor}"),
            ("GET /ui/jobs?cursor= (deep page)", browser, f"/ui/jobs?cursor={cursor}"),
            ("GET /ui/jobs?status=failed", browser, "/ui/jobs?status=failed"),
            ("GET /ui/jobs?name=seed-9 (prefix)", browser, "/ui/jobs?name=seed-9"),
        ]
        results = []
        for label, client, url in rows:
            median, p95, size = timed(client, url, args.requests)
            results.append((label, median, p95, size))
        page = browser.get("/ui/jobs").text
        shown = len(re.findall(r"<tr data-job-id=", page))
        floor_median, floor_p95 = results[0][1], results[0][2]
        print(f"\n{args.jobs:,} jobs, {args.requests} sequential requests each, {shown} rows per page")
        header = ("request", "median ms", "p95 ms", "x floor (median)", "x floor (p95)", "bytes")
        print(f"{header[0]:42} {header[1]:>10} {header[2]:>8} {header[3]:>17} {header[4]:>14} {header[5]:>8}")
        for label, median, p95, size in results:
            print(
                f"{label:42} {median:10.1f} {p95:8.1f} {median / floor_median:17.2f} {p95 / floor_p95:14.2f} {size:8d}"
            )
    finally:
        stack.destroy()


if __name__ == "__main__":
    main()
