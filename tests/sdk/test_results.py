"""Results through the SDK: live events, metrics, logs, artifacts, rerun and weights uploads."""

from __future__ import annotations

import hashlib
import time

import pytest
from cttv2_client import NotFound, ValidationError

from tests.support.specs import TINY_FP, spec


def test_events_follow_a_job_live_and_resume(client, followed):
    job, events = followed
    assert job.status == "succeeded"
    ids = [int(e.id) for e in events]
    assert ids == sorted(set(ids))
    assert events[0].event == "status" and events[0].data["status"] == "queued"
    assert events[-1].event == "status" and events[-1].data["status"] == "succeeded"
    kinds = {e.event for e in events}
    assert {"status", "progress", "metrics"} <= kinds
    last_progress = [e.data for e in events if e.event == "progress"][-1]
    assert last_progress["step"] == last_progress["total_steps"] == job.progress.total_steps
    middle = events[len(events) // 2]
    resumed = list(client.jobs.events(job.id, last_event_id=middle.id))
    assert [e.id for e in resumed] == [e.id for e in events[len(events) // 2 + 1 :]]
    started = time.monotonic()
    assert list(client.jobs.events(job.id, last_event_id=events[-1].id)) == []  # after the end
    assert time.monotonic() - started < 30


def test_metrics(client, followed):
    job, events = followed
    metrics = client.jobs.metrics(job.id)
    assert {"train_loss", "test_accuracy", "test_error"} <= set(metrics.keys)
    steps = [m.step for m in metrics]
    assert steps == sorted(steps)
    assert metrics.last("test_accuracy") == pytest.approx(job.result.test_accuracy)
    reported = [e.data["values"]["train_loss"] for e in events if e.event == "metrics"]
    assert [v for _, v in metrics.series("train_loss")] == pytest.approx(reported)
    only = client.jobs.metrics(job.id, keys=["train_loss"], since_step=steps[0])
    assert only.keys == ["train_loss"] and all(m.step > steps[0] for m in only)
    frame = metrics.to_pandas()
    assert list(frame.index) == sorted(set(steps)) and "test_accuracy" in frame.columns


def test_logs(client, followed):
    job, _ = followed
    chunk = client.jobs.logs(job.id)
    assert chunk.lines and chunk.done and chunk.next_offset == len(chunk.lines)
    assert list(client.jobs.follow_logs(job.id)) == chunk.lines
    assert client.jobs.logs(job.id, offset=1).lines == chunk.lines[1:]


def test_artifacts_list_and_download(client, followed, tmp_path, monkeypatch):
    job, _ = followed
    listing = {a.name: a for a in client.artifacts.list(job.id)}
    assert {"weights.safetensors", "result.json", "checkpoints/latest.pt"} <= set(listing)
    path = client.artifacts.download(job.id, "checkpoints/latest.pt", tmp_path)
    assert path == tmp_path / "latest.pt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == listing["checkpoints/latest.pt"].sha256
    monkeypatch.chdir(tmp_path)
    saved = client.artifacts.download(job.id, "result.json")
    assert saved == tmp_path / "result.json" and saved.stat().st_size == listing["result.json"].size
    named = client.artifacts.download(job.id, "result.json", tmp_path / "sub" / "r.json")
    assert named.read_bytes() == saved.read_bytes()
    into = client.artifacts.download(job.id, "result.json", f"{tmp_path}/new-dir/")
    assert into == tmp_path / "new-dir" / "result.json"
    for bad in ("no-such-file", "../../../etc/passwd"):
        with pytest.raises(NotFound):
            client.artifacts.download(job.id, bad, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


def test_jobs_to_pandas(client, followed):
    pd = pytest.importorskip("pandas")
    job, _ = followed
    label = f"pandas-{job.id}"
    client.jobs.update(job.id, tags=[label, "second"])
    other = client.jobs.submit(TINY_FP, tags=[label])  # fp: no device section; not finished
    client.jobs.cancel(other.id)
    table = client.jobs.to_pandas(tag=label, page_size=1)  # every page
    assert list(table["id"]) == [other.id, job.id]
    columns = list(table.columns)
    assert columns[:7] == ["id", "name", "status", "algorithm", "tags", "created_at", "finished_at"]
    row = table.set_index("id").loc[job.id]
    assert row["tags"] == f"{label},second" and row["status"] == "succeeded" and row["algorithm"] == "c-ttv2"
    assert row["device.family"] == job.spec["device"]["family"] and row["device.sp_skew"] == 0.0
    assert row["training.epochs"] == job.spec["training"]["epochs"] and "training.lr" in columns
    assert row["result.test_accuracy"] == job.result.test_accuracy and row["result.wall_s"] > 0
    assert "result.history" not in columns and "result.environment" not in columns  # scalars only
    assert all(c.startswith("result.") for c in columns[columns.index("result.test_accuracy") :])
    assert pd.isna(table.set_index("id").loc[other.id, "result.test_accuracy"])  # not finished
    assert client.jobs.to_pandas(tag="no-such-tag").empty


def test_rerun(client, followed):
    job, _ = followed
    again = client.jobs.rerun(job.id)
    assert again.id != job.id and again.rerun_of == job.id and again.spec == job.spec
    client.jobs.cancel(again.id)


def test_weights_upload(client, followed, tmp_path):
    job, _ = followed
    path = client.artifacts.download(job.id, "weights.safetensors", tmp_path)
    uploaded = client.weights.upload(path, arch="swin_micro", name="tiny-digits.safetensors")
    assert (
        uploaded.name == "tiny-digits.safetensors" and uploaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    deadline = time.monotonic() + 120
    while (w := client.weights.get(uploaded.id)).status == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert w.status == "valid", w.error
    assert uploaded.id in [x.id for x in client.weights.list()]
    start = client.jobs.submit(spec(TINY_FP, **{"model.pretrained": {"weights": "tiny-digits.safetensors"}}))
    client.jobs.cancel(start.id)
    with pytest.raises(ValidationError):
        client.weights.upload(path, arch="no-such-arch")
