"""Listing stays fast with 100,000 jobs in the table: the list query is a keyset page read
backwards off the (user_id, id) or (user_id, status, id) index, on the first page and the
last alike, never a scan or a sort of the user's jobs; filtered by a tag (off job_tags'
(user_id, tag, job_id)) or a sweep ((sweep_id, id)) likewise, and by a name prefix off an
index too, never a Seq Scan of jobs. (The timings are in benchmarks/load.py; this checks the
plan, which does not depend on the machine's load.)"""

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
            # Tags: every 10th of the big user's jobs "every10", 20 of them "rare" (and the small
            # user's all "every10": the same tag of someone else). A sweep holding 1,000 jobs.
            conn.execute(
                """INSERT INTO job_tags (job_id, user_id, tag)
                   SELECT id, user_id, 'every10' FROM jobs WHERE user_id = %(small)s OR id %% 10 = 0
                   UNION ALL SELECT id, user_id, 'rare' FROM jobs WHERE user_id = %(big)s AND id %% 5000 = 0""",
                {"big": users[0], "small": users[1]},
            )
            sweep = conn.execute(
                "INSERT INTO sweeps (user_id, name, request, created_at) VALUES (%s, 's', '{}', now()) RETURNING id",
                (users[0],),
            ).fetchone()[0]
            conn.execute("UPDATE jobs SET sweep_id = %s WHERE user_id = %s AND id %% 100 = 7", (sweep, users[0]))
            conn.execute("ANALYZE jobs")
            conn.execute("ANALYZE job_tags")
        yield {"big": users[0], "small": users[1], "sweep": sweep}
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


def plan_of_list_query(user_id: int, status: str | None, cursor: str | None, **filters) -> dict:
    """EXPLAIN ANALYZE of exactly the statement GET /v1/jobs runs (captured from the service
    code), as JSON."""
    from sqlalchemy import event

    from service.core.db import get_engine, get_sessionmaker
    from service.core.pagination import PageParams
    from service.jobs import service
    from service.jobs.schemas import JobFilters
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
            page = PageParams(limit=50, cursor=cursor)
            rows, _ = service.list_page(session, user.id, page, JobFilters(status=status, **filters))
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


def deep_cursor(user_id: int, tag: str | None = None, sweep: int | None = None) -> str:
    """The cursor of a page deep in a tag's or a sweep's list: before its oldest 20 jobs."""
    from sqlalchemy import text

    from service.core.db import get_sessionmaker
    from service.core.pagination import encode_cursor

    if tag is not None:
        query, params = "SELECT job_id FROM job_tags WHERE user_id = :u AND tag = :t ORDER BY job_id", {"t": tag}
    else:
        query, params = "SELECT id FROM jobs WHERE user_id = :u AND sweep_id = :s ORDER BY id", {"s": sweep}
    with get_sessionmaker()() as session:
        ids = session.scalars(text(query), {"u": user_id, **params}).all()
    assert len(ids) > 500
    return encode_cursor(ids[20])


def scans_of(plan: dict) -> list[dict]:
    return [n for n in nodes(plan) if "Scan" in n["Node Type"]]


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        ({"tag": "every10"}, "first"),
        ({"tag": "every10"}, "deep"),
        ({"tag": "rare"}, "first"),
        ({"tag": "every10", "status": "failed"}, "first"),
        ({"sweep": "sweep"}, "first"),
        ({"sweep": "sweep"}, "deep"),
    ],
)
def test_a_tag_or_sweep_page_reads_about_a_page_of_rows_off_their_index(seeded, filters, where):
    """A tag: a Nested Loop over job_tags' (user_id, tag, job_id) read backwards, each job by
    its primary key; a sweep: (sweep_id, id) read backwards. No sort, no Seq Scan."""
    filters = {k: seeded[v] if v == "sweep" else v for k, v in filters.items()}
    status = filters.pop("status", None)
    cursor = deep_cursor(seeded["big"], **filters) if where == "deep" else None
    plan = plan_of_list_query(seeded["big"], status, cursor, **filters)
    kinds = [n["Node Type"] for n in nodes(plan)]
    assert kinds[0] == "Limit" and "Sort" not in kinds and "Seq Scan" not in kinds, kinds
    scans = scans_of(plan)
    assert scans and all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in scans), kinds
    # A tag is read off job_tags' (user_id, tag, job_id), or (a common one) checked per job
    # against its primary key (job_id, tag) while jobs are read newest first.
    wanted = ("ix_job_tags_user_id_tag_job_id", "pk_job_tags") if "tag" in filters else ("ix_jobs_sweep_id_id",)
    assert {n.get("Index Name") for n in scans} & set(wanted), [(n["Node Type"], n.get("Index Name")) for n in scans]
    touched = sum(
        n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0) for n in scans
    )
    assert touched <= 2500, [
        (n["Node Type"], n.get("Index Name"), n.get("Actual Rows"), n.get("Rows Removed by Filter")) for n in scans
    ]


@pytest.mark.parametrize("prefix", ["seed-9999", "seed-12", "seed-"])
def test_a_name_prefix_page_uses_an_index_of_jobs(seeded, prefix):
    """A rare prefix reads the (user_id, name) range (varchar_pattern_ops: whatever the
    collation); a common one reads the jobs newest first until a page matched. Never a Seq Scan
    of jobs. (A prefix of 1% of the jobs that are all old, "seed-12", is read newest first too:
    the planner takes the matches to be spread evenly, and about 87,000 index rows go by
    before the page is full.)"""
    plan = plan_of_list_query(seeded["big"], None, None, name=prefix)
    kinds = [n["Node Type"] for n in nodes(plan)]
    assert "Seq Scan" not in kinds, kinds
    scans = scans_of(plan)
    on_jobs = [n for n in scans if n.get("Relation Name") == "jobs" or n.get("Index Name", "").startswith("ix_jobs_")]
    assert on_jobs and all(n["Node Type"] != "Seq Scan" for n in on_jobs), kinds
    if prefix == "seed-9999":
        assert "ix_jobs_user_id_name" in [n.get("Index Name") for n in scans], kinds
    touched = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0) for n in scans)
    if prefix != "seed-12":
        assert touched <= 500, [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows")) for n in scans]
