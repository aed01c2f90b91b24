"""Tokens: random, shown once, stored as a keyed hash, with expiry and revocation; the admin
role manages users and tokens over /v1/admin/users."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest

from tests.security.conftest import PEPPER
from tests.support.asserts import assert_error

pytestmark = [pytest.mark.postgres]


def _name() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def test_tokens_are_random_and_only_their_keyed_hash_is_stored(secure_stack, new_token):
    s = secure_stack
    tokens = [s.create_user(), new_token(), new_token()]  # from the CLI and from the admin API
    assert len(set(tokens)) == 3
    assert all(t.startswith("cttv2_") and len(t) >= 40 for t in tokens)
    stored = s.sql("SELECT token_hash, prefix, label FROM api_tokens")
    dump = repr(stored)
    for token in tokens:
        assert token not in dump  # never stored, in any column
        digest = hmac.new(PEPPER.encode(), token.encode(), hashlib.sha256).hexdigest()
        assert (digest, token[:12]) in {(h, p) for h, p, _ in stored}


def test_expired_and_revoked_are_refused(secure_stack, admin):
    s = secure_stack
    name = _name()
    made = admin.post("/v1/admin/users", json={"name": name}).json()
    token = made["token"]["token"]
    client = s.client(token)
    assert client.get("/v1/jobs").status_code == 200

    s.sql("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE prefix = :p", p=token[:12])
    assert assert_error(client.get("/v1/jobs"), 401, "unauthorized")["message"] == "API token expired"

    second = s.cli("admin", "create-token", name).stdout.strip().splitlines()[-1]
    assert s.client(second).get("/v1/jobs").status_code == 200
    assert s.cli("admin", "revoke-token", "--token", second).stdout.strip() == "revoked 1 token(s)"
    assert assert_error(s.client(second).get("/v1/jobs"), 401)["message"] == "API token revoked"

    third = admin.post(f"/v1/admin/users/{made['user']['id']}/tokens", json={"ttl_days": 1}).json()["token"]
    assert s.client(third).get("/v1/jobs").status_code == 200
    s.cli("admin", "revoke-token", "--user", name)
    assert_error(s.client(third).get("/v1/jobs"), 401)


def test_admin_manages_users_and_tokens(secure_stack, admin):
    s = secure_stack
    name = _name()
    made = admin.post("/v1/admin/users", json={"name": name})
    assert made.status_code == 201, made.text
    user_id, first = made.json()["user"]["id"], made.json()["token"]
    assert made.json()["user"]["is_admin"] is False and first["token"].startswith("cttv2_")
    as_user = s.client(first["token"])
    assert as_user.get("/v1/jobs").status_code == 200
    assert_error(admin.post("/v1/admin/users", json={"name": name}), 409, "user_exists")
    bad = assert_error(admin.post("/v1/admin/users", json={"name": "../x"}), 422)
    assert bad["fields"][0]["field"] == "name"

    assert admin.get(f"/v1/admin/users/{user_id}").json()["name"] == name
    listed, cursor = [], None
    while True:
        page = admin.get("/v1/admin/users", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        listed += [u["name"] for u in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert name in listed

    second = admin.post(f"/v1/admin/users/{user_id}/tokens", json={"label": "ci", "ttl_days": 2})
    assert second.status_code == 201, second.text
    assert s.client(second.json()["token"]).get("/v1/jobs").status_code == 200
    records = admin.get(f"/v1/admin/users/{user_id}/tokens").json()["items"]
    assert len(records) == 2
    shown = repr(records)
    assert first["token"] not in shown and second.json()["token"] not in shown and "hash" not in shown

    revoked = admin.post(f"/v1/admin/users/{user_id}/tokens/{second.json()['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert_error(s.client(second.json()["token"]).get("/v1/jobs"), 401)
    assert as_user.get("/v1/jobs").status_code == 200  # the other token still works

    assert admin.post(f"/v1/admin/users/{user_id}/disable").json()["disabled_at"]
    assert assert_error(as_user.get("/v1/jobs"), 401)["message"] == "user disabled"
    assert admin.post(f"/v1/admin/users/{user_id}/enable").json()["disabled_at"] is None
    assert as_user.get("/v1/jobs").status_code == 200

    assert_error(admin.post(f"/v1/admin/users/{user_id}/tokens/999999/revoke"), 404, "not_found")
    assert_error(admin.get("/v1/admin/users/999999"), 404, "not_found")


def test_an_admin_cannot_lock_themselves_out(secure_stack, new_token):
    s = secure_stack
    token = new_token(is_admin=True)
    admin = s.client(token)
    prefix = token[:12]
    my_id = s.sql("SELECT user_id FROM api_tokens WHERE prefix = :p", p=prefix)[0][0]
    assert_error(admin.post(f"/v1/admin/users/{my_id}/disable"), 409, "cannot_disable_self")
