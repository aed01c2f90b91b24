"""Every example in examples/: the CPU-sized ones run against the live stack (with fewer epochs),
the GPU-sized ones pass the server's own validation, so none of them can rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.support.stack import ROOT

EXAMPLES = ROOT / "examples"
GPU_SIZED_JOBS = ("study-pretrain.yaml", "study-job.yaml")
SHORT = ["--set", "training.epochs=1", "--set", "data.train_per_class=30", "--set", "data.test_per_class=10"]


def validate_job_like_the_api(body: dict) -> None:
    """What POST /v1/jobs checks before queueing (service.jobs.service.resolve_spec), minus
    the database lookups: schema, ranges, knob/family fit, arch tiling, class names."""
    from cttv2_engine.spec import JobSpec
    from service.jobs.schemas import JobCreate
    from service.jobs.service import check_semantics

    request = JobCreate.model_validate(body)
    check_semantics(JobSpec.model_validate(request.model_dump(mode="json", exclude={"resume_from"})))


def test_every_example_is_documented():
    readme = (EXAMPLES / "README.md").read_text()
    documented = set(re.findall(r"`([\w.-]+\.(?:yaml|py))`", readme))
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".py")}
    assert present <= documented, present - documented


@pytest.mark.parametrize("name", GPU_SIZED_JOBS)
def test_gpu_sized_jobs_pass_the_servers_validation(name):
    body = yaml.safe_load((EXAMPLES / name).read_text())
    validate_job_like_the_api(body)


def test_the_study_job_is_the_study(tmp_path):
    body = yaml.safe_load((EXAMPLES / "study-job.yaml").read_text())
    assert body["algorithm"] == "c-ttv2" and body["model"]["arch"] == "swin_tiny_cifar"
    assert body["data"]["dataset"] == "cifar100" and body["device"]["family"].startswith("ReRam")


def run_example(live, token, *args: str, env: dict[str, str] | None = None,
                timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CTTV2_")}, **(env or {}),
           "CTTV2_URL": live.url, "CTTV2_TOKEN": token}
    res = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
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
    res = run_example(live, token, "examples/chain.py", "--pretrain", "examples/demo-pretrain.yaml",
                      "--finetune", "examples/demo-job.yaml", *SHORT)
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    assert [r[2] for r in rows] == ["fp", "c-ttv2", "fp"], res.stdout
    pre_id = int(rows[0][0])
    from cttv2_client import Client

    with Client(live.url, token) as client:
        for job_id in (int(rows[1][0]), int(rows[2][0])):
            job = client.jobs.get(job_id)
            assert job.status == "succeeded" and job.spec["model"]["pretrained"] == {"job": pre_id}
