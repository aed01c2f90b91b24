"""The SDK installs alone into a clean virtualenv (httpx + pydantic, nothing of the server) and
works there against the live stack, with its optional extras absent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.specs import TINY_FP
from tests.support.stack import ROOT

SERVER_SIDE = {
    "torch",
    "aihwkit",
    "timm",
    "torchvision",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "celery",
    "redis",
    "psycopg",
    "cttv2",
}

PROBE = r"""
import importlib.metadata as md, json, sys
from cttv2_client import Client, SpecFileError
client = Client()
job = client.jobs.get(int(sys.argv[1]))
done = client.jobs.wait(job.id, timeout=300, progress_bar=True)   # no rich here: the text fallback
try:
    client.jobs.submit(sys.argv[2])
    yaml_error = None
except SpecFileError as exc:
    yaml_error = str(exc)
print(json.dumps({
    "dists": sorted(d.metadata["Name"].lower() for d in md.distributions()),
    "status": done.status,
    "yaml_error": yaml_error,
}))
"""


@pytest.mark.slow
def test_the_sdk_installs_alone_and_works_without_its_extras(live, client, token, tmp_path):
    job = client.jobs.submit(TINY_FP)
    # Build the wheel from a copy, so the checkout gets no build/ or egg-info.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "sdk", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("cttv2_client-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", str(wheel)], check=True, capture_output=True)

    (tmp_path / "job.yaml").write_text("name: x\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CTTV2_URL": live.url, "CTTV2_TOKEN": token}
    res = subprocess.run(
        [str(python), "-c", PROBE, str(job.id), str(tmp_path / "job.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    dists = set(out["dists"])
    assert {"cttv2-client", "httpx", "pydantic"} <= dists
    assert not dists & SERVER_SIDE, dists & SERVER_SIDE
    assert not dists & {"rich", "pyyaml", "pandas", "numpy"}  # extras stay optional
    assert out["status"] == "succeeded"
    assert f"job {job.id}" in res.stderr and "succeeded" in res.stderr  # the plain progress line
    assert "pip install 'cttv2-client[yaml]'" in out["yaml_error"]
