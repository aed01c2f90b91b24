"""Per-job results through real HTTP with a real worker: progress and result, the metric
series, the live events stream, logs, artifacts (Range, sha256, no escaping the job's folder),
the downloaded weights reproducing the reported accuracy, rerun, resume_from and
model.pretrained = {job}."""

from __future__ import annotations

import hashlib
import os
import struct
import time
from pathlib import Path

import pytest

from tests.results.conftest import assert_error
from tests.results.sse import read_events
from tests.support.specs import TINY_FP, spec
from tests.support.stack import wait_for_job

FINAL_NAMES = {"weights.safetensors", "result.json", "curves.png", "checkpoints/latest.pt", "checkpoints/best.pt"}


@pytest.fixture(scope="package")
def finished(rstack, alice):
    """Job A and its rerun B (queued behind A on the one worker). B's events are read live,
    from before it starts to its end: the wait behind A shows keep-alive comments."""
    a = alice.post("/v1/jobs", json=spec(TINY_FP, name="results-a"))
    assert a.status_code == 201, a.text
    b = alice.post(f"/v1/jobs/{a.json()['id']}/rerun")
    assert b.status_code == 201, b.text
    live = read_events(alice, f"/v1/jobs/{b.json()['id']}/events")
    job_b = wait_for_job(alice, b.json()["id"], timeout=30, stack=rstack)
    job_a = wait_for_job(alice, a.json()["id"], timeout=30, stack=rstack)
    assert job_a["status"] == job_b["status"] == "succeeded", (job_a, job_b)
    return {"a": job_a, "b": job_b, "live": live}


def test_result_and_progress(finished):
    job = finished["a"]
    result = job["result"]
    for key in (
        "test_accuracy",
        "test_error",
        "test_loss",
        "train_loss",
        "best_epoch",
        "wall_s",
        "elapsed_s",
        "environment",
        "history",
    ):
        assert key in result, key
    assert abs(result["test_error"] - (1 - result["test_accuracy"])) < 1e-9
    assert result["device"] == result["environment"]["device"] == "cpu"
    assert result["seeds"] == {
        "training": TINY_FP["training"]["seed"],
        "construction": result["environment"]["construction_seed"],
    }
    assert result["environment"]["torch"] and result["environment"]["aihwkit"]
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert 1 <= result["best_epoch"] <= 2 and result["wall_s"] > 0
    p = job["progress"]
    assert p["epoch"] == p["epochs"] == 2 and p["step"] == p["total_steps"] > 0
    assert p["images_per_s"] > 0 and p["updated_at"] and "eta_s" in p


def test_rerun_is_the_same_spec_as_a_new_job(finished, alice, bob):
    a, b = finished["a"], finished["b"]
    assert b["id"] != a["id"] and b["rerun_of"] == a["id"] and a["rerun_of"] is None
    assert b["spec"] == a["spec"]
    assert_error(bob.post(f"/v1/jobs/{a['id']}/rerun"), 404)
    # Idempotent like a submit: the same key answers with the same rerun.
    key = {"Idempotency-Key": f"rerun-{a['id']}"}
    first = alice.post(f"/v1/jobs/{a['id']}/rerun", headers=key)
    again = alice.post(f"/v1/jobs/{a['id']}/rerun", headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    alice.post(f"/v1/jobs/{first.json()['id']}/cancel")


def test_metrics_series(finished, alice, bob):
    job = finished["a"]
    items = alice.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    keys = {i["key"] for i in items}
    assert {"train_loss", "test_loss", "test_accuracy", "test_error", "images_per_s"} <= keys
    assert len(items) == len({(i["key"], i["step"]) for i in items})  # one point per (key, step)
    assert items == sorted(items, key=lambda i: (i["step"], i["key"]))
    acc = [i for i in items if i["key"] == "test_accuracy"]
    assert [i["epoch"] for i in acc] == [1, 2]
    assert acc[-1]["value"] == pytest.approx(job["result"]["test_accuracy"])

    some = alice.get(f"/v1/jobs/{job['id']}/metrics", params={"keys": "train_loss,test_accuracy"}).json()["items"]
    assert {i["key"] for i in some} == {"train_loss", "test_accuracy"} and len(some) == 4
    first_step = acc[0]["step"]
    later = alice.get(f"/v1/jobs/{job['id']}/metrics", params={"since_step": first_step}).json()["items"]
    assert later and all(i["step"] > first_step for i in later)
    assert later == [i for i in items if i["step"] > first_step]
    assert_error(alice.get(f"/v1/jobs/{job['id']}/metrics", params={"keys": "x;drop"}), 422, "keys")
    assert_error(bob.get(f"/v1/jobs/{job['id']}/metrics"), 404)


def test_events_stream_live_to_the_end(finished):
    live = finished["live"]
    events = live.events
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses
    assert events[-1]["event"] == "status"  # the stream ended right after the terminal event
    assert {"progress", "metrics"} <= {e["event"] for e in events}
    metrics = [e["data"] for e in events if e["event"] == "metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2] and "test_accuracy" in metrics[-1]["values"]
    last_progress = [e["data"] for e in events if e["event"] == "progress"][-1]
    assert last_progress["step"] == last_progress["total_steps"]
    assert live.comments >= 1  # keep-alives while it waited behind job A
    assert live.retry is not None


def test_events_resume_after_last_event_id(finished, alice, bob):
    job = finished["b"]
    full = read_events(alice, f"/v1/jobs/{job['id']}/events").events  # a finished job: replay, then end
    assert [e["id"] for e in full] == [e["id"] for e in finished["live"].events]
    middle = full[len(full) // 2]["id"]
    resumed = read_events(alice, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(middle)}).events
    assert resumed == [e for e in full if e["id"] > middle]
    by_query = read_events(alice, f"/v1/jobs/{job['id']}/events?last_event_id={middle}").events
    assert by_query == resumed
    after_end = read_events(alice, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(full[-1]["id"])})
    assert after_end.events == []  # nothing left: the stream closes at once
    assert_error(alice.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"}), 422, "last-event-id")
    assert_error(bob.get(f"/v1/jobs/{job['id']}/events"), 404)


def test_logs_with_offset(finished, alice, bob):
    job = finished["a"]
    page = alice.get(f"/v1/jobs/{job['id']}/logs").json()
    lines = page["lines"]
    assert page["done"] is True and page["next_offset"] == len(lines)
    assert any(line.startswith("epoch 2/2") for line in lines) and any("done: test accuracy" in line for line in lines)
    rest = alice.get(f"/v1/jobs/{job['id']}/logs", params={"offset": 2}).json()
    assert rest["lines"] == lines[2:] and rest["next_offset"] == len(lines) and rest["done"]
    end = alice.get(f"/v1/jobs/{job['id']}/logs", params={"offset": len(lines)}).json()
    assert end == {"lines": [], "next_offset": len(lines), "done": True}
    assert_error(alice.get(f"/v1/jobs/{job['id']}/logs", params={"offset": -1}), 422, "offset")
    assert_error(bob.get(f"/v1/jobs/{job['id']}/logs"), 404)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_artifacts_listing_downloads_range_and_sha256(finished, alice):
    job = finished["a"]
    listing = alice.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
    by_name = {a["name"]: a for a in listing}
    assert set(by_name) == FINAL_NAMES
    assert by_name["weights.safetensors"]["kind"] == "weights" and by_name["curves.png"]["kind"] == "plot"
    for item in listing:
        r = alice.get(f"/v1/jobs/{job['id']}/artifacts/{item['name']}")
        assert r.status_code == 200, (item, r.text)
        digest = hashlib.sha256(r.content).hexdigest()
        assert digest == item["sha256"] == r.headers["x-checksum-sha256"], item
        assert r.headers["etag"] == f'"{digest}"' and r.headers["accept-ranges"] == "bytes"
        assert int(r.headers["content-length"]) == len(r.content) == item["size"]
    width, height = _png_size(alice.get(f"/v1/jobs/{job['id']}/artifacts/curves.png").content)
    assert width >= 400 and height >= 200

    url = f"/v1/jobs/{job['id']}/artifacts/result.json"
    whole = alice.get(url).content
    size = len(whole)
    part = alice.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{size}" and part.headers["content-length"] == "90"
    tail = alice.get(url, headers={"Range": "bytes=-25"})
    assert tail.status_code == 206 and tail.content == whole[-25:]
    rest = alice.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert rest.status_code == 206 and rest.content == whole[-5:]
    beyond = alice.get(url, headers={"Range": f"bytes={size}-"})
    assert_error(beyond, 416)
    assert beyond.headers["content-range"] == f"bytes */{size}"
    stale = alice.get(url, headers={"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == whole  # changed since: the whole file
    fresh = alice.get(url, headers={"Range": "bytes=0-9", "If-Range": stale.headers["etag"]})
    assert fresh.status_code == 206 and fresh.content == whole[:10]


def test_artifact_names_cannot_escape_and_other_users_get_404(rstack, finished, alice, bob):
    job = finished["b"]
    other = finished["a"]["id"]
    base = f"/v1/jobs/{job['id']}/artifacts"
    for name in (
        f"../{other}/weights.safetensors",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "checkpoints/../../../state/cttv2.db",
        "checkpoints/..%2F..%2Fresult.json",
        "checkpoints",
        "nope.bin",
        "weights.safetensors/x",
    ):
        assert_error(alice.get(f"{base}/{name}"), 404)
    # A file in the job's folder that was never registered is not served.
    job_dir = Path(rstack.env["CTTV2_ARTIFACT_DIR"]) / "jobs" / str(job["id"])
    (job_dir / "notes.txt").write_text("not an artifact")
    assert_error(alice.get(f"{base}/notes.txt"), 404)
    # Nor a registered name that is a symlink out of the folder.
    os.symlink("/etc/hostname", job_dir / "escape.txt")
    rstack.sql(
        "INSERT INTO artifacts (job_id, name, kind, size, sha256, created_at, updated_at) "
        "VALUES (:j, 'escape.txt', 'plot', 1, :h, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        j=job["id"],
        h="0" * 64,
    )
    assert_error(alice.get(f"{base}/escape.txt"), 404)
    assert alice.get(f"{base}/result.json").status_code == 200  # the real ones still are
    a_base = f"/v1/jobs/{other}/artifacts"
    assert_error(bob.get(a_base), 404)
    assert_error(bob.get(f"{a_base}/weights.safetensors"), 404)
    assert_error(bob.get(f"{a_base}/result.json", headers={"Range": "bytes=0-3"}), 404)


def test_downloaded_weights_reproduce_the_reported_accuracy(rstack, finished, alice, tmp_path):
    """Download in two Range halves (as a resumed download would), check the sha256, load the
    digital model in a fresh process state and evaluate it on the job's test split."""
    from cttv2_engine.types import RunContext
    from cttv2_engine.weights import evaluate, load_trained_model

    job = finished["a"]
    url = f"/v1/jobs/{job['id']}/artifacts/weights.safetensors"
    meta = {a["name"]: a for a in alice.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}["weights.safetensors"]
    half = meta["size"] // 2
    first = alice.get(url, headers={"Range": f"bytes=0-{half - 1}"})
    second = alice.get(url, headers={"Range": f"bytes={half}-"})
    assert first.status_code == second.status_code == 206
    data = first.content + second.content
    assert hashlib.sha256(data).hexdigest() == meta["sha256"] == second.headers["x-checksum-sha256"]
    path = tmp_path / "weights.safetensors"
    path.write_bytes(data)

    model = load_trained_model(path)
    context = RunContext(data_dir=Path(rstack.env["CTTV2_DATA_DIR"]), weights_dir=tmp_path)
    got = evaluate(model, job["spec"], context)
    assert got["test_accuracy"] == pytest.approx(job["result"]["test_accuracy"], abs=1e-12)
    assert got["test_loss"] == pytest.approx(job["result"]["test_loss"], rel=1e-5)


def test_resume_from_and_pretrained_job(rstack, finished, alice, bob):
    a = finished["a"]
    # resume_from: the same spec, from A's last checkpoint (A had finished: nothing left to train).
    body = {**a["spec"], "resume_from": {"job": a["id"], "checkpoint": "latest"}}
    resumed = alice.post("/v1/jobs", json=body)
    assert resumed.status_code == 201, resumed.text
    assert resumed.json()["resume_from"] == {"job": a["id"], "checkpoint": "latest"}
    # model.pretrained = {job: A}: fine-tune A's weights on other classes (a new head).
    tune = spec(
        TINY_FP, name="from-a", **{"model.pretrained": {"job": a["id"]}, "data.classes": [3, 4], "training.epochs": 1}
    )
    tuned = alice.post("/v1/jobs", json=tune)
    assert tuned.status_code == 201, tuned.text

    # References that cannot work are refused at submit, naming the field.
    assert_error(bob.post("/v1/jobs", json={**a["spec"], "resume_from": {"job": a["id"]}}), 422, "resume_from.job")
    assert_error(bob.post("/v1/jobs", json=spec(tune)), 422, "model.pretrained.job")
    unfinished = alice.post("/v1/jobs", json=spec(TINY_FP, name="never-ran")).json()
    alice.post(f"/v1/jobs/{unfinished['id']}/cancel")
    assert_error(
        alice.post("/v1/jobs", json={**a["spec"], "resume_from": {"job": unfinished["id"]}}),
        422,
        "resume_from.checkpoint",
    )
    assert_error(
        alice.post("/v1/jobs", json=spec(tune, **{"model.pretrained": {"job": unfinished["id"]}})),
        422,
        "model.pretrained.job",
    )
    assert_error(alice.post("/v1/jobs", json={**a["spec"], "resume_from": {"job": 2_000_000}}), 422, "resume_from.job")
    # Train further: more epochs may continue A's checkpoint; another lr may not.
    epochs = a["spec"]["training"]["epochs"]
    further = alice.post(
        "/v1/jobs",
        json={
            **a["spec"],
            "name": "further",
            "training": {**a["spec"]["training"], "epochs": epochs + 1},
            "resume_from": {"job": a["id"]},
        },
    )
    assert further.status_code == 201, further.text
    other_lr = {**a["spec"]["training"], "lr": 0.123}
    err = assert_error(
        alice.post("/v1/jobs", json={**a["spec"], "training": other_lr, "resume_from": {"job": a["id"]}}),
        422,
        "resume_from",
    )
    assert "training.lr" in err["message"]

    done = wait_for_job(alice, resumed.json()["id"], timeout=120, stack=rstack)
    assert done["status"] == "succeeded", done
    logs = alice.get(f"/v1/jobs/{done['id']}/logs").json()["lines"]
    assert any(f"resuming from jobs/{a['id']}/checkpoints/latest.pt" in line for line in logs), logs
    assert done["result"]["test_accuracy"] == pytest.approx(a["result"]["test_accuracy"])

    done = wait_for_job(alice, further.json()["id"], timeout=120, stack=rstack)
    assert done["status"] == "succeeded", done
    assert [h["epoch"] for h in done["result"]["history"]] == list(range(1, epochs + 2))
    assert done["progress"]["epochs"] == epochs + 1

    done = wait_for_job(alice, tuned.json()["id"], timeout=120, stack=rstack)
    assert done["status"] == "succeeded", done
    logs = alice.get(f"/v1/jobs/{done['id']}/logs").json()["lines"]
    assert any("pretrained: weights.safetensors (head re-initialized" in line for line in logs), logs


def test_curves_redrawn_when_the_sweep_baseline_finishes(rstack, alice):
    """An analog sweep job finishes before its digital baseline (same seed): when the baseline
    finishes, the analog job's curves.png is drawn again, with it, and re-registered."""
    from tests.support.specs import TINY_CTTV2

    analog = alice.post("/v1/jobs", json=spec(TINY_CTTV2, name="sweep-analog")).json()
    baseline = alice.post("/v1/jobs", json=spec(TINY_FP, name="sweep-baseline")).json()
    user_id = rstack.sql("SELECT user_id FROM jobs WHERE id = :j", j=analog["id"])[0][0]
    rstack.sql("INSERT INTO sweeps (user_id, request, created_at) VALUES (:u, '{}', CURRENT_TIMESTAMP)", u=user_id)
    sweep_id = rstack.sql("SELECT max(id) FROM sweeps")[0][0]
    # Tag them as sweep members while they are still queued or running (the sweeps API does this
    # at creation; the curves are drawn when each finishes).
    for job, is_baseline in ((analog, False), (baseline, True)):
        rstack.sql(
            "UPDATE jobs SET sweep_id = :s, is_baseline = :b, sweep_point = :p WHERE id = :j",
            s=sweep_id,
            b=is_baseline,
            j=job["id"],
            p='{"grid": {}, "seed": 1}',
        )
    done = wait_for_job(alice, analog["id"], timeout=120, stack=rstack)
    assert done["status"] == "succeeded", done
    url = f"/v1/jobs/{analog['id']}/artifacts"
    before = {a["name"]: a["sha256"] for a in alice.get(url).json()["items"]}["curves.png"]
    assert wait_for_job(alice, baseline["id"], timeout=120, stack=rstack)["status"] == "succeeded"
    deadline = time.monotonic() + 30  # redrawn just after the baseline is marked succeeded
    while (listed := {a["name"]: a["sha256"] for a in alice.get(url).json()["items"]}["curves.png"]) == before:
        assert time.monotonic() < deadline, "curves.png was not redrawn when the baseline finished"
        time.sleep(0.3)
    png = alice.get(f"{url}/curves.png")
    assert hashlib.sha256(png.content).hexdigest() == listed == png.headers["x-checksum-sha256"]
    _png_size(png.content)


def test_open_streams_hold_no_database_connection(rstack, finished, alice):
    """45 clients follow a job that never ends (more than the API's connection pool of 30 and
    its 40 threads): the API keeps answering, every stream gets a new event, no connection sits
    in an open transaction, and the streams end cleanly when the clients leave."""
    import threading

    import httpx

    a = finished["a"]["id"]
    # A queued job no worker will take (cancel requested before any claim), so it never ends.
    rstack.sql(
        "INSERT INTO jobs (user_id, name, spec, spec_hash, algorithm, is_baseline, status, "
        "cancel_requested, attempt, lost_count, created_at, updated_at) "
        "SELECT user_id, 'idle', spec, spec_hash, algorithm, is_baseline, 'queued', :t, 0, 0, "
        "created_at, updated_at FROM jobs WHERE id = :a",
        a=a,
        t=True,
    )
    idle = rstack.sql("SELECT max(id) FROM jobs")[0][0]
    rstack.sql(
        "INSERT INTO job_events (job_id, kind, data, created_at) "
        "VALUES (:j, 'status', '{\"status\": \"queued\"}', CURRENT_TIMESTAMP)",
        j=idle,
    )

    n = 45
    got_first = threading.Barrier(n + 1, timeout=60)
    seen: list[list[str]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def follow(i: int) -> None:
        try:
            with (
                httpx.Client(base_url=rstack.url, headers=alice.headers, timeout=30) as c,
                c.stream("GET", f"/v1/jobs/{idle}/events") as r,
            ):
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        seen[i].append(line)
                        if len(seen[i]) == 1:
                            got_first.wait()
                        else:
                            return  # leave mid-stream
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            got_first.abort()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    got_first.wait()  # all 45 streams are open and idle now
    for _ in range(5):
        r = alice.get(f"/v1/jobs/{a}", timeout=10)
        assert r.status_code == 200, r.text
    if rstack.backend == "postgres":
        # A poll is briefly between its two reads; a session held by a stream would sit there.
        time.sleep(2.5)
        stuck = rstack.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%' "
            "AND state_change < now() - interval '2 seconds'"
        )[0][0]
        assert stuck == 0
    rstack.sql(
        "INSERT INTO job_events (job_id, kind, data, created_at) "
        "VALUES (:j, 'progress', '{\"step\": 1}', CURRENT_TIMESTAMP)",
        j=idle,
    )
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:3]
    assert all(s == ["event: status", "event: progress"] for s in seen), seen[:3]
    assert alice.get(f"/v1/jobs/{a}", timeout=10).status_code == 200
