"""Deleting jobs, in process (no worker): a finished job's rows and folder go (204); an active
job is a 409 and nothing goes; another user's job is a 404; a job an active job starts from
is kept; the orphan sweep removes old files with no row and leaves young ones and live jobs'
alone (and renames back the folder of a delete that never committed); `cttv2 admin purge`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.asserts import assert_error
from tests.support.specs import TINY_CTTV2, spec

pytestmark = pytest.mark.fast

CHILD_TABLES = ("job_events", "job_metrics", "job_log_lines", "artifacts")
HOUR = 3600


def submit(client, body=TINY_CTTV2) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def folder(api, job_id: int) -> Path:
    from service.artifacts.paths import job_dir

    return job_dir(api.backend.env["CTTV2_ARTIFACT_DIR"], job_id)


def finished_job(api, client, body=TINY_CTTV2) -> int:
    """A cancelled job (terminal) with files, a metric, a log line and an artifact row."""
    job_id = submit(client, body)["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    (folder(api, job_id) / "checkpoints").mkdir(parents=True)
    (folder(api, job_id) / "checkpoints" / "latest.pt").write_bytes(b"x" * 1000)
    (folder(api, job_id) / "result.json").write_text("{}")
    now = datetime.now(UTC).replace(tzinfo=None)
    api.sql(
        "INSERT INTO job_metrics (job_id, key, step, value, created_at) VALUES (:j, 'train_loss', 1, 0.5, :t)",
        j=job_id,
        t=now,
    )
    api.sql(
        "INSERT INTO job_log_lines (job_id, seq, attempt, line, created_at) VALUES (:j, 0, 1, 'hello', :t)",
        j=job_id,
        t=now,
    )
    api.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, 'result.json', 'result', 2, :h, :t, :t)",
        j=job_id,
        h="0" * 64,
        t=now,
    )
    return job_id


def rows_of(api, job_id: int) -> dict[str, int]:
    out = {"jobs": api.sql("SELECT count(*) FROM jobs WHERE id = :j", j=job_id)[0][0]}
    for table in CHILD_TABLES:
        out[table] = api.sql(f"SELECT count(*) FROM {table} WHERE job_id = :j", j=job_id)[0][0]  # noqa: S608
    return out


def test_deleting_a_finished_job_removes_its_rows_and_its_folder(api):
    alice = api.user()
    job_id = finished_job(api, alice)
    before = rows_of(api, job_id)
    assert before["jobs"] == 1 and all(before[t] >= 1 for t in CHILD_TABLES), before
    keep = finished_job(api, alice)

    r = alice.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(alice.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert rows_of(api, job_id) == dict.fromkeys(("jobs", *CHILD_TABLES), 0)
    assert not folder(api, job_id).exists()
    assert not [p for p in folder(api, job_id).parent.iterdir() if p.name.startswith(".deleted-")]
    # Another job is untouched; a second delete is a 404.
    assert rows_of(api, keep)["jobs"] == 1 and (folder(api, keep) / "result.json").is_file()
    assert_error(alice.delete(f"/v1/jobs/{job_id}"), 404, "not_found")


def test_an_active_job_is_a_409_and_nothing_is_deleted(api):
    alice = api.user()
    job_id = submit(alice)["id"]
    folder(api, job_id).mkdir(parents=True)
    (folder(api, job_id) / "result.json").write_text("{}")
    err = assert_error(alice.delete(f"/v1/jobs/{job_id}"), 409, "job_active")
    assert "cancel it first" in err["message"], err
    assert alice.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert (folder(api, job_id) / "result.json").is_file()
    api.sql("UPDATE jobs SET status = 'running' WHERE id = :j", j=job_id)
    assert_error(alice.delete(f"/v1/jobs/{job_id}"), 409, "job_active")
    api.sql("UPDATE jobs SET status = 'queued' WHERE id = :j", j=job_id)
    alice.post(f"/v1/jobs/{job_id}/cancel")
    assert alice.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_another_users_job_is_a_404(api):
    alice, bob = api.user(), api.user()
    job_id = finished_job(api, alice)
    assert_error(bob.delete(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert rows_of(api, job_id)["jobs"] == 1 and folder(api, job_id).is_dir()


def test_a_job_an_active_job_starts_from_is_kept(api):
    alice = api.user()
    base = finished_job(api, alice, TINY_CTTV2)
    api.sql("UPDATE jobs SET status = 'succeeded' WHERE id = :j", j=base)
    api.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, 'weights.safetensors', 'weights', 2, :h, :t, :t)",
        j=base,
        h="0" * 64,
        t=datetime.now(UTC).replace(tzinfo=None),
    )
    user = submit(alice, spec(TINY_CTTV2, **{"model.pretrained": {"job": base}}))["id"]
    err = assert_error(alice.delete(f"/v1/jobs/{base}"), 409, "job_in_use")
    assert str(user) in err["message"]
    assert folder(api, base).is_dir()
    alice.post(f"/v1/jobs/{user}/cancel")
    assert alice.delete(f"/v1/jobs/{base}").status_code == 204


# -- the orphan sweep ---------------------------------------------------------------------------


def age(path: Path, seconds: float) -> None:
    """Make path and everything below it look `seconds` old."""
    t = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (t, t))
    os.utime(path, (t, t))


def test_the_orphan_sweep_removes_old_orphans_only(api):
    from service.core.config import get_settings
    from service.core.db import session_scope
    from service.jobs import deletion
    from service.jobs.models import Job
    from worker.orphans import remove_orphans

    alice = api.user()
    live = finished_job(api, alice)
    age(folder(api, live), 2 * HOUR)
    old_orphan, young_orphan = folder(api, 2_000_000_001), folder(api, 2_000_000_002)
    for path in (old_orphan, young_orphan):
        (path / "checkpoints").mkdir(parents=True)
        (path / "checkpoints" / "latest.pt").write_bytes(b"y" * 10)
    age(old_orphan, 2 * HOUR)
    # A delete that crashed before its commit: the row is there, the folder in the trash.
    crashed = finished_job(api, alice)
    with session_scope() as session:
        created = session.get(Job, crashed).created_at
    trash = folder(api, crashed).with_name(
        deletion.trash_name(crashed, created, datetime.now(UTC) - timedelta(hours=1))
    )
    os.rename(folder(api, crashed), trash)
    # A delete that crashed after its commit: no row, a trash folder.
    gone = folder(api, 2_000_000_003).with_name(
        deletion.trash_name(2_000_000_003, created, datetime.now(UTC) - timedelta(hours=1))
    )
    gone.mkdir()
    # Weights: an old file with no row goes; a young one and a registered one stay.
    wdir = Path(api.backend.env["CTTV2_WEIGHTS_DIR"]) / "users" / str(alice.user_id)
    r = alice.post("/v1/weights", files={"file": ("kept.safetensors", b"k" * 50)}, data={"arch": "swin_micro"})
    assert r.status_code == 201, r.text
    (wdir / "stale.safetensors").write_bytes(b"s" * 50)
    (wdir / ".upload-dead.part").write_bytes(b"p" * 50)
    (wdir / "fresh.safetensors").write_bytes(b"f" * 50)
    for name in ("kept.safetensors", "stale.safetensors", ".upload-dead.part"):
        age(wdir / name, 2 * HOUR)
    server_wide = Path(api.backend.env["CTTV2_WEIGHTS_DIR"]) / "server.safetensors"
    server_wide.write_bytes(b"w")
    age(server_wide, 2 * HOUR)

    swept = remove_orphans(get_settings())

    assert not old_orphan.exists() and young_orphan.is_dir()
    assert (folder(api, live) / "checkpoints" / "latest.pt").is_file()
    assert (folder(api, crashed) / "result.json").is_file() and not trash.exists()
    assert str(folder(api, crashed)) in swept.restored
    assert not gone.exists()
    assert not (wdir / "stale.safetensors").exists() and not (wdir / ".upload-dead.part").exists()
    assert (wdir / "kept.safetensors").is_file() and (wdir / "fresh.safetensors").is_file()
    assert server_wide.is_file()
    assert swept.bytes >= 10 + 100
    # Nothing left to do: a second sweep removes nothing.
    again = remove_orphans(get_settings())
    assert again.removed == [] and again.restored == []


# -- cttv2 admin purge --------------------------------------------------------------------------


def test_purge_dry_run_deletes_nothing_then_purge_deletes(api):
    import cttv2_cli.server  # noqa: F401  (registers `admin` on the cli group)
    from cttv2_cli.main import cli

    alice, bob = api.user(), api.user()
    done = [finished_job(api, alice) for _ in range(2)]
    base = finished_job(api, alice)  # a queued job starts from it: kept
    api.sql("UPDATE jobs SET status = 'succeeded' WHERE id = :j", j=base)
    api.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, 'weights.safetensors', 'weights', 2, :h, :t, :t)",
        j=base,
        h="0" * 64,
        t=datetime.now(UTC).replace(tzinfo=None),
    )
    active = submit(alice, spec(TINY_CTTV2, **{"model.pretrained": {"job": base}}))["id"]
    bobs = finished_job(api, bob)
    runner = CliRunner()

    res = runner.invoke(cli, ["admin", "purge", "--older-than", "0d", "--user", alice.name, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would delete 2 job(s)" in res.output and "bytes" in res.output, res.output
    assert all(rows_of(api, j)["jobs"] == 1 and folder(api, j).is_dir() for j in done)

    res = runner.invoke(cli, ["admin", "purge", "--older-than", "30d", "--user", alice.name])
    assert res.exit_code == 0 and "deleted 0 job(s)" in res.output, res.output

    res = runner.invoke(cli, ["admin", "purge", "--older-than", "0d", "--user", alice.name])
    assert res.exit_code == 0 and "deleted 2 job(s)" in res.output, res.output
    assert all(rows_of(api, j)["jobs"] == 0 and not folder(api, j).exists() for j in done)
    assert rows_of(api, active)["jobs"] == 1 and rows_of(api, bobs)["jobs"] == 1
    assert rows_of(api, base)["jobs"] == 1 and folder(api, base).is_dir()

    res = runner.invoke(cli, ["admin", "purge", "--older-than", "soon"])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["admin", "purge", "--older-than", "1d", "--user", "nobody-at-all"])
    assert res.exit_code == 1 and "no user" in res.output


def test_the_delete_routes_are_in_the_openapi_document(api):
    paths = api.admin.get("/openapi.json").json()["paths"]
    ops = {op["operationId"] for p in paths.values() for op in p.values()}
    assert {"delete_job", "delete_sweep", "delete_weights", "delete_device_spec"} <= ops


def test_the_sdk_deletes_jobs_sweeps_and_weights(api):
    from cttv2_client import Client
    from cttv2_client.errors import Conflict, NotFound

    alice = api.user()
    job_id = finished_job(api, alice)
    active = submit(alice)["id"]
    sweep = alice.post(
        "/v1/sweeps", json={"base": TINY_CTTV2, "grid": {"device.sp_skew": [0]}, "seeds": [0], "baseline": False}
    ).json()["id"]
    wid = alice.post("/v1/weights", files={"file": ("s.safetensors", b"s" * 9)}, data={"arch": "swin_micro"}).json()[
        "id"
    ]
    with Client("http://testserver", alice.token, http_client=api.client(alice.token)) as client:
        client.jobs.delete(job_id)
        with pytest.raises(NotFound):
            client.jobs.get(job_id)
        with pytest.raises(Conflict, match="cancel it first"):
            client.jobs.delete(active)
        with pytest.raises(Conflict):
            client.sweeps.delete(sweep)
        client.sweeps.cancel(sweep)
        client.sweeps.delete(sweep)
        with pytest.raises(NotFound):
            client.sweeps.get(sweep)
        client.weights.delete(wid)
        with pytest.raises(NotFound):
            client.weights.get(wid)
