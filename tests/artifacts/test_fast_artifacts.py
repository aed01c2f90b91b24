"""A job's files, in process. No worker runs here, so a test registers a file the way a worker
does (the file under ARTIFACT_DIR/jobs/<job_id>/, its row in `artifacts`) and downloads it:
whole, by range, checksummed; and everything else is a 404 (another user's job, an
unregistered name, a path out of the job's folder, a file gone from disk)."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2

pytestmark = pytest.mark.fast

CONTENT = bytes(range(256)) * 40  # 10,240 bytes


def submit(client) -> int:
    r = client.post("/v1/jobs", json=TINY_CTTV2)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def register(api, job_id: int, name: str, content: bytes | None = CONTENT, *, link_to: Path | None = None) -> str:
    """Write (or link) the file and add its row, as the worker does. Returns its sha256."""
    path = Path(api.backend.env["CTTV2_ARTIFACT_DIR"]) / "jobs" / str(job_id) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content if content is not None else b""
    if link_to is not None:
        os.symlink(link_to, path)
        data = link_to.read_bytes()
    elif content is not None:
        path.write_bytes(content)
    sha = hashlib.sha256(data).hexdigest()
    now = datetime(2026, 1, 1, 12, 0, 0)
    api.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, :n, 'weights', :s, :h, :t, :t)",
        j=job_id,
        n=name,
        s=len(data),
        h=sha,
        t=now,
    )
    return sha


def test_a_new_job_has_no_artifacts(api):
    alice = api.user()
    job = submit(alice)
    assert alice.get(f"/v1/jobs/{job}/artifacts").json() == {"items": []}
    assert_error(alice.get(f"/v1/jobs/{job}/artifacts/weights.safetensors"), 404, "not_found")


def test_list_and_download_a_registered_file(api):
    alice = api.user()
    job = submit(alice)
    sha = register(api, job, "weights.safetensors")
    register(api, job, "checkpoints/best.pt", b"ckpt")
    items = alice.get(f"/v1/jobs/{job}/artifacts").json()["items"]
    assert [(a["name"], a["size"]) for a in items] == [
        ("checkpoints/best.pt", 4),
        ("weights.safetensors", len(CONTENT)),
    ]
    assert items[1]["sha256"] == sha

    r = alice.get(f"/v1/jobs/{job}/artifacts/weights.safetensors")
    assert r.status_code == 200 and r.content == CONTENT
    assert r.headers["x-checksum-sha256"] == sha and sha in r.headers["etag"]
    assert int(r.headers["content-length"]) == len(CONTENT)
    assert alice.get(f"/v1/jobs/{job}/artifacts/checkpoints/best.pt").content == b"ckpt"


def test_ranges(api):
    alice = api.user()
    job = submit(alice)
    register(api, job, "weights.safetensors")
    url = f"/v1/jobs/{job}/artifacts/weights.safetensors"
    r = alice.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == CONTENT[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(CONTENT)}"
    tail = alice.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == CONTENT[-10:]
    r = alice.get(url, headers={"Range": f"bytes={len(CONTENT)}-"})
    assert_error(r, 416)
    assert r.headers["content-range"] == f"bytes */{len(CONTENT)}"
    # If-Range with a stale validator: the whole file, not the range.
    r = alice.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == CONTENT


def test_what_is_not_a_registered_file_in_the_job_folder_is_a_404(api, tmp_path):
    alice = api.user()
    job = submit(alice)
    register(api, job, "gone.pt", content=None)  # a row whose file is not on disk
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the job folder")
    register(api, job, "escape.pt", link_to=secret)  # a symlink out of the job folder
    (Path(api.backend.env["CTTV2_ARTIFACT_DIR"]) / "jobs" / str(job) / "unregistered.pt").write_bytes(b"x")
    for name in ("gone.pt", "escape.pt", "unregistered.pt", "../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd"):
        r = alice.get(f"/v1/jobs/{job}/artifacts/{name}")
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert b"outside the job folder" not in r.content


def test_another_users_artifacts_are_a_404(api):
    alice, bob = api.user(), api.user()
    job = submit(alice)
    register(api, job, "weights.safetensors")
    assert_error(bob.get(f"/v1/jobs/{job}/artifacts"), 404, "not_found")
    assert_error(bob.get(f"/v1/jobs/{job}/artifacts/weights.safetensors"), 404, "not_found")
    assert_error(bob.get("/v1/jobs/2147483647/artifacts"), 404, "not_found")
    assert alice.get(f"/v1/jobs/{job}/artifacts/weights.safetensors").status_code == 200
