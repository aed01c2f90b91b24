"""docker-compose.yml: valid against the Compose schema, the services the deployment needs, and
commands that are real `cttv2` entry points. No Docker engine here: the file is checked as data,
the commands through click."""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DIRS = {
    "CTTV2_DATA_DIR": "data",
    "CTTV2_WEIGHTS_DIR": "weights",
}
WORKER_HOST = ROOT / "docker" / "worker-host.compose.yml"
CTTV2_SERVICES = ("migrate", "api", "worker-gpu0", "worker-cpu")
WORKERS = ("worker-gpu0", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate_schema(data: dict) -> None:
    """Validate against models generated from the official compose-spec JSON schema (unknown
    keys are errors, so a misspelt `healthchek` fails). Top-level `x-` keys are Compose
    extensions the generated models do not know; their content is merged into services."""
    models = pytest.importorskip(
        "compose_pydantic.models", reason="compose-pydantic not installed (pip install .[dev])"
    )
    models.ComposeSpecification(**{k: v for k, v in data.items() if not k.startswith("x-")})


def test_compose_is_valid_against_the_compose_schema(compose):
    validate_schema(copy.deepcopy(compose))


def test_schema_check_catches_a_misspelt_key(compose):
    bad = copy.deepcopy(compose)
    bad["services"]["api"]["healthchek"] = bad["services"]["api"].pop("healthcheck")
    with pytest.raises(Exception, match="healthchek"):
        validate_schema(bad)


def test_all_services_present(compose):
    assert set(compose["services"]) >= {"postgres", "redis", *CTTV2_SERVICES}


def test_long_running_services_have_healthchecks(compose):
    for name, service in compose["services"].items():
        if name in ("migrate", "minio-bucket"):
            assert service.get("restart") == "no", f"{name} is one-shot"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_redis_persists_and_never_evicts(compose):
    command = compose["services"]["redis"]["command"]
    args = dict(zip(command[1::2], command[2::2]))
    assert command[0] == "redis-server"
    assert args["--appendonly"] == "yes"
    assert args["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])


def test_images_pinned(compose):
    for name in ("postgres", "redis"):
        image = compose["services"][name]["image"]
        assert re.fullmatch(r"[a-z]+:\d+\.\d+(\.\d+)?-bookworm", image), image


def test_named_volumes_mounted_where_the_settings_point(compose):
    assert {"objects", "data", "weights", "pgdata", "redisdata"} <= set(compose["volumes"])
    for name in ("api", *WORKERS):
        service = compose["services"][name]
        mounts = dict(v.split(":", 1) for v in service["volumes"])
        for env_name, volume in DIRS.items():
            assert mounts[volume] == service["environment"][env_name], (name, env_name)


def test_settings_and_secrets(compose):
    for name in CTTV2_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["CTTV2_DATABASE_URL"].startswith("postgresql+psycopg://cttv2:")
        assert env["CTTV2_DATABASE_URL"].endswith("@postgres:5432/cttv2")
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/0", env["CTTV2_BROKER_URL"])
        # Secrets come from the environment (.env) and compose refuses to start without them.
        assert re.fullmatch(r"\$\{CTTV2_TOKEN_PEPPER:\?[^}]+\}", env["CTTV2_TOKEN_PEPPER"])
        assert "${POSTGRES_PASSWORD:?" in env["CTTV2_DATABASE_URL"]


def test_start_order(compose):
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", *WORKERS):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["minio-bucket"]["condition"] == "service_completed_successfully", name
    assert services["minio-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_gpu_worker_reserves_one_gpu_and_requires_cuda(compose):
    worker = compose["services"]["worker-gpu0"]
    assert worker["profiles"] == ["gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["device_ids"] == ["0"]
    assert device["capabilities"] == ["gpu"]
    assert worker["environment"]["CTTV2_DEVICE"] == "cuda"


def test_cpu_worker_profile(compose):
    worker = compose["services"]["worker-cpu"]
    assert worker["profiles"] == ["cpu"]
    assert "deploy" not in worker
    assert worker["environment"]["CTTV2_DEVICE"] == "cpu"
    # Both workers run the same image and command; only the device differs.
    gpu = compose["services"]["worker-gpu0"]
    assert worker["image"] == gpu["image"]
    assert worker["command"] == gpu["command"] == ["cttv2", "worker"]


def test_builds_use_the_repo_dockerfiles(compose):
    expected = {
        "migrate": "docker/api.Dockerfile",
        "api": "docker/api.Dockerfile",
        "worker-gpu0": "docker/worker.Dockerfile",
        "worker-cpu": "docker/worker.Dockerfile",
    }
    for name, dockerfile in expected.items():
        build = compose["services"][name]["build"]
        assert build == {"context": ".", "dockerfile": dockerfile}
        assert (ROOT / dockerfile).is_file()


def test_healthcheck_commands_parse():
    """Every `cttv2-healthcheck ...` in compose is valid for the real argument parser."""
    healthcheck = load_module("cttv2_healthcheck", ROOT / "docker" / "healthcheck.py")
    data = yaml.safe_load(COMPOSE.read_text())
    checked = 0
    for service in data["services"].values():
        test = service.get("healthcheck", {}).get("test", [])
        if len(test) > 1 and test[1] == "cttv2-healthcheck":
            healthcheck.build_parser().parse_args(test[2:])
            checked += 1
    assert checked == len(CTTV2_SERVICES) - 1  # all but the one-shot migrate


@pytest.mark.parametrize("service", CTTV2_SERVICES)
def test_service_command_is_a_real_cttv2_command(compose, service):
    command = compose["services"][service]["command"]
    assert command[0] == "cttv2"
    if importlib.util.find_spec("cttv2_cli.server") is None:
        pytest.skip("cttv2_cli/server.py (serve, worker, db) is not in this tree yet")
    from click.testing import CliRunner

    import cttv2_cli.server  # noqa: F401  (registers serve/worker/db on the group)
    from cttv2_cli.main import cli

    # Options before --help are parsed, so an unknown option or command fails here.
    result = CliRunner().invoke(cli, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_gpu_workers_generator(compose, tmp_path):
    gpu_workers = load_module("gpu_workers", ROOT / "docker" / "gpu_workers.py")
    extra = gpu_workers.gpu_worker_services(compose, 3)
    assert list(extra) == ["worker-gpu1", "worker-gpu2"]
    for gpu, name in ((1, "worker-gpu1"), (2, "worker-gpu2")):
        service = extra[name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["device_ids"] == [str(gpu)]
        assert service["hostname"] == name
        assert service["environment"]["CTTV2_DEVICE"] == "cuda"
    # The template itself is untouched.
    template = compose["services"]["worker-gpu0"]["deploy"]["resources"]["reservations"]
    assert template["devices"][0]["device_ids"] == ["0"]
    assert gpu_workers.gpu_worker_services(compose, 1) == {}


def test_gpu_workers_override_output_merges_into_a_valid_file(tmp_path):
    import subprocess

    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "gpu_workers.py"), "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    override = yaml.safe_load(out)
    merged = yaml.safe_load(COMPOSE.read_text())
    merged["services"].update(override["services"])
    validate_schema(merged)
    ids = [
        s["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"][0]
        for n, s in merged["services"].items()
        if n.startswith("worker-gpu")
    ]
    assert sorted(ids) == ["0", "1"]


def test_job_files_live_in_minio_and_no_folder_is_shared_for_them(compose):
    """The store is MinIO (S3): the API and the workers mount no artifacts volume, so a worker
    on another host needs nothing from this one but PostgreSQL, Redis and MinIO."""
    services = compose["services"]
    assert any(v.endswith(":/data") and v.startswith("objects:") for v in services["minio"]["volumes"])
    assert "mc mb --ignore-existing store/cttv2" in services["minio-bucket"]["command"][0]
    for name in CTTV2_SERVICES:
        env = services[name]["environment"]
        assert env["CTTV2_ARTIFACT_URL"] == "s3://cttv2/artifacts", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["AWS_ACCESS_KEY_ID"].startswith("${MINIO_ROOT_USER:?"), name
        assert env["AWS_SECRET_ACCESS_KEY"].startswith("${MINIO_ROOT_PASSWORD:?"), name
        assert "CTTV2_ARTIFACT_DIR" not in env, name
        assert not [v for v in services[name].get("volumes", []) if "artifacts" in v], name
    # The settings parse: the URL is one the service accepts.
    from service.core.config import Settings

    assert Settings(artifact_url="s3://cttv2/artifacts").s3_location == ("cttv2", "artifacts")


def test_worker_host_file_needs_only_the_database_the_broker_and_the_store():
    data = yaml.safe_load(WORKER_HOST.read_text())
    validate_schema(copy.deepcopy(data))
    (name,) = data["services"]
    worker = data["services"][name]
    env = worker["environment"]
    assert worker["command"] == ["cttv2", "worker"]
    assert worker["build"] == {"context": "..", "dockerfile": "docker/worker.Dockerfile"}
    assert "@${CTTV2_LAB_HOST:?" in env["CTTV2_DATABASE_URL"] and "@${CTTV2_LAB_HOST:?" in env["CTTV2_BROKER_URL"]
    assert env["AWS_ENDPOINT_URL"].startswith("http://${CTTV2_LAB_HOST:?")
    assert env["CTTV2_ARTIFACT_URL"] == "s3://cttv2/artifacts"
    assert "CTTV2_TOKEN_PEPPER" not in env, "a worker checks no API token: its host does not get the secret"
    mounts = dict(v.split(":", 1) for v in worker["volumes"])
    assert set(mounts) == {"data", "weights"}, "inputs only: no job files on a worker host's disk to share"
    for env_name, volume in DIRS.items():
        assert mounts[volume] == env[env_name]
