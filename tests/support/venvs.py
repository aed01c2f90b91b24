"""Clean virtualenvs with the SDK installed from this checkout, for the install tests
(tests/sdk/test_install.py: the SDK alone; tests/cli/test_cli_pythons.py: `cttv2-client[cli]`
on every supported Python). Dependencies come from PyPI; the checkout gets no build files."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.stack import ROOT

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
# What a client install must not bring in.
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
# The pyenv versions the project is tested on: what `pyenv install` should fetch when one is missing.
PYENV_VERSIONS = {"3.10": "3.10.13", "3.11": "3.11.7", "3.12": "3.12.1", "3.13": "3.13.0"}


def build_sdk_wheel(dest: Path) -> Path:
    """Build the SDK's wheel from a copy of sdk/ (so the checkout gets no build/ or egg-info)."""
    src = dest / "sdk-src"
    shutil.copytree(ROOT / "sdk", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = dest / "dist"
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("cttv2_client-*.whl"))


def make_venv(dest: Path, python: str | os.PathLike[str] = sys.executable) -> Path:
    """A virtualenv without pip (this interpreter's pip installs into it); returns its python."""
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(dest)], check=True, capture_output=True)
    return dest / "bin" / "python"


def pip_install(venv_python: Path, *requirements: str, timeout: float = 600) -> None:
    res = subprocess.run(
        [*PIP, "--python", str(venv_python), "install", *requirements],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert res.returncode == 0, f"pip install {' '.join(requirements)} into {venv_python} failed:\n{res.stderr}"


def find_python(version: str) -> str | None:
    """An interpreter of `version` ("3.13"): pyenv's newest install of it, else python3.13 on
    PATH (checked: a pyenv shim exists for versions that are not installed)."""
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    if shutil.which("pyenv"):
        res = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if res.returncode == 0:
            roots.insert(0, res.stdout.strip())
    candidates: list[str] = []
    for root in filter(None, roots):
        found = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", "python"))
        candidates += sorted(found, key=_patch_level, reverse=True)  # 3.13.1 before 3.13.0
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        res = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode == 0 and res.stdout.strip() == version:
            return candidate
    return None


def _patch_level(path: str) -> int:
    patch = Path(path).parents[1].name.split(".")[-1]  # .../versions/3.13.1/bin/python -> 1
    return int(patch) if patch.isdigit() else -1


def missing_python_message(version: str) -> str:
    pinned = PYENV_VERSIONS.get(version, f"{version}.x")
    return (
        f"Python {version} is not installed: `pyenv install {pinned}` (pyenv finds it under "
        f"$(pyenv root)/versions), or put python{version} on PATH"
    )
