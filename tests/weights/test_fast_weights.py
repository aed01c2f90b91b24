"""Weights uploads, in process (no worker, so they stay `pending`): the file lands in the
user's folder with its size and sha256, a validation message is published, names are plain
and unique per user, a job cannot use weights before they are valid, another user's upload
is a 404, and an upload over the limit is a 413."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

pytestmark = pytest.mark.fast

CONTENT = b"safetensors-ish bytes " * 100


def upload(client, filename="w.safetensors", content=CONTENT, **fields):
    return client.post("/v1/weights", files={"file": (filename, content)}, data={"arch": "swin_micro", **fields})


def user_file(api, client, name: str) -> Path:
    return Path(api.backend.env["CTTV2_WEIGHTS_DIR"]) / "users" / str(client.user_id) / name


def new_messages(api, before):
    after = Counter(map(json.dumps, api.published()))
    after.subtract(Counter(map(json.dumps, before)))
    return sorted(json.loads(m) for m, n in after.items() for _ in range(n))


def test_upload_stores_the_file_and_queues_its_check(api):
    alice = api.user()
    before = api.published()
    r = upload(alice, img_size="32")
    assert r.status_code == 201, r.text
    w = r.json()
    assert (w["name"], w["arch"], w["img_size"], w["status"], w["error"]) == (
        "w.safetensors",
        "swin_micro",
        32,
        "pending",
        None,
    )
    assert w["size"] == len(CONTENT) and w["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert user_file(api, alice, "w.safetensors").read_bytes() == CONTENT
    assert new_messages(api, before) == [["cttv2.validate_weights", [w["id"]]]]
    assert alice.get(f"/v1/weights/{w['id']}").json() == w
    assert alice.get("/v1/weights").json() == {"items": [w], "next_cursor": None}


def test_a_name_field_overrides_the_file_name_and_a_path_is_cut_to_its_base_name(api):
    alice = api.user()
    named = upload(alice, "whatever.bin", name="mine.pt")
    assert named.status_code == 201 and named.json()["name"] == "mine.pt"
    assert user_file(api, alice, "mine.pt").is_file()
    pathy = upload(alice, "../../escape.pt")
    assert pathy.status_code == 201 and pathy.json()["name"] == "escape.pt"
    assert user_file(api, alice, "escape.pt").is_file()
    weights_dir = Path(api.backend.env["CTTV2_WEIGHTS_DIR"])
    assert not (weights_dir / "escape.pt").exists() and not (weights_dir / "users" / "escape.pt").exists()


def test_names_are_unique_per_user(api):
    alice, bob = api.user(), api.user()
    assert upload(alice).status_code == 201
    assert_error(upload(alice, content=b"other bytes"), 409, "name_taken", field="name")
    assert user_file(api, alice, "w.safetensors").read_bytes() == CONTENT  # the first upload is kept
    assert upload(bob).status_code == 201  # another user may use the same name
    assert len(alice.get("/v1/weights").json()["items"]) == 1


@pytest.mark.parametrize(
    ("filename", "fields", "field"),
    [
        ("w.txt", {}, "file"),
        ("w.safetensors", {"name": "bad name.pt"}, "name"),
        ("w.safetensors", {"arch": "nope"}, "arch"),
        ("w.safetensors", {"arch": ""}, "arch"),
        ("w.safetensors", {"img_size": "30"}, "img_size"),
        ("w.safetensors", {"img_size": "big"}, "img_size"),
    ],
)
def test_bad_uploads_are_refused_and_leave_no_file(api, filename, fields, field):
    alice = api.user()
    before = api.published()
    assert_error(upload(alice, filename, **fields), 422, "validation_error", field=field)
    assert alice.get("/v1/weights").json()["items"] == []
    folder = Path(api.backend.env["CTTV2_WEIGHTS_DIR"]) / "users" / str(alice.user_id)
    assert not folder.exists() or list(folder.iterdir()) == []
    assert new_messages(api, before) == []


def test_a_job_cannot_use_weights_before_they_are_valid(api):
    alice = api.user()
    assert upload(alice).status_code == 201
    pretrained = spec(TINY_CTTV2, **{"model.pretrained": {"weights": "w.safetensors"}})
    err = assert_error(
        alice.post("/v1/jobs", json=pretrained), 422, "validation_error", field="model.pretrained.weights"
    )
    assert "validated" in err["message"]
    missing = spec(TINY_CTTV2, **{"model.pretrained": {"weights": "none.safetensors"}})
    assert_error(alice.post("/v1/jobs", json=missing), 422, "validation_error", field="model.pretrained.weights")


def test_validated_weights_must_match_the_jobs_architecture(api):
    """What a worker's check leaves behind (status valid), written directly: the job must use
    the architecture the weights were uploaded for."""
    alice = api.user()
    wid = upload(alice).json()["id"]
    api.sql("UPDATE weights_files SET status = 'valid' WHERE id = :id", id=wid)
    assert alice.get(f"/v1/weights/{wid}").json()["status"] == "valid"
    ok = alice.post("/v1/jobs", json=spec(TINY_CTTV2, **{"model.pretrained": {"weights": "w.safetensors"}}))
    assert ok.status_code == 201, ok.text
    other_arch = spec(TINY_CTTV2, **{"model.pretrained": {"weights": "w.safetensors"}, "model.arch": "swin_mini"})
    assert_error(alice.post("/v1/jobs", json=other_arch), 422, "validation_error", field="model.pretrained.weights")


def test_another_users_weights_are_a_404_and_not_usable(api):
    alice, bob = api.user(), api.user()
    wid = upload(alice).json()["id"]
    api.sql("UPDATE weights_files SET status = 'valid' WHERE id = :id", id=wid)
    assert_error(bob.get(f"/v1/weights/{wid}"), 404, "not_found")
    assert bob.get("/v1/weights").json()["items"] == []
    r = bob.post("/v1/jobs", json=spec(TINY_CTTV2, **{"model.pretrained": {"weights": "w.safetensors"}}))
    assert_error(r, 422, "validation_error", field="model.pretrained.weights")


def test_an_upload_over_the_limit_is_a_413(api):
    alice = api.user()
    with api.settings(max_upload_mb=1):
        assert_error(upload(alice, content=b"\0" * (1 << 20) + b"more"), 413, "payload_too_large")
        assert upload(alice, content=b"\0" * 1000).status_code == 201
    assert [w["size"] for w in alice.get("/v1/weights").json()["items"]] == [1000]
