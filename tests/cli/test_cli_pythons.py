"""`pip install 'cttv2-client[cli]'` gives a working `cttv2` on every Python the SDK supports:
a fresh virtualenv per interpreter (the SDK's wheel from this checkout, its dependencies from
PyPI, nothing of the server), then the user commands against the live stack. A Python that is
not installed fails the test with the `pyenv install` to run, not a skip."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.support.specs import TINY_FP, spec
from tests.support.venvs import (
    SERVER_SIDE,
    build_sdk_wheel,
    find_python,
    make_venv,
    missing_python_message,
    pip_install,
)

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
JOB = spec(TINY_FP, name="cli-python", **{"training.epochs": 1})
DISTS = (
    "import importlib.metadata as md; print(' '.join(sorted(d.metadata['Name'].lower() for d in md.distributions())))"
)
# (httpx imports click and rich itself when they are installed, for its own command line.)
LIGHT = "import sys, cttv2_client; print(sorted({'cttv2_client.cli', 'yaml'} & set(sys.modules)))"


@pytest.fixture(scope="module")
def venvs(tmp_path_factory) -> dict[str, Path | str]:
    """Python version -> the `cttv2` script of a fresh venv with cttv2-client[cli], or the
    reason there is none. The venvs are made side by side (each pip run waits on PyPI)."""
    base = tmp_path_factory.mktemp("cli-pythons")
    wheel = build_sdk_wheel(base)

    def install(version: str) -> Path | str:
        python = find_python(version)
        if python is None:
            return missing_python_message(version)
        venv_python = make_venv(base / f"venv-{version}", python)
        pip_install(venv_python, f"{wheel}[cli]")
        return venv_python.parent / "cttv2"

    with ThreadPoolExecutor(len(PYTHONS)) as pool:
        return dict(zip(PYTHONS, pool.map(install, PYTHONS)))


@pytest.fixture(scope="module")
def env(live, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("cli-pythons-home")
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "COLUMNS": "200",
        "CTTV2_URL": live.url,
        "CTTV2_TOKEN": live.create_user(),
    }


@pytest.fixture(scope="module")
def job_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-pythons-job") / "job.yaml"
    path.write_text(yaml.safe_dump(JOB))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("version", PYTHONS)
def test_the_cli_installs_and_works_on_python(version, venvs, env, job_file):
    script = venvs[version]
    if isinstance(script, str):
        pytest.fail(script)

    def cttv2(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [str(script), *args], env=env, cwd=job_file.parent, capture_output=True, text=True, timeout=300, check=False
        )
        assert res.returncode == code, (
            f"[python {version}] cttv2 {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        )
        assert "Traceback" not in res.stderr, res.stderr
        return res

    python = str(script.parent / "python")
    probe = {"cwd": job_file.parent, "capture_output": True, "text": True, "check": True}  # not the checkout's cwd
    version_line = subprocess.run([python, "-c", "import sys; print(sys.version)"], **probe)
    assert version_line.stdout.startswith(f"{version}."), version_line.stdout
    dists = set(subprocess.run([python, "-c", DISTS], **probe).stdout.split())
    assert {"cttv2-client", "click", "rich", "pyyaml"} <= dists
    assert not dists & SERVER_SIDE, dists & SERVER_SIDE
    light = subprocess.run([python, "-c", LIGHT], env=env, **probe)
    assert light.stdout.strip() == "[]", "import cttv2_client pulled in the cli extra"

    out = cttv2("--help").stdout
    for command in (
        "login",
        "submit",
        "rerun",
        "wait",
        "jobs",
        "show",
        "logs",
        "cancel",
        "delete",
        "tag",
        "sweep",
        "weights",
        "presets",
    ):
        assert f"  {command} " in out, out
    assert "  serve " not in out and "  worker " not in out  # the server package is not installed
    assert "cttv2-client 0.1" in cttv2("--version").stdout

    presets = json.loads(cttv2("presets", "--json").stdout)
    assert "SoftBoundsReference" in presets["families"] and "ReRamSB" in presets["presets"]

    job = json.loads(cttv2("submit", str(job_file), "--wait", "--json").stdout)
    assert job["status"] == "succeeded" and job["name"] == "cli-python", job
    assert job["id"] in [j["id"] for j in json.loads(cttv2("jobs", "--json").stdout)]
    assert f"job {job['id']} succeeded" in cttv2("wait", str(job["id"])).stdout

    assert cttv2("show", "999999999", code=1).stderr.startswith("cttv2: job 999999999 not found")
    assert cttv2("show", "not-a-number", code=2).returncode == 2
