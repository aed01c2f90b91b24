"""Stored device specs, in process: create (validated, defaults filled), read, list, delete;
another user's spec is a 404; a job given a spec by id copies it; delete is refused while a
queued job uses it."""

from __future__ import annotations

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

pytestmark = pytest.mark.fast

RERAM = {"family": "ReRamSB", "sp_skew": 0.1, "n_states": 200}


def create(client, body=None, name="reram") -> dict:
    r = client.post("/v1/device-specs", json={"name": name, "spec": body or RERAM})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_read_list_delete(api):
    alice = api.user()
    made = create(alice)
    assert made["name"] == "reram" and made["spec"]["family"] == "ReRamSB"
    assert made["spec"]["sp_skew"] == 0.1 and made["spec"]["n_states"] == 200
    assert made["spec"]["sp_variability"] == 0.0  # defaults filled in
    assert alice.get(f"/v1/device-specs/{made['id']}").json() == made
    assert alice.get("/v1/device-specs").json() == {"items": [made], "next_cursor": None}

    r = alice.delete(f"/v1/device-specs/{made['id']}")
    assert r.status_code == 204 and r.content == b""
    assert_error(alice.get(f"/v1/device-specs/{made['id']}"), 404, "not_found")
    assert_error(alice.delete(f"/v1/device-specs/{made['id']}"), 404, "not_found")
    assert api.sql("SELECT count(*) FROM device_specs WHERE user_id = :u", u=alice.user_id) == [(0,)]


def test_list_pages_newest_first(api):
    alice = api.user()
    ids = [create(alice, name=f"d{i}")["id"] for i in range(3)]
    first = alice.get("/v1/device-specs", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == ids[:0:-1]
    second = alice.get("/v1/device-specs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in second["items"]] == [ids[0]] and second["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"spec": {"family": "NoSuchDevice"}}, "spec.family"),
        ({"spec": {"family": "ConstantStep", "sp_skew": 0.1}}, "spec"),
        ({"spec": {"dw_min": 0}}, "spec.dw_min"),
        ({"spec": {"n_states": 1}}, "spec.n_states"),
        ({"spec": {"bogus": 1}}, "spec.bogus"),
        ({"spec": RERAM, "extra": 1}, "extra"),
        ({"name": "x" * 201, "spec": RERAM}, "name"),
        ({}, "spec"),
    ],
)
def test_bad_device_specs_are_refused(api, body, field):
    alice = api.user()
    assert_error(alice.post("/v1/device-specs", json=body), 422, "validation_error", field=field)
    assert alice.get("/v1/device-specs").json()["items"] == []


def test_every_listed_family_and_preset_can_be_stored(api):
    alice = api.user()
    listing = alice.get("/v1/presets").json()
    names = list(listing["families"]) + list(listing["presets"])
    assert "SoftBoundsReference" in names and "ReRamSB" in names
    for family in names:
        assert create(alice, {"family": family}, name=family)["spec"]["family"] == family
    assert len(alice.get("/v1/device-specs", params={"limit": 100}).json()["items"]) == len(names)


def test_another_users_spec_is_a_404_and_is_kept(api):
    alice, bob = api.user(), api.user()
    made = create(alice)
    assert_error(bob.get(f"/v1/device-specs/{made['id']}"), 404, "not_found")
    assert_error(bob.delete(f"/v1/device-specs/{made['id']}"), 404, "not_found")
    assert bob.get("/v1/device-specs").json()["items"] == []
    assert alice.get(f"/v1/device-specs/{made['id']}").status_code == 200
    # A job of Bob's naming Alice's spec is answered as one naming no spec.
    theirs = assert_error(bob.post("/v1/jobs", json=spec(TINY_CTTV2, device={"id": made["id"]})), 404)
    missing = assert_error(bob.post("/v1/jobs", json=spec(TINY_CTTV2, device={"id": 2_147_483_647})), 404)
    assert theirs["code"] == missing["code"]
    assert theirs["message"].replace(str(made["id"]), "N") == missing["message"].replace("2147483647", "N")


def test_a_job_copies_the_spec_and_blocks_its_delete_while_queued(api):
    alice = api.user()
    made = create(alice)
    r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, device={"id": made["id"]}))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["device_spec_id"] == made["id"]
    assert job["spec"]["device"] == made["spec"]  # copied inline

    assert_error(alice.delete(f"/v1/device-specs/{made['id']}"), 409, "conflict")
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert alice.delete(f"/v1/device-specs/{made['id']}").status_code == 204
    after = alice.get(f"/v1/jobs/{job['id']}").json()
    assert after["spec"]["device"] == made["spec"]  # the job's snapshot outlives the spec
    assert after["device_spec_id"] is None
