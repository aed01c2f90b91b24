"""The artifact store fails (disk full, a file where a folder should be): the job fails with
a clear reason, the API and the worker stay up, and the next job runs once the store is back.

These tests run as root, so permissions cannot make a folder unwritable; what does fail for
root is used instead: a tiny tmpfs (ENOSPC) and a regular file in place of the jobs folder
(ENOTDIR)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import Stack, running_stack, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

QUICK = spec(
    TINY_FP, **{"training.epochs": 1, "data.classes": [0, 1], "data.train_per_class": 8, "data.test_per_class": 4}
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack("postgres", tmp_path_factory.mktemp("faults-store")) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack):
    return stack.client(stack.create_user())


def assert_still_serving(stack: Stack, client) -> None:
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.get("/v1/jobs").status_code == 200
    assert stack.api.alive() and all(w.alive() for w in stack.workers)
    done = wait_for_job(client, client.post("/v1/jobs", json=QUICK).json()["id"], stack=stack)
    assert done["status"] == "succeeded", done  # the same worker carries on


def test_a_file_where_the_jobs_folder_should_be(stack, client):
    jobs_dir = Path(stack.env["CTTV2_ARTIFACT_DIR"]) / "jobs"
    jobs_dir.parent.mkdir(parents=True, exist_ok=True)
    if jobs_dir.is_dir():
        jobs_dir.rename(jobs_dir.with_name("jobs.moved"))
    jobs_dir.write_text("not a folder")
    try:
        done = wait_for_job(client, client.post("/v1/jobs", json=QUICK).json()["id"], stack=stack)
        assert done["status"] == "failed" and done["error"]["code"] == "artifact_store_error", done
        assert "Not a directory" in done["error"]["message"] and str(jobs_dir) in done["error"]["message"]
    finally:
        jobs_dir.unlink()
    assert_still_serving(stack, client)


def test_disk_full_mid_run(stack, client):
    store = Path(stack.env["CTTV2_ARTIFACT_DIR"])
    store.mkdir(parents=True, exist_ok=True)
    # 256 KiB: room for the writability probe, not for the first checkpoint (~430 KB).
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(store)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the ENOTDIR case covers the path")
    try:
        job = client.post("/v1/jobs", json=spec(TINY_CTTV2, name="disk-full")).json()
        done = wait_for_job(client, job["id"], stack=stack)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "artifact_store_error", done
        assert "No space left on device" in done["error"]["message"]
        job_dir = store / "jobs" / str(job["id"])
        assert not [p for p in job_dir.rglob("*") if p.name.endswith(".tmp")]  # no half-written files
        logs = [r[0] for r in stack.sql("SELECT line FROM job_log_lines WHERE job_id = :j", j=job["id"])]
        assert any(line.startswith("failed: cannot write job files") for line in logs), logs
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)
    assert_still_serving(stack, client)
