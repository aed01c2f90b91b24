"""client.jobs and client.device_specs against a live API and worker."""

from __future__ import annotations

import pytest
import yaml
from cttv2_client import (
    AuthError,
    Client,
    Conflict,
    JobCancelled,
    JobFailed,
    NotFound,
    ValidationError,
    WaitTimeout,
)

from tests.support.specs import TINY_CTTV2, TINY_FP, spec

# Long enough to still be queued or running while a test cancels it or waits with a timeout.
LONG = spec(TINY_FP, name="long", **{"training.epochs": 200})
# Fails in the worker: the image folder does not exist in the data dir.
FAILS = spec(TINY_FP, name="fails", data={"dataset": "imagefolder", "name": "no-such-folder"})


def test_submit_from_yaml_and_wait_with_progress(client, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(TINY_CTTV2))
    job = client.jobs.submit(path, overrides={"name": "from-yaml"})
    assert job.status == "queued" and job.name == "from-yaml" and job.algorithm == "c-ttv2"
    seen = []
    done = client.jobs.wait(job.id, timeout=300, on_progress=seen.append, progress_bar=False)
    assert done.status == "succeeded" and done.id == job.id
    assert 0 <= done.result.test_accuracy <= 1 and done.result.wall_s > 0
    assert seen[-1].status == "succeeded" and seen[0].status in ("queued", "running")
    steps = [j.progress.step for j in seen if j.progress]
    assert steps == sorted(steps) and steps[-1] == done.progress.total_steps
    assert client.jobs.get(job.id).model_dump() == done.model_dump()


def test_list_pages_through_every_job(client, live, token):
    ids = [client.jobs.submit(LONG).id for _ in range(3)]
    for job_id in ids:
        client.jobs.cancel(job_id)
    for job_id in ids:  # the worker may have started one: it stops at a batch boundary
        assert client.jobs.wait(job_id, timeout=300, raise_on_failure=False).status == "cancelled"
    listed = [j.id for j in client.jobs.list(page_size=2)]
    with live.client(token) as raw:
        everything = [j["id"] for j in raw.get("/v1/jobs", params={"limit": 100}).json()["items"]]
    assert listed == everything and len(set(listed)) == len(listed) and set(ids) <= set(listed)
    cancelled = [j.id for j in client.jobs.list(status="cancelled", page_size=1)]
    assert set(ids) <= set(cancelled)
    assert all(j.status == "cancelled" for j in client.jobs.list(status="cancelled"))


def test_wait_raises_for_a_cancelled_job_and_times_out(client):
    job = client.jobs.submit(LONG)
    with pytest.raises(WaitTimeout, match=f"job {job.id} is still"):
        client.jobs.wait(job.id, timeout=0.5, poll_interval=0.2, progress_bar=False)
    assert client.jobs.cancel(job.id).cancel_requested
    with pytest.raises(JobCancelled) as info:
        client.jobs.wait(job.id, timeout=300, progress_bar=False)
    assert info.value.job.status == "cancelled" and info.value.job.id == job.id
    assert client.jobs.cancel(job.id).status == "cancelled"  # cancelling again is harmless


def test_wait_raises_for_a_failed_job(client):
    job = client.jobs.submit(FAILS)
    with pytest.raises(JobFailed) as info:
        client.jobs.wait(job.id, timeout=300, progress_bar=False)
    failed = info.value.job
    assert failed.status == "failed" and failed.error.message
    assert failed.error.code in str(info.value)
    same = client.jobs.wait(job.id, raise_on_failure=False, progress_bar=False)
    assert same.status == "failed"


def test_errors_are_typed(client, live):
    with pytest.raises(NotFound, match="job 999999 not found"):
        client.jobs.get(999999)
    with pytest.raises(ValidationError) as info:
        client.jobs.submit(spec(TINY_FP, **{"training.epochs": 0, "device.dw_min": -1}))
    err = info.value
    assert err.status_code == 422 and err.code == "validation_error"
    assert {"training.epochs", "device.dw_min"} <= {f.field for f in err.fields}
    with Client(live.url, "cttv2_not_a_token") as stranger, pytest.raises(AuthError) as info:
        list(stranger.jobs.list())
    assert info.value.status_code == 401
    with Client(live.url, None) as anonymous, pytest.raises(AuthError, match="no token configured"):
        anonymous.jobs.get(1)


def test_another_users_job_is_not_found(client, live):
    mine = client.jobs.submit(LONG)
    client.jobs.cancel(mine.id)
    with Client(live.url, live.create_user()) as other:
        with pytest.raises(NotFound):
            other.jobs.get(mine.id)
        assert list(other.jobs.list()) == []


def test_idempotency_key_replays_and_refuses_another_body(client, live, token):
    first = client.jobs.submit(LONG, idempotency_key="lab-notebook-run-1")
    again = client.jobs.submit(LONG, idempotency_key="lab-notebook-run-1")
    assert again.id == first.id
    with pytest.raises(Conflict) as info:
        client.jobs.submit(spec(LONG, name="other"), idempotency_key="lab-notebook-run-1")
    assert info.value.code == "idempotency_key_reused"
    client.jobs.cancel(first.id)
    # Two calls without a key are two jobs: each call generates its own key.
    a, b = client.jobs.submit(LONG), client.jobs.submit(LONG)
    assert a.id != b.id
    for j in (a, b):
        client.jobs.cancel(j.id)


def test_tags_and_notes_at_submit_and_update(client, live):
    job = client.jobs.submit(LONG, tags=["sdk", "lr:1e-3", "sdk"], notes="a note")
    client.jobs.cancel(job.id)
    assert job.tags == ["sdk", "lr:1e-3"] and job.notes == "a note" and "tags" not in job.spec
    updated = client.jobs.update(job.id, tags=["b", "a"])
    assert updated.tags == ["b", "a"] and updated.notes == "a note"  # None: left as it is
    updated = client.jobs.update(job.id, notes="")
    assert updated.tags == ["b", "a"] and updated.notes is None
    assert client.jobs.get(job.id).model_dump() == updated.model_dump()
    assert [j.id for j in client.jobs.list(tag="b", name=LONG["name"], algorithm="fp")][:1] == [job.id]
    assert job.id not in [j.id for j in client.jobs.list(tag="sdk")]
    with pytest.raises(ValidationError) as info:
        client.jobs.update(job.id, tags=["not a tag"])
    assert info.value.fields[0].field == "tags.0"
    with pytest.raises(ValidationError):
        list(client.jobs.list(algorithm="adam"))
    with Client(live.url, live.create_user()) as other, pytest.raises(NotFound):
        other.jobs.update(job.id, tags=["mine"])


def test_device_specs(client, tmp_path):
    path = tmp_path / "reram.yaml"
    path.write_text("name: reram-like\nspec:\n  family: ReRamSB\n  sp_skew: 0.1\n")
    record = client.device_specs.create(path)
    assert record.name == "reram-like" and record.spec["family"] == "ReRamSB" and record.spec["sp_skew"] == 0.1
    plain = client.device_specs.create({"family": "SoftBounds", "dw_min": 0.01}, name="sb")
    assert plain.name == "sb" and plain.spec["dw_min"] == 0.01
    assert {record.id, plain.id} <= {d.id for d in client.device_specs.list(page_size=1)}
    assert client.device_specs.get(record.id).spec == record.spec
    with pytest.raises(ValidationError) as info:
        client.device_specs.create({"family": "SoftBounds", "dw_min": 0})
    assert info.value.fields[0].field.endswith("dw_min")

    job = client.jobs.submit(spec(LONG, algorithm="c-ttv2", device={"id": plain.id}))
    assert job.device_spec_id == plain.id and job.spec["device"]["dw_min"] == 0.01
    with pytest.raises(Conflict):  # a queued or running job uses it
        client.device_specs.delete(plain.id)
    client.jobs.cancel(job.id)
    client.jobs.wait(job.id, timeout=300, raise_on_failure=False, progress_bar=False)
    client.device_specs.delete(plain.id)
    with pytest.raises(NotFound):
        client.device_specs.get(plain.id)


def test_presets_and_version(client):
    presets = client.presets()
    assert "ReRamSB" in str(presets)
    assert client.version()["api"] == "v1"
    assert client.ready()
    assert not Client("http://127.0.0.1:9", "x").ready()
