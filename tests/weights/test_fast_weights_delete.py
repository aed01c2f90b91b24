"""Deleting uploaded weights, in process: refused (409) while a queued or running job names
them in model.pretrained.weights; otherwise the row and the file go (204). Another user's
upload is a 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

pytestmark = pytest.mark.fast


def upload(client, name="w.safetensors"):
    r = client.post("/v1/weights", files={"file": (name, b"bytes" * 100)}, data={"arch": "swin_micro"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def user_file(api, client, name: str) -> Path:
    return Path(api.backend.env["CTTV2_WEIGHTS_DIR"]) / "users" / str(client.user_id) / name


def test_weights_in_use_are_kept_until_the_job_ends(api):
    alice = api.user()
    wid = upload(alice)
    other = upload(alice, "other.safetensors")
    api.sql("UPDATE weights_files SET status = 'valid' WHERE id = :id", id=wid)
    r = alice.post("/v1/jobs", json=spec(TINY_CTTV2, **{"model.pretrained": {"weights": "w.safetensors"}}))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    err = assert_error(alice.delete(f"/v1/weights/{wid}"), 409, "weights_in_use")
    assert str(job_id) in err["message"]
    assert alice.get(f"/v1/weights/{wid}").status_code == 200 and user_file(api, alice, "w.safetensors").is_file()

    alice.post(f"/v1/jobs/{job_id}/cancel")
    r = alice.delete(f"/v1/weights/{wid}")
    assert r.status_code == 204, r.text
    assert_error(alice.get(f"/v1/weights/{wid}"), 404, "not_found")
    assert not user_file(api, alice, "w.safetensors").exists()
    # The other upload is untouched; a pending upload no job uses goes at once.
    assert user_file(api, alice, "other.safetensors").is_file()
    assert alice.delete(f"/v1/weights/{other}").status_code == 204
    assert not user_file(api, alice, "other.safetensors").exists()
    # The name is free again.
    upload(alice)


def test_another_users_weights_cannot_be_deleted(api):
    alice, bob = api.user(), api.user()
    wid = upload(alice)
    assert_error(bob.delete(f"/v1/weights/{wid}"), 404, "not_found")
    assert user_file(api, alice, "w.safetensors").is_file()
