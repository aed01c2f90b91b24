"""Listing stays fast with 100,000 jobs in the table: the list query is a keyset page read
backwards off the (user_id, id) or (user_id, status, id) index, on the first page and the
last alike, never a scan or a sort of the user's jobs. (The timings are in
benchmarks/load.py; this checks the plan, which does not depend on the machine's load.)"""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support.seed import seed_jobs
from tests.support.stack import PG_ADMIN_URL, create_pg_database, drop_pg_database, pg_url

pytestmark = [pytest.mark.postgres]

N = 100_000


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    import os

    name = create_pg_database("cttv2_list")
    url = pg_url(name)
    env = {"CTTV2_DATABASE_URL": url, "CTTV2_STATE_DIR": str(tmp_path_factory.mktemp("list"))}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from service.core.config import get_settings
        from service.core.db import get_engine, get_sessionmaker
        from service.core.migrate import upgrade

        for cached in (get_settings, get_engine, get_sessionmaker):
            cached.cache_clear()
        upgrade(get_settings())
        with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name) as conn:
            users = [
                conn.execute(
                    "INSERT INTO users (name, is_admin, created_at) VALUES (%s, false, now()) RETURNING id", (n,)
                ).fetchone()[0]
                for n in ("big", "small")
            ]
            # The small user's jobs sit on both sides of the big user's 100,000: a page of theirs
            # read off the primary key would wade through all of those.
            seed_jobs(conn, users[1], 100)
            seed_jobs(conn, users[0], N)
            seed_jobs(conn, users[1], 100)
        yield dict(zip(("big", "small"), users))
    finally:
        from service.core.config import get_settings
        from service.core.db import get_engine, get_sessionmaker

        get_engine().dispose()
        for cached in (get_settings, get_engine, get_sessionmaker):
            cached.cache_clear()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        drop_pg_database(name)


def plan_of_list_query(user_id: int, status: str | None, cursor: str | None) -> dict:
    """EXPLAIN ANALYZE of exactly the statement GET /v1/jobs runs (captured from the service
    code), as JSON."""
    from sqlalchemy import event

    from service.core.db import get_engine, get_sessionmaker
    from service.core.pagination import PageParams
    from service.jobs import service
    from service.users.models import User

    captured: list[tuple[str, object]] = []

    def capture(conn, cursor_, statement, parameters, context, executemany):
        if "FROM jobs" in statement:
            captured.append((statement, parameters))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with get_sessionmaker()() as session:
            user = session.get(User, user_id)
            rows, _ = service.list_page(session, user, PageParams(limit=50, cursor=cursor), status)
            assert rows
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        plan = raw.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).fetchone()[0]
    return (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.mark.parametrize(
    ("who", "status", "where"),
    [
        ("big", None, "first"),
        ("big", None, "deep"),
        ("big", "failed", "first"),
        ("big", "failed", "deep"),
        ("small", None, "first"),
        ("small", None, "deep"),
    ],
)
def test_a_page_reads_about_a_page_of_rows_at_any_depth(seeded, who, status, where):
    from sqlalchemy import text

    from service.core.db import get_sessionmaker
    from service.core.pagination import encode_cursor

    user_id = seeded[who]
    cursor = None
    if where == "deep":  # the page after the newest 100 (small) or before the oldest 400 (big)
        with get_sessionmaker()() as session:
            ids = session.scalars(text("SELECT id FROM jobs WHERE user_id = :u ORDER BY id"), {"u": user_id}).all()
        cursor = encode_cursor(ids[-100] if who == "small" else ids[400])
    plan = plan_of_list_query(user_id, status, cursor)
    kinds = [n["Node Type"] for n in nodes(plan)]
    assert kinds[0] == "Limit" and "Sort" not in kinds and "Seq Scan" not in kinds, kinds
    scans = [n for n in nodes(plan) if "Scan" in n["Node Type"]]
    assert scans and all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in scans), kinds
    touched = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0) for n in scans)
    assert touched <= 500, [
        (n["Node Type"], n.get("Index Name"), n.get("Actual Rows"), n.get("Rows Removed by Filter")) for n in scans
    ]
