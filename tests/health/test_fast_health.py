"""Health, readiness and version, in process: no token needed, the real database and broker
checked by /readyz."""

from __future__ import annotations

import pytest

from tests.support.asserts import assert_error

pytestmark = pytest.mark.fast


def test_healthz_needs_no_token(api):
    r = api.client().get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_checks_database_migrations_and_broker(api):
    r = api.client().get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["broker"] == "ok"


def test_readyz_says_which_part_is_missing(api):
    """Readiness against a reachable database that is not migrated: 503, the database check
    ok and the migrations check not."""
    fresh = api.backend.root / "unmigrated.db"
    with api.settings(database_url=f"sqlite:///{fresh}"):
        r = api.client().get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] not in ("ok", "unknown"), body  # says where it is and where head is


def test_version(api):
    r = api.client().get("/version")
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == "0.1.0", body
    assert all(isinstance(v, str) and v for v in body.values()), body


def test_v1_needs_a_token(api):
    for path in ("/v1/jobs", "/v1/presets", "/v1/device-specs", "/v1/sweeps", "/v1/weights"):
        r = api.client().get(path)
        assert_error(r, 401, "unauthorized")
        assert r.headers.get("www-authenticate") == "Bearer", path
    assert_error(api.client("not-a-token").get("/v1/jobs"), 401, "unauthorized")
