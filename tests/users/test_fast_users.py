"""Users and tokens through /v1/admin/users, in process: only admins manage users; a created
user's token works at once; tokens are shown once, stored as keyed hashes, and stop working
when revoked, expired or their user is disabled."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import pytest

from tests.support.asserts import assert_error

pytestmark = pytest.mark.fast


def name() -> str:
    return f"n{uuid.uuid4().hex[:10]}"


def test_an_admin_creates_a_user_whose_token_works(api):
    username = name()
    r = api.admin.post("/v1/admin/users", json={"name": username})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["user"]["name"] == username and created["user"]["is_admin"] is False
    assert created["user"]["disabled_at"] is None
    token = created["token"]["token"]
    assert token.startswith(created["token"]["prefix"]) and len(token) >= 40
    client = api.client(token)
    assert client.get("/v1/jobs").json() == {"items": [], "next_cursor": None}
    assert api.admin.get(f"/v1/admin/users/{created['user']['id']}").json() == created["user"]


def test_tokens_are_stored_only_as_keyed_hashes(api):
    alice = api.user()
    rows = api.sql("SELECT token_hash, prefix FROM api_tokens WHERE user_id = :u", u=alice.user_id)
    assert len(rows) == 1
    token_hash, prefix = rows[0]
    assert alice.token not in token_hash and len(token_hash) == 64 and prefix == alice.token[:12]
    assert token_hash != hashlib.sha256(alice.token.encode()).hexdigest()  # keyed (HMAC), not a bare hash


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"name": "bad name"}, 422, "validation_error", "name"),
        ({"name": ""}, 422, "validation_error", "name"),
        ({"name": "x" * 65}, 422, "validation_error", "name"),
        ({"name": "ok", "role": "root"}, 422, "validation_error", "role"),
        ({}, 422, "validation_error", "name"),
    ],
)
def test_bad_user_bodies_are_refused(api, body, status, code, field):
    assert_error(api.admin.post("/v1/admin/users", json=body), status, code, field=field)


def test_user_names_are_unique(api):
    alice = api.user()
    assert_error(api.admin.post("/v1/admin/users", json={"name": alice.name}), 409, "user_exists")


def test_only_admins_manage_users(api):
    alice = api.user()
    for method, path, body in (
        ("GET", "/v1/admin/users", None),
        ("POST", "/v1/admin/users", {"name": name()}),
        ("GET", f"/v1/admin/users/{alice.user_id}", None),
        ("POST", f"/v1/admin/users/{alice.user_id}/disable", None),
        ("GET", f"/v1/admin/users/{alice.user_id}/tokens", None),
        ("POST", f"/v1/admin/users/{alice.user_id}/tokens", {}),
    ):
        assert_error(alice.request(method, path, json=body), 403, "forbidden")
    assert api.sql("SELECT disabled_at FROM users WHERE id = :u", u=alice.user_id) == [(None,)]
    # A second admin may.
    boss = api.user(admin=True)
    assert boss.get(f"/v1/admin/users/{alice.user_id}").json()["name"] == alice.name


def test_users_list_pages(api):
    made = [api.user().user_id for _ in range(3)]
    seen, cursor = [], None
    while True:
        page = api.admin.get("/v1/admin/users", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert set(made) <= set(seen)


def test_a_missing_user_is_a_404(api):
    for method, suffix in (
        ("GET", ""),
        ("POST", "/disable"),
        ("POST", "/enable"),
        ("GET", "/tokens"),
        ("POST", "/tokens"),
    ):
        assert_error(api.admin.request(method, f"/v1/admin/users/2147483647{suffix}", json={}), 404, "not_found")


def test_disable_stops_the_users_tokens_and_enable_restores_them(api):
    alice = api.user()
    assert alice.post("/v1/jobs", json={"name": "kept", "algorithm": "fp"}).status_code == 201
    r = api.admin.post(f"/v1/admin/users/{alice.user_id}/disable")
    assert r.status_code == 200 and r.json()["disabled_at"] is not None
    assert_error(alice.get("/v1/jobs"), 401, "unauthorized")
    assert api.sql("SELECT count(*) FROM jobs WHERE user_id = :u", u=alice.user_id) == [(1,)]  # jobs kept
    r = api.admin.post(f"/v1/admin/users/{alice.user_id}/enable")
    assert r.status_code == 200 and r.json()["disabled_at"] is None
    assert alice.get("/v1/jobs").status_code == 200


def test_an_admin_cannot_disable_themselves(api):
    boss = api.user(admin=True)
    assert_error(boss.post(f"/v1/admin/users/{boss.user_id}/disable"), 409, "cannot_disable_self")
    assert boss.get("/v1/admin/users").status_code == 200


def test_more_tokens_listed_without_the_secret_and_revoked_one_by_one(api):
    alice = api.user()
    r = api.admin.post(f"/v1/admin/users/{alice.user_id}/tokens", json={"label": "ci", "ttl_days": 2})
    assert r.status_code == 201, r.text
    issued = r.json()
    second = api.client(issued["token"])
    assert issued["label"] == "ci" and second.get("/v1/jobs").status_code == 200

    listed = api.admin.get(f"/v1/admin/users/{alice.user_id}/tokens").json()["items"]
    assert [t["id"] for t in listed] == sorted((t["id"] for t in listed), reverse=True) and len(listed) == 2
    assert all("token" not in t for t in listed)  # shown once, never again
    assert {t["prefix"] for t in listed} == {alice.token[:12], issued["token"][:12]}

    r = api.admin.post(f"/v1/admin/users/{alice.user_id}/tokens/{issued['id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert_error(second.get("/v1/jobs"), 401, "unauthorized")
    assert alice.get("/v1/jobs").status_code == 200  # the other token still works


def test_a_token_is_revoked_only_through_its_own_user(api):
    alice, bob = api.user(), api.user()
    alice_token_id = api.admin.get(f"/v1/admin/users/{alice.user_id}/tokens").json()["items"][0]["id"]
    r = api.admin.post(f"/v1/admin/users/{bob.user_id}/tokens/{alice_token_id}/revoke")
    assert_error(r, 404, "not_found")
    assert alice.get("/v1/jobs").status_code == 200


def test_token_lifetime_is_bounded(api):
    alice = api.user()
    for ttl in (0, 3651):
        r = api.admin.post(f"/v1/admin/users/{alice.user_id}/tokens", json={"ttl_days": ttl})
        assert_error(r, 422, "validation_error", field="ttl_days")


def test_an_expired_token_is_refused(api):
    alice = api.user()
    api.sql("UPDATE api_tokens SET expires_at = :t WHERE user_id = :u", t=datetime(2000, 1, 1), u=alice.user_id)
    err = assert_error(alice.get("/v1/jobs"), 401, "unauthorized")
    assert "expired" in err["message"]


def test_every_way_of_reading_a_token_refuses_the_same_tokens_for_the_same_reasons(api):
    """The hot routes (a job's poll, the list, a submit) check the token in their own read
    (core.deps.Caller); /v1/users/me checks it on its own first (CurrentUser): the same tokens
    get in, and each refused one gets the same 401 and message from both, even with an
    invalid body (a 401 first, never a 422 that describes the request)."""
    from tests.support.specs import TINY_FP, spec

    owner = api.user()
    job_id = owner.post("/v1/jobs", json=spec(TINY_FP)).json()["id"]
    revoked, expired, disabled = api.user(), api.user(), api.user()
    api.admin.post(f"/v1/admin/users/{disabled.user_id}/disable").raise_for_status()
    api.sql("UPDATE api_tokens SET expires_at = :t WHERE user_id = :u", t=datetime(2000, 1, 1), u=expired.user_id)
    api.sql("UPDATE api_tokens SET revoked_at = :t WHERE user_id = :u", t=datetime(2000, 1, 1), u=revoked.user_id)
    refused = {
        "revoked": (revoked, "API token revoked"),
        "expired": (expired, "API token expired"),
        "disabled": (disabled, "user disabled"),
        "unknown": (api.client("cttv2_" + "x" * 43), "missing or invalid API token"),
        "none": (api.client(None), "missing or invalid API token"),
    }
    for why, (client, message) in refused.items():
        calls = {
            "me": client.get("/v1/users/me"),
            "poll": client.get(f"/v1/jobs/{job_id}"),
            "poll a missing job": client.get("/v1/jobs/2000000000"),
            "list": client.get("/v1/jobs", params={"status": "queued"}),
            "submit": client.post("/v1/jobs", json=spec(TINY_FP)),
            "submit an invalid body": client.post("/v1/jobs", json={"nonsense": 1}),
            "list with an invalid filter": client.get("/v1/jobs", params={"status": "nonsense"}),
        }
        for route, r in calls.items():
            assert assert_error(r, 401, "unauthorized")["message"] == message, (why, route)
    assert owner.get(f"/v1/jobs/{job_id}").json()["id"] == job_id
    assert_error(owner.get("/v1/jobs/2000000000"), 404, "not_found")
    assert_error(owner.post("/v1/jobs", json={"nonsense": 1}), 422, "validation_error")


def test_a_revoked_token_is_refused_by_the_very_next_poll(api):
    """No cache stands between a revocation and the next request: each poll reads the token."""
    from tests.support.specs import TINY_FP, spec

    alice = api.user()
    job_id = alice.post("/v1/jobs", json=spec(TINY_FP)).json()["id"]
    assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
    token_id = api.admin.get(f"/v1/admin/users/{alice.user_id}/tokens").json()["items"][0]["id"]
    api.admin.post(f"/v1/admin/users/{alice.user_id}/tokens/{token_id}/revoke").raise_for_status()
    for r in (alice.get(f"/v1/jobs/{job_id}"), alice.get("/v1/jobs"), alice.post("/v1/jobs", json=spec(TINY_FP))):
        assert assert_error(r, 401, "unauthorized")["message"] == "API token revoked"
