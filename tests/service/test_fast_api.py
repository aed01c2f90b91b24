"""Cross-cutting API behaviour, in process: the one error shape for unknown routes and methods,
one pagination for every list, request ids, body size limits, the OpenAPI document, and that
each backend really is the database the app writes to."""

from __future__ import annotations

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2

pytestmark = pytest.mark.fast

LISTS = ("/v1/jobs", "/v1/device-specs", "/v1/sweeps", "/v1/weights", "/v1/admin/users")


def test_the_app_writes_to_the_backend_under_test(api):
    alice = api.user()
    assert api.sql("SELECT name FROM users WHERE id = :u", u=alice.user_id) == [(alice.name,)]
    if api.name == "postgres":
        ((db,),) = api.sql("SELECT current_database()")
        assert db.startswith("cttv2_fast_") and alice.post("/v1/jobs", json=TINY_CTTV2).status_code == 201
        assert api.published()[-1][0] == "cttv2.run_job"  # through Redis
    else:
        assert (api.backend.root / "state" / "cttv2.db").is_file()


def test_unknown_routes_and_methods_answer_in_the_error_shape(api):
    alice = api.user()
    assert_error(alice.get("/v1/nothing-here"), 404, "not_found")
    assert_error(api.client().get("/nothing"), 404, "not_found")
    assert_error(alice.delete("/v1/jobs"), 405, "method_not_allowed")
    assert_error(alice.put("/v1/presets"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", LISTS)
def test_every_list_pages_the_same_way(api, path):
    admin = api.user(admin=True)
    r = admin.get(path, params={"limit": 1})
    assert r.status_code == 200, r.text
    page = r.json()
    assert set(page) == {"items", "next_cursor"} and isinstance(page["items"], list) and len(page["items"]) <= 1
    assert_error(admin.get(path, params={"cursor": "not-a-cursor"}), 422, "validation_error", field="cursor")
    assert_error(admin.get(path, params={"limit": 0}), 422, "validation_error", field="limit")


def test_request_ids_are_echoed_or_made(api):
    client = api.client()
    assert client.get("/healthz", headers={"X-Request-ID": "my-id.1"}).headers["x-request-id"] == "my-id.1"
    made = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
    assert all(made) and made[0] != made[1]
    unsafe = client.get("/healthz", headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"]
    assert unsafe and " " not in unsafe and unsafe != "a b\tc"
    # Errors carry it too.
    assert api.client().get("/v1/jobs", headers={"X-Request-ID": "err-1"}).headers["x-request-id"] == "err-1"


def test_bodies_over_the_limit_are_a_413_declared_or_chunked(api):
    alice = api.user()
    with api.settings(max_body_bytes=2048):
        padded = {**TINY_CTTV2, "name": "x" * 100, "pad": "y" * 4000}
        err = assert_error(alice.post("/v1/jobs", json=padded), 413, "payload_too_large", field="body")
        assert "CTTV2_MAX_BODY_BYTES" in err["message"]

        def chunks():
            for _ in range(10):
                yield b"z" * 1000

        r = alice.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert_error(r, 413, "payload_too_large")
        assert alice.post("/v1/jobs", json=TINY_CTTV2).status_code == 201  # under the limit
    assert api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id) == [(1,)]


def test_openapi_names_every_operation_once(api):
    r = api.client().get("/openapi.json")
    assert r.status_code == 200
    ops = [op["operationId"] for path in r.json()["paths"].values() for op in path.values()]
    assert len(ops) == len(set(ops))
    assert {
        "create_job",
        "list_jobs",
        "get_job",
        "cancel_job",
        "rerun_job",
        "create_device_spec",
        "delete_device_spec",
        "create_sweep",
        "get_sweep_report",
        "upload_weights",
        "list_presets",
        "list_users",
        "create_user_token",
        "healthz",
        "readyz",
        "version",
    } <= set(ops)
