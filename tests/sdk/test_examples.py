"""Every example in examples/: the CPU-sized ones run against the live stack (with fewer epochs),
the GPU-sized ones pass the server's own validation, so none of them can rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.stack import ROOT

EXAMPLES = ROOT / "examples"
SHORT = ["--set", "training.epochs=1", "--set", "data.train_per_class=30", "--set", "data.test_per_class=10"]
STUDY_WEIGHTS = "swin_tiny_cifar10.safetensors"


def test_every_example_is_documented():
    readme = (EXAMPLES / "README.md").read_text()
    documented = set(re.findall(r"`([\w.-]+\.(?:yaml|py))`", readme))
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".py")}
    assert present <= documented, present - documented


@pytest.fixture(scope="module")
def study_weights_present(live):
    """The study's jobs name a pretrained weights file the server checks at submit: a stand-in
    is enough for validation (no study job runs here)."""
    folder = Path(live.env["CTTV2_WEIGHTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STUDY_WEIGHTS).write_bytes(b"stand-in")


@pytest.mark.parametrize("name", ["study-pretrain.yaml", "study-job.yaml"])
def test_gpu_sized_jobs_pass_the_servers_validation(client, study_weights_present, name):
    """Submitted and cancelled at once: the API's checks ran (schema, ranges, device knobs, arch
    tiling, class names, the pretrained reference); nothing heavy runs here."""
    job = client.jobs.submit(EXAMPLES / name)
    client.jobs.cancel(job.id)
    body = yaml.safe_load((EXAMPLES / name).read_text())
    assert job.spec["model"]["arch"] == body["model"]["arch"] == "swin_tiny_cifar"
    # A worker may have claimed it first: it stops (or fails: no CIFAR here) at once.
    assert client.jobs.wait(job.id, timeout=600, raise_on_failure=False).status in ("cancelled", "failed")


def test_the_study_sweep_passes_the_servers_validation(client, study_weights_present):
    sweep = client.sweeps.submit(EXAMPLES / "study-sweep.yaml")
    client.sweeps.cancel(sweep.id)
    assert sweep.total_jobs > 16
    jobs = list(client.sweeps.jobs(sweep.id))
    assert len(jobs) == sweep.total_jobs and any(j.is_baseline for j in jobs)
    assert {j.spec["model"]["arch"] for j in jobs} == {"swin_tiny_cifar"}
    assert client.sweeps.wait(sweep.id, timeout=600).status in ("cancelled", "partial", "failed")


def test_the_study_job_is_the_study():
    body = yaml.safe_load((EXAMPLES / "study-job.yaml").read_text())
    assert body["algorithm"] == "c-ttv2" and body["model"]["arch"] == "swin_tiny_cifar"
    assert body["data"]["dataset"] == "cifar100" and body["device"]["family"].startswith("ReRam")


def run_example(
    live, token, *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")},
        **(env or {}),
        "CTTV2_URL": live.url,
        "CTTV2_TOKEN": token,
    }
    res = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert res.returncode == 0, f"{args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.mark.slow
def test_quickstart_notebook_script(live, token, tmp_path):
    out = tmp_path / "out"
    res = run_example(live, token, "examples/quickstart.py", env={"QUICKSTART_OUT": str(out)})
    assert "test accuracy" in res.stdout and "c-TTv2" in res.stdout and "vs digital" in res.stdout
    assert (out / "weights.safetensors").stat().st_size > 0
    assert "train_loss" in res.stdout  # the metrics frame


@pytest.mark.slow
def test_pretrain_finetune_chain_on_the_demo_files(live, token):
    res = run_example(
        live,
        token,
        "examples/chain.py",
        "--pretrain",
        "examples/demo-pretrain.yaml",
        "--finetune",
        "examples/demo-job.yaml",
        *SHORT,
    )
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    assert [r[2] for r in rows] == ["fp", "c-ttv2", "fp"], res.stdout
    pre_id = int(rows[0][0])
    from cttv2_client import Client

    with Client(live.url, token) as client:
        for job_id in (int(rows[1][0]), int(rows[2][0])):
            job = client.jobs.get(job_id)
            assert job.status == "succeeded" and job.spec["model"]["pretrained"] == {"job": pre_id}


@pytest.mark.slow
def test_demo_sweep_through_the_sdk(client):
    """examples/demo-sweep.yaml with one seed and short jobs: submit, wait, jobs, report."""
    quick = {"base.training.epochs": 1, "base.data.train_per_class": 20, "base.data.test_per_class": 8, "seeds": [0]}
    sweep = client.sweeps.submit(EXAMPLES / "demo-sweep.yaml", overrides=quick)
    grid = yaml.safe_load((EXAMPLES / "demo-sweep.yaml").read_text())["grid"]
    n_points = 1
    for values in grid.values():
        n_points *= len(values)
    assert sweep.total_jobs == n_points + 1  # one seed: the grid plus one digital baseline
    seen = []
    done = client.sweeps.wait(sweep.id, timeout=1200, on_progress=seen.append, progress_bar=False)
    assert done.status == "succeeded" and done.counts.succeeded == sweep.total_jobs
    assert seen[-1].done and not seen[0].done
    jobs = list(client.sweeps.jobs(sweep.id, page_size=2))
    assert len(jobs) == sweep.total_jobs and sum(j.is_baseline for j in jobs) == 1
    assert all(j.sweep_id == sweep.id and j.status == "succeeded" for j in jobs)
    assert sweep.id in [s.id for s in client.sweeps.list()]

    report = client.sweeps.report(sweep.id)
    assert report.complete and report.axes == list(grid) and len(report.rows) == n_points
    base = report.baseline.mean_test_error
    for row in report.rows:
        assert row.n_finished == row.n_seeds == 1
        assert row.delta_vs_baseline == pytest.approx(row.mean_test_error - base)
    csv = client.sweeps.report(sweep.id, "csv").splitlines()
    assert all(axis in csv[0] for axis in grid) and len(csv) >= 1 + n_points
    assert client.sweeps.report(sweep.id, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report.to_pandas()) == n_points
