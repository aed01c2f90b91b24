"""Walk every /v1 route in the OpenAPI spec: without a valid token (401), with another user's
token on the owner's real objects (404, as if missing), and the admin routes as a non-admin
(403). A route whose path parameter this walk does not know fails the test: a new kind of
object must be added here, so no route escapes the walk."""

from __future__ import annotations

import uuid

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_FP, spec
from tests.support.stack import wait_for_job

pytestmark = [pytest.mark.postgres]

QUICK = spec(
    TINY_FP,
    name="walk",
    **{"training.epochs": 1, "data.classes": [0, 1], "data.train_per_class": 8, "data.test_per_class": 4},
)


def v1_routes(client) -> list[tuple[str, str, dict]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [(p, m.upper(), op) for p, ops in paths.items() if p.startswith("/v1") for m, op in ops.items()]


def fill(path: str, values: dict[str, object]) -> str:
    import re

    def sub(m):
        name = m.group(1)
        if name not in values:
            raise AssertionError(f"{path}: the walk has no object for path parameter {name!r}; add one")
        return str(values[name])

    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", sub, path)


@pytest.fixture(scope="module")
def owned(secure_stack, new_token):
    """A user with one real object of each kind, and their ids by path parameter name."""
    s = secure_stack
    owner = s.client(new_token())
    ops = {op["operationId"] for _, _, op in v1_routes(owner)}
    dev = owner.post("/v1/device-specs", json={"name": "mine", "spec": {"family": "ConstantStep"}})
    assert dev.status_code == 201, dev.text
    job = owner.post("/v1/jobs", json=QUICK)
    assert job.status_code == 201, job.text
    done = wait_for_job(owner, job.json()["id"], stack=s)
    assert done["status"] == "succeeded", done  # it has artifacts, metrics and logs
    ids: dict[str, object] = {"job_id": done["id"], "spec_id": dev.json()["id"], "name": "result.json"}
    if "create_sweep" in ops:
        sweep = owner.post(
            "/v1/sweeps",
            json={"name": "walk", "base": QUICK, "grid": {"training.lr": [0.001]}, "seeds": [0], "baseline": False},
        )
        assert sweep.status_code == 201, sweep.text
        ids["sweep_id"] = sweep.json()["id"]
    if "create_weights" in ops or "upload_weights" in ops:
        weights = owner.post(
            "/v1/weights",
            data={"name": f"w{uuid.uuid4().hex[:6]}.safetensors", "arch": "swin_micro"},
            files={"file": ("w.safetensors", b"\0" * 64, "application/octet-stream")},
        )
        assert weights.status_code == 201, weights.text
        ids["weights_id"] = weights.json()["id"]
    return owner, ids


def test_every_v1_route_refuses_a_missing_wrong_or_revoked_token(secure_stack, owned, new_token, admin):
    s = secure_stack
    _, ids = owned
    revoked = new_token()
    user_id, token_id = s.sql("SELECT user_id, id FROM api_tokens WHERE prefix = :p", p=revoked[:12])[0]
    assert admin.post(f"/v1/admin/users/{user_id}/tokens/{token_id}/revoke").status_code == 200
    values = {**ids, "user_id": 1, "token_id": 1}
    anonymous = s.client()
    for path, method, _ in v1_routes(anonymous):
        url = fill(path, values)
        for headers in (
            {},
            {"Authorization": "Bearer cttv2_not-a-token"},
            {"Authorization": f"Bearer {revoked}"},
            {"Authorization": "Basic dXNlcjpwdw=="},
        ):
            assert_error(anonymous.request(method, url, headers=headers), 401, "unauthorized")


def test_another_users_token_sees_nothing_of_the_owners(secure_stack, owned, new_token):
    s = secure_stack
    owner, ids = owned
    other = s.client(new_token())
    walked = 0
    for path, method, _ in v1_routes(other):
        if path.startswith("/v1/admin") or "{" not in path:
            continue
        url = fill(path, ids)
        r = other.request(method, url)
        assert r.status_code == 404, f"{method} {url} as another user: {r.status_code} {r.text[:300]}"
        assert_error(r, 404, "not_found")
        walked += 1
        if method == "GET":  # the object is real: its owner does get it
            assert owner.request(method, url).status_code != 404, f"{method} {url} as the owner"
    assert walked >= 4

    # Lists hold only one's own objects; a body may not point at another's object either.
    assert ids["job_id"] not in [j["id"] for j in other.get("/v1/jobs").json()["items"]]
    assert ids["spec_id"] not in [d["id"] for d in other.get("/v1/device-specs").json()["items"]]
    # It is answered exactly as a reference to an object that does not exist.
    missing = 2_000_000_000
    for field, make in (
        (
            "device",
            lambda i: spec(
                QUICK, algorithm="c-ttv2", device={"id": i}, model={"arch": "swin_micro", "analog_scope": "head"}
            ),
        ),
        ("resume_from", lambda i: {**QUICK, "resume_from": {"job": i}}),
        ("model.pretrained", lambda i: spec(QUICK, **{"model.pretrained": {"job": i}})),
    ):
        owner_id = ids["spec_id"] if field == "device" else ids["job_id"]
        theirs, nobodys = other.post("/v1/jobs", json=make(owner_id)), other.post("/v1/jobs", json=make(missing))
        assert theirs.status_code in (404, 422), (field, theirs.text)
        err = assert_error(theirs, nobodys.status_code, nobodys.json()["error"]["code"])
        assert err["message"].replace(str(owner_id), "N") == nobodys.json()["error"]["message"].replace(
            str(missing), "N"
        )
    # ... and the owner's objects are untouched by all of that.
    assert owner.get(f"/v1/device-specs/{ids['spec_id']}").status_code == 200
    assert owner.get(f"/v1/jobs/{ids['job_id']}").json()["status"] == "succeeded"


def test_admin_routes_need_the_admin_role(secure_stack, admin, new_token):
    s = secure_stack
    user = s.client(new_token())
    target = new_token()
    target_id = s.sql("SELECT user_id, id FROM api_tokens WHERE prefix = :p", p=target[:12])[0]
    values = {"user_id": target_id[0], "token_id": target_id[1]}
    admin_routes = [(p, m) for p, m, _ in v1_routes(user) if p.startswith("/v1/admin")]
    assert len(admin_routes) >= 7
    for path, method in admin_routes:
        url = fill(path, values)
        assert_error(user.request(method, url, json={}), 403, "forbidden")
        if method == "GET":
            assert admin.request(method, url).status_code == 200, url
    assert s.client(target).get("/v1/jobs").status_code == 200  # the non-admin changed nothing
