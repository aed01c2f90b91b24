"""The user commands of the `cttv2` console script, run as subprocesses against a live stack."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.support.specs import TINY_CTTV2, TINY_FP, spec
from tests.support.stack import ROOT

LONG = spec(TINY_FP, name="cli-long", **{"training.epochs": 200})
FAILS = spec(TINY_FP, name="cli-fails", data={"dataset": "imagefolder", "name": "no-such-folder"})


class CLI:
    """`cttv2 ...` with a private config dir; url/token given through the environment."""

    def __init__(self, home: Path, url: str | None = None, token: str | None = None) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}
        self.env.update({"XDG_CONFIG_HOME": str(home), "COLUMNS": "200"})
        if url:
            self.env["CTTV2_URL"] = url
        if token:
            self.env["CTTV2_TOKEN"] = token

    def __call__(self, *args: str, code: int | None = 0, input: str | None = None) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, "-m", "cttv2_cli", *args],
            cwd=ROOT,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if code is not None:
            assert res.returncode == code, (
                f"cttv2 {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
            )
        return res

    def json(self, *args: str):
        return json.loads(self(*args, "--json").stdout)


def assert_one_line_error(res: subprocess.CompletedProcess, starts: str) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    first = res.stderr.splitlines()[0]
    assert first.startswith(f"cttv2: {starts}"), res.stderr


@pytest.fixture(scope="module")
def token(live) -> str:
    return live.create_user()


@pytest.fixture(scope="module")
def cli(live, token, tmp_path_factory) -> CLI:
    return CLI(tmp_path_factory.mktemp("cli-home"), live.url, token)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-files")
    for name, body in (("tiny.yaml", TINY_CTTV2), ("long.yaml", LONG), ("fails.yaml", FAILS)):
        (d / name).write_text(yaml.safe_dump(body))
    return d


@pytest.fixture(scope="module")
def finished(cli, files) -> dict:
    """A job run to the end by `cttv2 submit --wait --json`."""
    return json.loads(cli("submit", str(files / "tiny.yaml"), "--wait", "--json").stdout)


def test_help_lists_the_user_commands():
    out = CLI(Path("/nonexistent"))("--help").stdout
    for command in (
        "login",
        "device",
        "submit",
        "jobs",
        "show",
        "watch",
        "logs",
        "cancel",
        "download",
        "artifacts",
        "metrics",
        "sweep",
        "tag",
        "notes",
        "export",
        "rerun",
        "wait",
        "weights",
        "presets",
        "delete",
        "serve",
        "worker",
    ):
        assert f"  {command}" in out, out


def test_login_checks_and_saves_the_token(live, token, tmp_path):
    cli = CLI(tmp_path)
    res = cli("jobs", code=2)
    assert_one_line_error(res, "no server URL")
    res = cli("login", "--url", live.url, "--token", "cttv2_wrong", code=1)
    assert_one_line_error(res, "missing or invalid API token")
    assert not (tmp_path / "cttv2" / "config.toml").exists()

    res = cli("login", input=f"{live.url}\n{token}\n")  # asked interactively, token hidden
    assert token not in res.stdout and "logged in to" in res.stdout
    config = tmp_path / "cttv2" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and token in config.read_text()
    assert cli.json("jobs") == []  # later commands need no URL or token
    res = cli("jobs", "--url", live.url, "--token", "cttv2_wrong", code=1)  # options win over the file
    assert_one_line_error(res, "missing or invalid API token")


def test_device_create_and_list(cli, tmp_path):
    path = tmp_path / "device.yaml"
    path.write_text("family: ReRamSB\nsp_skew: 0.05\n")
    created = cli.json("device", "create", str(path), "--name", "reram-skewed")
    assert created["name"] == "reram-skewed" and created["spec"]["sp_skew"] == 0.05
    assert created["id"] in [d["id"] for d in cli.json("device", "list")]
    table = cli("device", "list").stdout
    assert "reram-skewed" in table and "ReRamSB" in table
    assert cli.json("device", "show", str(created["id"]))["spec"]["family"] == "ReRamSB"
    path.write_text("family: ReRamSB\ndw_min: 0\n")
    assert_one_line_error(cli("device", "create", str(path), code=1), "invalid request: spec.dw_min")
    assert "deleted" in cli("device", "delete", str(created["id"])).stdout
    assert_one_line_error(cli("device", "show", str(created["id"]), code=1), f"device spec {created['id']} not found")


def test_submit_wait_succeeds_and_read_commands(cli, finished):
    assert finished["status"] == "succeeded" and finished["result"]["test_accuracy"] is not None
    job_id = str(finished["id"])
    assert cli.json("show", job_id)["id"] == finished["id"]
    shown = cli("show", job_id).stdout
    assert "succeeded" in shown and "test accuracy" in shown
    assert finished["id"] in [j["id"] for j in cli.json("jobs", "--status", "succeeded")]
    assert all(j["status"] == "failed" for j in cli.json("jobs", "--status", "failed"))
    table = cli("jobs", "--limit", "5").stdout
    assert job_id in table and "succeeded" in table and "c-ttv2" in table


def test_tag_notes_and_jobs_csv(cli, finished):
    job_id = str(finished["id"])
    label = f"cli-{job_id}"
    assert cli("tag", job_id, label, "b", "c", label).stdout.strip() == f"job {job_id} tags: {label}, b, c"
    assert cli.json("tag", job_id, "d", "--remove", "b", "--remove", "zzz")["tags"] == [label, "c", "d"]
    assert "saved" in cli("notes", job_id, "lr too high?").stdout
    shown = cli.json("show", job_id)
    assert shown["tags"] == [label, "c", "d"] and shown["notes"] == "lr too high?"
    assert "lr too high?" in cli("show", job_id).stdout
    assert_one_line_error(cli("tag", job_id, "not a tag", code=1), "invalid request: tags.3")
    assert cli("tag", job_id, code=2).returncode == 2  # nothing to add or remove

    out = cli("jobs", "--tag", label, "--name", finished["name"], "--algorithm", "c-ttv2", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["id"] == job_id, out
    header = out.splitlines()[0].split(",")
    assert header[:7] == ["id", "name", "status", "algorithm", "tags", "created_at", "finished_at"]
    row = rows[0]
    assert row["tags"] == f"{label},c,d" and row["status"] == "succeeded"
    assert row["training.epochs"] == str(finished["spec"]["training"]["epochs"])
    assert row["data.classes"] == json.dumps(finished["spec"]["data"]["classes"])  # lists as JSON
    assert float(row["result.test_accuracy"]) == finished["result"]["test_accuracy"]
    assert datetime.fromisoformat(row["created_at"]) == datetime.fromisoformat(finished["created_at"])
    assert cli("jobs", "--tag", label, "--status", "failed", "--csv").stdout.splitlines() == [",".join(header[:7])]
    assert job_id in cli("jobs", "--tag", label).stdout  # the table
    assert_one_line_error(cli("jobs", "--algorithm", "adam", code=1), "invalid request: algorithm")
    assert "removed" in cli("notes", job_id, "").stdout
    assert cli.json("show", job_id)["notes"] is None


def test_submit_wait_prints_the_outcome(cli, files):
    res = cli("submit", str(files / "tiny.yaml"), "--wait", "--set", "name=cli-ok", "--set", "training.epochs=1")
    assert "succeeded: test accuracy" in res.stdout and "submitted job" in res.stderr
    res = cli("submit", str(files / "fails.yaml"), "--wait", code=1)
    assert "failed" in res.stdout
    assert cli.json("show", res.stdout.split()[1])["status"] == "failed"


def test_bad_input_is_one_line_and_exit_codes(cli, files, tmp_path):
    res = cli("submit", str(files / "tiny.yaml"), "--set", "training.epochs=0", code=1)
    assert_one_line_error(res, "invalid request: training.epochs")
    res = cli("submit", str(tmp_path / "missing.yaml"), code=2)
    assert_one_line_error(res, "")
    assert "no such file" in res.stderr
    (tmp_path / "broken.yaml").write_text("training: [1,\n")
    assert_one_line_error(cli("submit", str(tmp_path / "broken.yaml"), code=2), "")
    assert cli("submit", str(files / "tiny.yaml"), "--set", "novalue", code=2).returncode == 2
    assert_one_line_error(cli("show", "999999", code=1), "job 999999 not found")
    assert cli("show", "notanumber", code=2).returncode == 2


def test_cancel(cli, files):
    job = json.loads(cli("submit", str(files / "long.yaml"), "--json").stdout)
    out = cli("cancel", str(job["id"])).stdout
    assert f"job {job['id']}" in out and ("cancelled" in out or "cancel requested" in out)
    assert cli.json("cancel", str(job["id"]))["cancel_requested"] is True


def test_watch_a_job_to_its_end(cli, files):
    job = json.loads(cli("submit", str(files / "tiny.yaml"), "--json").stdout)
    res = cli("watch", str(job["id"]))
    assert "status: running" in res.stdout and "test_accuracy" in res.stdout
    assert f"job {job['id']} succeeded" in res.stdout
    events = [json.loads(line) for line in cli("watch", str(job["id"]), "--json").stdout.splitlines()]
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "succeeded"
    assert {"progress", "metrics"} <= {e["event"] for e in events}


def test_watch_exits_1_for_a_failed_job(cli, files):
    job = json.loads(cli("submit", str(files / "fails.yaml"), "--json").stdout)
    res = cli("watch", str(job["id"]), code=1)
    assert f"job {job['id']} failed" in res.stdout


def test_logs_metrics_artifacts_download(cli, finished, tmp_path):
    job_id = str(finished["id"])
    lines = cli("logs", job_id).stdout.splitlines()
    assert lines
    assert cli("logs", job_id, "-f").stdout.splitlines() == lines
    assert cli.json("logs", job_id)["done"] is True
    metrics = cli.json("metrics", job_id)["items"]
    assert {"train_loss", "test_accuracy"} <= {m["key"] for m in metrics}
    assert "train_loss" in cli("metrics", job_id).stdout
    listing = {a["name"]: a for a in cli.json("artifacts", job_id)}
    assert "weights.safetensors" in cli("artifacts", job_id).stdout
    res = cli("download", job_id, "weights.safetensors", "-o", str(tmp_path))
    saved = tmp_path / "weights.safetensors"
    assert "sha256 verified" in res.stdout
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == listing["weights.safetensors"]["sha256"]
    assert_one_line_error(cli("download", job_id, "no-such-file", code=1), "")


TINY_SWEEP = {
    "name": "cli-sweep",
    "base": spec(TINY_CTTV2, **{"training.epochs": 1}),
    "grid": {"device.sp_skew": [0.0, 0.2]},
    "seeds": [0],
    "baseline": True,
}


def test_sweep_commands(cli, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(TINY_SWEEP))
    res = cli("sweep", "submit", str(path), "--wait")
    assert "succeeded: 3/3 jobs succeeded" in res.stdout, res.stdout
    sweep_id = res.stderr.split()[2]  # "submitted sweep N (3 jobs)"
    assert int(sweep_id) in [s["id"] for s in cli.json("sweep", "list")]
    assert cli.json("sweep", "show", sweep_id)["counts"]["succeeded"] == 3
    shown = cli("sweep", "show", sweep_id).stdout
    assert "cli-sweep" in shown and shown.count("succeeded") >= 4  # the sweep and its 3 jobs

    table = cli("sweep", "report", sweep_id).stdout
    assert "device.sp_skew" in table and "baseline" in table and "vs baseline" in table
    report = cli.json("sweep", "report", sweep_id)
    assert report["complete"] and report["axes"] == ["device.sp_skew"] and len(report["rows"]) == 2
    csv = cli("sweep", "report", sweep_id, "--csv").stdout.splitlines()
    assert "device.sp_skew" in csv[0] and len(csv) >= 3
    res = cli("sweep", "report", sweep_id, "--png", str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG" and "saved" in res.stdout
    assert cli("sweep", "report", sweep_id, "--csv", "--json", code=2).returncode == 2
    assert cli.json("sweep", "cancel", sweep_id)["status"] == "succeeded"  # nothing left to cancel


def test_rerun_and_wait(cli, finished, files):
    job_id = finished["id"]
    res = cli("rerun", str(job_id))
    assert res.stdout.startswith("submitted job ") and f"a rerun of job {job_id}" in res.stdout, res.stdout
    new_id = res.stdout.split()[2]
    assert f"job {new_id} succeeded: test accuracy" in cli("wait", new_id, "--timeout", "300").stdout
    rerun = cli.json("wait", new_id)  # an ended job: at once
    assert rerun["status"] == "succeeded" and rerun["rerun_of"] == job_id
    assert (
        rerun["spec"]["training"] == finished["spec"]["training"] and rerun["spec"]["data"] == finished["spec"]["data"]
    )
    assert_one_line_error(cli("rerun", "999999", code=1), "job 999999 not found")
    assert cli("rerun", "x", code=2).returncode == 2

    failed = json.loads(cli("submit", str(files / "fails.yaml"), "--json").stdout)
    assert f"job {failed['id']} failed" in cli("wait", str(failed["id"]), code=1).stdout
    again = json.loads(cli("rerun", str(failed["id"]), "--wait", "--json", code=1).stdout)
    assert again["status"] == "failed" and again["rerun_of"] == failed["id"]


def test_weights_upload_list_show_delete(cli, finished, tmp_path):
    job_id = str(finished["id"])
    cli("download", job_id, "weights.safetensors", "-o", str(tmp_path))
    name = f"cli-{job_id}.safetensors"
    res = cli(
        "weights", "upload", str(tmp_path / "weights.safetensors"), "--arch", "swin_micro", "--name", name, "--wait"
    )
    assert "uploaded weights" in res.stderr and f"{{weights: {name}}}" in res.stderr
    assert res.stdout.split()[2] == "valid", res.stdout
    good = res.stdout.split()[1]
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file " * 64)
    res = cli(
        "weights", "upload", str(tmp_path / "junk.safetensors"), "--arch", "swin_micro", "--wait", "--json", code=1
    )
    bad = json.loads(res.stdout)
    assert bad["status"] == "invalid" and bad["error"] and bad["name"] == "junk.safetensors"

    listed = {w["id"]: w for w in cli.json("weights", "list")}
    assert listed[int(good)]["name"] == name and listed[bad["id"]]["status"] == "invalid"
    table = cli("weights", "list").stdout
    assert name in table and "valid" in table and "invalid" in table and "swin_micro" in table
    assert cli.json("weights", "show", good)["status"] == "valid"
    assert_one_line_error(
        cli("weights", "upload", str(tmp_path / "weights.safetensors"), "--arch", "nope", code=1),
        "invalid request: arch",
    )
    assert cli("weights", "upload", str(tmp_path / "missing.pt"), "--arch", "swin_micro", code=2).returncode == 2
    assert cli("weights", "upload", str(tmp_path / "weights.safetensors"), code=2).returncode == 2  # --arch is required

    for weights_id in (good, str(bad["id"])):
        assert cli("weights", "delete", weights_id).stdout.strip() == f"weights {weights_id} deleted"
    assert_one_line_error(cli("weights", "show", good, code=1), f"weights {good} not found")
    assert_one_line_error(cli("weights", "delete", good, code=1), f"weights {good} not found")


def test_presets(cli):
    listing = cli.json("presets")
    assert "SoftBoundsReference" in listing["families"] and "ReRamSB" in listing["presets"]
    assert listing["device_knobs"]["sp_skew"]["unit"]
    out = cli("presets").stdout
    for text in (
        "SoftBoundsReference",
        "ReRamSB",
        "sp_skew",
        "weight units",
        "(0, 1]",
        "c-ttv2",
        "swin_micro",
        "digits",
    ):
        assert text in out, text
    detail = cli("presets", "ReRamSB").stdout
    assert "ReRamSB" in detail and "0.002" in detail  # its own dw_min default
    assert cli.json("presets", "ReRamSB")["defaults"]["dw_min"] == 0.002
    assert_one_line_error(cli("presets", "NoSuchDevice", code=2), "no family or preset 'NoSuchDevice'")
