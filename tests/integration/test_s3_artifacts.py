"""Workers on two "hosts" that share no folder, only PostgreSQL, Redis and an S3 bucket (a
real S3-speaking server, moto's, on 127.0.0.1): CTTV2_ARTIFACT_URL=s3://bucket/prefix.

Each process has its own state folder (the API's, host A's, host B's). A job killed on the
host running it resumes on the other from the checkpoint in the store, and every file it
leaves downloads through the API byte-identical to the stored object, with its sha256.
Uploaded weights, deletion and the orphan sweep work on the store too."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.faults import (
    STEADY,
    STEPS_PER_EPOCH,
    assert_metrics_complete,
    holder,
    wait_checkpointed_and_running,
    wait_until,
)
from tests.support.s3 import S3Server, s3_server
from tests.support.specs import TINY_FP, spec
from tests.support.stack import FAST_PROTOCOL, ROOT, Stack, running_stack, wait_for_job
from tests.support.tcpproxy import TcpProxy
from tests.support.weights import upload, wait_validated

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REAP_BOUND_S = float(FAST_PROTOCOL["CTTV2_HEARTBEAT_TIMEOUT_S"]) + 2 * float(
    FAST_PROTOCOL["CTTV2_MAINTENANCE_INTERVAL_S"]
)
# CTTV2_KEEP_CHECKPOINTS=latest: best.pt, uploaded after every better epoch, is deleted from
# the store once the job succeeds (retention on S3).
FINAL = {"weights.safetensors", "result.json", "curves.png", "checkpoints/latest.pt"}


def host_env(root: Path, name: str) -> dict[str, str]:
    """One host's own folders: nothing here is visible to another host."""
    host = root / name
    return {
        "CTTV2_STATE_DIR": str(host / "state"),
        "CTTV2_ARTIFACT_DIR": str(host / "artifacts"),
        "CTTV2_WEIGHTS_DIR": str(host / "weights"),
        "CTTV2_DATA_DIR": str(host / "data"),
    }


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(s3: S3Server, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3-hosts")
    prefix = f"lab-{uuid.uuid4().hex[:6]}"
    env = {
        **s3.env,
        "CTTV2_ARTIFACT_URL": s3.url(prefix),
        "CTTV2_KEEP_CHECKPOINTS": "latest",
        **host_env(root, "api-host"),
    }
    with running_stack("postgres", root / "stack", env, workers=0) as s:
        s.prefix = f"{prefix}/"
        s.hosts = [root / "host-a", root / "host-b"]
        for host in s.hosts:
            s.start_worker(env=host_env(root, host.name))
        yield s


@pytest.fixture(scope="module")
def client(stack):
    return stack.client(stack.create_user())


def local_job_files(*roots: Path) -> list[Path]:
    """Files of jobs left in these folders (scratch copies are removed once uploaded)."""
    return [p for r in roots for p in r.rglob("*") if p.is_file() and ("jobs" in p.parts or "users" in p.parts)]


def job_files_left(*roots: Path, within_s: float = 30) -> list[Path]:
    """local_job_files once it is empty, or after `within_s`: a worker removes its scratch
    copy when the attempt ends, just after it has written the job's final status."""
    deadline = time.monotonic() + within_s
    while (left := local_job_files(*roots)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def sweep(stack: Stack, host: Path) -> list[str]:
    """worker.orphans.remove_orphans as a worker on `host` runs it, with no grace period."""
    code = (
        "from service.core.config import get_settings; from worker.orphans import remove_orphans; "
        "print(repr(sorted(remove_orphans(get_settings(), grace_s=0).removed)))"
    )
    env = {**stack.env, **host_env(host.parent, host.name)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])  # a repr of a list of str


def test_a_job_killed_on_one_host_resumes_on_the_other_from_the_store(stack, s3, client):
    job = client.post("/v1/jobs", json=STEADY).json()
    wait_checkpointed_and_running(stack, job["id"], min_epochs=2)
    stored = f"{stack.prefix}jobs/{job['id']}/checkpoints/latest.pt"
    assert stored in s3.keys(stack.prefix), "the checkpoint is uploaded as soon as it is written"
    victim = holder(stack, job["id"])
    survivor = next(w for w in stack.workers if w is not victim)
    victim.signal(signal.SIGKILL)
    victim.wait(10)

    done = wait_for_job(client, job["id"], timeout=REAP_BOUND_S + 300, stack=stack)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2
    assert f"job {job['id']}: resuming from jobs/{job['id']}/checkpoints/latest.pt" in survivor.log()
    assert_metrics_complete(stack, job["id"], epochs=12, steps_per_epoch=STEPS_PER_EPOCH)

    items = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
    assert {a["name"] for a in items} == FINAL
    job_objects = {k.split(f"/jobs/{job['id']}/", 1)[1] for k in s3.keys(f"{stack.prefix}jobs/{job['id']}/")}
    assert job_objects == FINAL, "a pruned checkpoint leaves the store too"
    for art in items:
        r = client.get(f"/v1/jobs/{job['id']}/artifacts/{art['name']}")
        assert r.status_code == 200, r.text
        digest = hashlib.sha256(r.content).hexdigest()
        assert digest == art["sha256"] == r.headers["x-checksum-sha256"], art["name"]
        assert len(r.content) == art["size"] == int(r.headers["content-length"])
        assert r.content == s3.read(f"{stack.prefix}jobs/{job['id']}/{art['name']}"), art["name"]
    latest = s3.read(stored)
    part = client.get(f"/v1/jobs/{job['id']}/artifacts/checkpoints/latest.pt", headers={"Range": "bytes=100-4195"})
    assert part.status_code == 206 and part.content == latest[100:4196]
    assert part.headers["content-range"] == f"bytes 100-4195/{len(latest)}"

    survivor_host = stack.hosts[stack.workers.index(survivor)]
    victim_host = stack.hosts[stack.workers.index(victim)]
    assert job_files_left(survivor_host, stack.root) == [], "no host keeps job files once they are in the store"
    # The killed worker's working copy stays on its host until a worker there sweeps it.
    assert local_job_files(victim_host)
    assert any(f"jobs/{job['id']}" in r for r in sweep(stack, victim_host))
    assert local_job_files(victim_host) == []

    # Deleting the job deletes its objects.
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not [k for k in s3.keys(stack.prefix) if f"/jobs/{job['id']}/" in f"/{k[len(stack.prefix) :]}"]


def test_a_job_starts_from_another_jobs_weights_and_an_upload_in_the_store(stack, s3, client, tmp_path):
    """model.pretrained.job reads the other job's weights, and model.pretrained.weights a user's
    upload, both from the store (whichever host runs the job has neither)."""
    import torch  # noqa: F401 - the files fixture's dependencies
    from safetensors.torch import save_file

    from cttv2_engine.models import build_model

    state = {k: v.contiguous() for k, v in build_model("swin_micro", None, num_classes=5).state_dict().items()}
    save_file(state, tmp_path / "micro.safetensors")
    r = upload(client, tmp_path / "micro.safetensors")
    assert r.status_code == 201, r.text
    record = r.json()
    me = client.get("/v1/users/me").json()
    key = f"{stack.prefix}weights/users/{me['id']}/micro.safetensors"
    assert s3.read(key) == (tmp_path / "micro.safetensors").read_bytes()
    assert wait_validated(client, record["id"])["status"] == "valid"

    first = client.post(
        "/v1/jobs", json=spec(TINY_FP, name="from-upload", **{"model.pretrained": {"weights": "micro.safetensors"}})
    ).json()
    done = wait_for_job(client, first["id"], timeout=240, stack=stack)
    assert done["status"] == "succeeded", done
    logs = client.get(f"/v1/jobs/{first['id']}/logs").json()["lines"]
    assert any(line.startswith("pretrained: micro.safetensors") for line in logs), logs

    second = client.post(
        "/v1/jobs", json=spec(TINY_FP, name="from-job", **{"model.pretrained": {"job": first["id"]}})
    ).json()
    done = wait_for_job(client, second["id"], timeout=240, stack=stack)
    assert done["status"] == "succeeded", done
    assert job_files_left(stack.root, *[h for h, w in zip(stack.hosts, stack.workers) if w.alive()]) == []

    # Deleting the upload deletes its object.
    assert client.delete(f"/v1/weights/{record['id']}").status_code == 204
    assert key not in s3.keys(stack.prefix)


def test_the_orphan_sweep_removes_objects_without_rows(stack, s3, client):
    """What a crash between a delete's commit and its object removal leaves: objects of a job
    id with no row and an upload with no row. Rows' objects stay."""
    job = client.post("/v1/jobs", json=spec(TINY_FP, name="kept")).json()
    assert wait_for_job(client, job["id"], timeout=240, stack=stack)["status"] == "succeeded"
    bucket = s3.client()
    strays = [f"{stack.prefix}jobs/987654/checkpoints/latest.pt", f"{stack.prefix}weights/users/987654/x.pt"]
    for key in strays:
        bucket.put_object(Bucket=s3.bucket, Key=key, Body=b"stray")
    before = s3.keys(f"{stack.prefix}jobs/{job['id']}/")
    assert before

    removed = sweep(stack, stack.root / "sweeper-host")
    keys = s3.keys(stack.prefix)
    assert not set(strays) & set(keys), removed
    assert set(before) <= set(keys), "a job with a row keeps its objects"

    # `cttv2 admin purge` on the store: the dry run counts the bytes in the bucket, the real
    # one deletes the objects.
    me = client.get("/v1/users/me").json()["name"]
    finished = [j["id"] for j in client.get("/v1/jobs").json()["items"]]
    stored = {k: n for k, n in keys.items() if k.split("/jobs/", 1)[-1].split("/")[0] in map(str, finished)}
    assert stored
    dry = stack.cli("admin", "purge", "--older-than", "0d", "--user", me, "--dry-run").stdout
    assert f"would delete {len(finished)} job(s)" in dry and f"freeing {sum(stored.values())} bytes" in dry, dry
    stack.cli("admin", "purge", "--older-than", "0d", "--user", me)
    assert not set(stored) & set(s3.keys(stack.prefix))
    assert client.get("/v1/jobs").json()["items"] == []


def test_a_store_outage_mid_job_is_waited_out(stack, s3, client):
    """The store unreachable for a while (MinIO restarting): the worker keeps retrying its
    upload while training waits, and the job goes on as the same attempt. Last in this
    module: it replaces the workers with one that reaches the store through a proxy."""
    for worker in stack.workers:
        if worker.alive():
            worker.signal(signal.SIGTERM)
            worker.wait(60)
    proxy = TcpProxy("127.0.0.1", s3.port)
    try:
        host = stack.root / "host-c"
        stack.start_worker(
            env={**host_env(host.parent, host.name), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        )
        job = client.post("/v1/jobs", json=STEADY).json()
        wait_checkpointed_and_running(stack, job["id"], min_epochs=1)
        proxy.down()
        wait_until(
            lambda: any("artifact store unreachable" in line for line in logs(client, job["id"])),
            60,
            "the worker to report the store unreachable",
        )
        time.sleep(3)  # a few more failed attempts
        proxy.up()
        done = wait_for_job(client, job["id"], timeout=300, stack=stack)
        assert done["status"] == "succeeded", done
        assert done["attempt"] == 1, "waited out, not requeued"
        assert any("artifact store reachable again" in line for line in logs(client, job["id"]))
        assert_metrics_complete(stack, job["id"], epochs=12, steps_per_epoch=STEPS_PER_EPOCH)
        latest = client.get(f"/v1/jobs/{job['id']}/artifacts/checkpoints/latest.pt")
        assert hashlib.sha256(latest.content).hexdigest() == latest.headers["x-checksum-sha256"]

        # Unreachable when a job starts (the worker's write check): waited out the same way.
        proxy.down()
        later = client.post("/v1/jobs", json=spec(TINY_FP, name="starts-in-an-outage")).json()
        wait_until(
            lambda: any("artifact store unreachable" in line for line in logs(client, later["id"])),
            60,
            "the starting worker to report the store unreachable",
        )
        proxy.up()
        done = wait_for_job(client, later["id"], timeout=240, stack=stack)
        assert (done["status"], done["attempt"]) == ("succeeded", 1), done
    finally:
        proxy.close()


def logs(client, job_id: int) -> list[str]:
    return client.get(f"/v1/jobs/{job_id}/logs").json()["lines"]
