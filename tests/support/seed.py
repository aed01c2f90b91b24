"""Bulk-seed finished jobs straight into PostgreSQL (one INSERT ... SELECT over
generate_series): 100,000 realistic rows in seconds, for the listing checks and the load
benchmark."""

from __future__ import annotations

import json

from tests.support.specs import TINY_CTTV2

_RESULT = {
    "test_accuracy": 0.93,
    "test_error": 0.07,
    "test_loss": 0.21,
    "train_loss": 0.18,
    "best_epoch": 11,
    "wall_s": 41.2,
    "environment": {"device": "cpu", "torch": "2.10.0", "aihwkit": "1.1.0", "seed": 1},
    "history": [
        {"epoch": e, "step": 19 * e, "train_loss": 1.0 / e, "test_accuracy": 0.5 + e / 30} for e in range(1, 13)
    ],
}


def seed_jobs(conn, user_id: int, n: int) -> None:
    """n finished jobs of user_id, oldest first (a psycopg connection, in its transaction)."""
    conn.execute(
        """
        INSERT INTO jobs (user_id, name, spec, spec_hash, algorithm, is_baseline, status,
                          cancel_requested, attempt, lost_count, result, created_at, updated_at,
                          started_at, finished_at)
        SELECT %(u)s, 'seed-' || g, %(spec)s::jsonb, md5(g::text) || md5(g::text), 'c-ttv2', false,
               (ARRAY['succeeded', 'succeeded', 'failed', 'cancelled'])[1 + g %% 4], false, 1, 0,
               %(result)s::jsonb, t, t, t, t + interval '40 seconds'
        FROM generate_series(1, %(n)s) AS g,
             LATERAL (SELECT now() - make_interval(secs => %(n)s - g) AS t) AS at
        """,
        {"u": user_id, "n": n, "spec": json.dumps(TINY_CTTV2), "result": json.dumps(_RESULT)},
    )
    conn.execute("ANALYZE jobs")
