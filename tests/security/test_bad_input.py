"""Careless and hostile requests: every limit from settings answers a clear 4xx, no path or
class name from a request reaches the filesystem or an import, and a weights file that is a
pickle with code in it is refused without running the code."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import LIMITS
from tests.support.asserts import assert_error
from tests.support.faults import wait_until
from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import wait_for_job

pytestmark = [pytest.mark.postgres]

MAX_BODY = int(LIMITS["CTTV2_MAX_BODY_BYTES"])
MAX_UPLOAD = int(LIMITS["CTTV2_MAX_UPLOAD_MB"]) * 1024 * 1024


@pytest.fixture(scope="module")
def client(secure_stack, new_token):
    return secure_stack.client(new_token())


def test_request_body_limit(client):
    big = {**TINY_FP, "name": "x" * (MAX_BODY + 10)}
    err = assert_error(client.post("/v1/jobs", json=big), 413, "payload_too_large")
    assert "CTTV2_MAX_BODY_BYTES" in err["message"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    r = client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    # Under the limit, the same route still answers normally.
    assert client.post("/v1/jobs", json={**TINY_FP, "training": {"epochs": 0}}).status_code == 422


def test_upload_size_limit(client):
    # Multipart bodies (weights uploads) are held to CTTV2_MAX_UPLOAD_MB instead.
    files = {"file": ("w.safetensors", os.urandom(MAX_UPLOAD + 128 * 1024), "application/octet-stream")}
    err = assert_error(client.post("/v1/jobs", files=files), 413, "payload_too_large")
    assert "CTTV2_MAX_UPLOAD_MB" in err["message"]
    small = {"file": ("w.safetensors", os.urandom(MAX_BODY * 2), "application/octet-stream")}
    assert client.post("/v1/jobs", files=small).status_code == 422  # past the JSON limit, under the upload one
    ops = {op["operationId"] for p in client.get("/openapi.json").json()["paths"].values() for op in p.values()}
    if "create_weights" in ops or "upload_weights" in ops:
        r = client.post("/v1/weights", data={"name": "big.safetensors", "arch": "swin_micro"}, files=files)
        assert_error(r, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("overrides", "field", "setting"),
    [
        ({"training.epochs": int(LIMITS["CTTV2_MAX_EPOCHS"]) + 1}, "training.epochs", "CTTV2_MAX_EPOCHS"),
        ({"model.img_size": 128}, "model.img_size", "CTTV2_MAX_IMG_SIZE"),
        ({"data.classes": None, "data.train_per_class": 300}, "data.train_per_class", "CTTV2_MAX_TRAIN_SAMPLES"),
        (
            {"data.dataset": "cifar10", "data.classes": None, "data.train_per_class": None},
            "data",
            "CTTV2_MAX_TRAIN_SAMPLES",
        ),
    ],
)
def test_job_spec_limits(client, overrides, field, setting):
    err = assert_error(client.post("/v1/jobs", json=spec(TINY_FP, **overrides)), 422, "limit_exceeded")
    assert [f["field"] for f in err["fields"]] == [field] and setting in err["message"]


def test_sweep_grid_limit(client):
    ops = {op["operationId"] for p in client.get("/openapi.json").json()["paths"].values() for op in p.values()}
    if "create_sweep" not in ops:
        pytest.skip("no /v1/sweeps on this branch yet")
    grid = {"training.lr": [0.001 * (i + 1) for i in range(int(LIMITS["CTTV2_MAX_SWEEP_JOBS"]) + 1)]}
    r = client.post("/v1/sweeps", json={"base": TINY_FP, "grid": grid, "seeds": [0], "baseline": False})
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code)
    assert "CTTV2_MAX_SWEEP_JOBS" in r.text or LIMITS["CTTV2_MAX_SWEEP_JOBS"] in r.text


def test_active_jobs_per_user_429_with_retry_after(secure_stack, new_token):
    s = secure_stack
    c = s.client(new_token())
    slow = spec(TINY_CTTV2, name="hold", **{"training.epochs": 50})
    limit = int(LIMITS["CTTV2_MAX_ACTIVE_JOBS_PER_USER"])
    ids = []
    try:
        for i in range(limit):
            r = c.post("/v1/jobs", json=slow, headers={"Idempotency-Key": f"hold-{i}"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = c.post("/v1/jobs", json=slow)
        err = assert_error(r, 429, "too_many_active_jobs")
        assert int(r.headers["Retry-After"]) > 0 and str(limit) in err["message"]
        replay = c.post("/v1/jobs", json=slow, headers={"Idempotency-Key": "hold-0"})
        assert replay.status_code == 201 and replay.json()["id"] == ids[0]  # a replay is not a new job
        assert c.post(f"/v1/jobs/{ids[-1]}/cancel").status_code == 200
        wait_until(lambda: c.get(f"/v1/jobs/{ids[-1]}").json()["status"] == "cancelled", 60, "the cancel")
        again = c.post("/v1/jobs", json=slow)
        assert again.status_code == 201, again.text
        ids.append(again.json()["id"])
    finally:
        for job_id in ids:
            c.post(f"/v1/jobs/{job_id}/cancel")
        for job_id in ids:
            wait_for_job(c, job_id, timeout=120)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model.pretrained": {"weights": "../../etc/passwd"}}, "model.pretrained.weights"),
        ({"model.pretrained": {"weights": "/etc/passwd"}}, "model.pretrained.weights"),
        ({"model.pretrained": {"weights": ".."}}, "model.pretrained.weights"),
        ({"model.pretrained": {"weights": "a/b.pt"}}, "model.pretrained.weights"),
        ({"model.pretrained": {"weights": "..%2f..%2fetc%2fpasswd"}}, "model.pretrained.weights"),
        ({"model.pretrained": {"weights": "w.pt\x00.safetensors"}}, "model.pretrained.weights"),
        ({"data.dataset": "imagefolder", "data.name": "../../root"}, "data"),
        ({"data.dataset": "imagefolder", "data.name": "/tmp"}, "data"),
        ({"data.dataset": "../digits"}, "data.dataset"),
        ({"model.arch": "os.system"}, "model.arch"),
        ({"model.arch": "../../x"}, "model.arch"),
        ({"algorithm": "__import__('os')"}, "algorithm"),
        ({"device": {"family": "aihwkit.simulator.configs.SoftBoundsDevice"}}, "device.family"),
        ({"device": {"family": "os.system"}}, "device.family"),
    ],
)
def test_no_user_path_or_class_name_is_accepted(client, overrides, field):
    err = assert_error(client.post("/v1/jobs", json=spec(TINY_FP, **overrides)), 422, "validation_error")
    assert any(f["field"] == field or f["field"].startswith(field + ".") for f in err["fields"]), err


class _RunsCode:
    """Unpickling this calls os.system: what a malicious weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_is_refused_without_running_it(secure_stack, client):
    import torch

    s = secure_stack
    marker = Path(s.root) / f"pwned-{uuid.uuid4().hex[:6]}"
    weights_dir = Path(s.env["CTTV2_WEIGHTS_DIR"])
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"patch_embed.proj.weight": _RunsCode(marker)}}, weights_dir / "evil.pt")
    body = spec(TINY_FP, name="evil", **{"model.pretrained": {"weights": "evil.pt"}})
    done = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"], stack=s)
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_job", done
    assert "refusing to load" in done["error"]["message"]
    assert not marker.exists(), "the pickle's code ran"

    ops = {op["operationId"] for p in client.get("/openapi.json").json()["paths"].values() for op in p.values()}
    if "create_weights" in ops or "upload_weights" in ops:  # the same file through the upload
        with open(weights_dir / "evil.pt", "rb") as fh:
            up = client.post(
                "/v1/weights",
                data={"name": "evil-upload.pt", "arch": "swin_micro"},
                files={"file": ("evil-upload.pt", fh.read(), "application/octet-stream")},
            )
        assert up.status_code in (201, 422), up.text
        if up.status_code == 201:
            wait_until(
                lambda: client.get(f"/v1/weights/{up.json()['id']}").json()["status"] != "pending",
                120,
                "the upload to be validated",
            )
            assert client.get(f"/v1/weights/{up.json()['id']}").json()["status"] == "invalid"
    assert not marker.exists(), "the pickle's code ran"


def test_malformed_requests_get_the_error_shape(client):
    assert_error(client.post("/v1/jobs", content=b"\xff\xfe", headers={"Content-Type": "application/json"}), 422)
    assert_error(client.post("/v1/jobs", content=b"{}", headers={"Content-Type": "text/plain"}), 422)
    assert_error(client.get("/v1/jobs", params={"limit": "many"}), 422)
    assert_error(client.get("/v1/jobs", params={"cursor": "x" * 500}), 422)
    assert_error(client.get("/v1/nowhere"), 404, "not_found")
    assert_error(client.request("PATCH", "/v1/jobs"), 405, "method_not_allowed")
    r = client.post("/v1/jobs", json=TINY_FP, headers={"Idempotency-Key": "k" * 500})
    assert_error(r, 422)
    with httpx.Client(base_url=client.base_url, timeout=30) as raw:  # a header that is not Bearer
        assert_error(raw.get("/v1/jobs", headers={"Authorization": "Bearer"}), 401)
