"""The SDK installs alone into a clean virtualenv (httpx + pydantic, nothing of the server) and
works there against the live stack, with its optional extras absent."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.specs import TINY_FP
from tests.support.venvs import SERVER_SIDE, build_sdk_wheel, make_venv, pip_install

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
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(build_sdk_wheel(tmp_path)))

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
    # The `cttv2` script comes with the SDK, but its commands need the `cli` extra: it says so.
    res = subprocess.run([str(python.parent / "cttv2"), "--help"], env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 1 and "pip install 'cttv2-client[cli]'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
