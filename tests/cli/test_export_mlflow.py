"""`cttv2 export mlflow` against the live stack, into a local MLflow file store, read back with
MLflow's own client: one run per finished job with the spec as params, the cttv2 tags, the
metric history per epoch and the job's files; a second export skips them, --force replaces."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
from cttv2_client import Client
from cttv2_client.cli.export import spec_params

from tests.cli.test_user_commands import CLI, assert_one_line_error
from tests.support.specs import TINY_FP, spec

mlflow_tracking = pytest.importorskip("mlflow.tracking")

FILES = {"curves.png", "result.json", "weights.safetensors"}
SWEEP = {
    "name": "export-sweep",
    "base": spec(TINY_FP, name="export"),
    "grid": {"training.lr": [0.003, 0.002]},
    "seeds": [1],
    "baseline": False,
}


@pytest.fixture(scope="module")
def token(live) -> str:
    return live.create_user()


@pytest.fixture(scope="module")
def cli(live, token, tmp_path_factory) -> CLI:
    return CLI(tmp_path_factory.mktemp("export-home"), live.url, token)


@pytest.fixture(scope="module")
def sdk(live, token):
    with Client(live.url, token) as client:
        yield client


@pytest.fixture(scope="module")
def sweep_jobs(sdk):
    """A sweep of two tiny jobs, run to the end."""
    sweep = sdk.sweeps.submit(SWEEP)
    sweep = sdk.sweeps.wait(sweep.id, 300)
    jobs = sorted(sdk.sweeps.jobs(sweep.id), key=lambda j: j.id)
    assert [j.status for j in jobs] == ["succeeded", "succeeded"], jobs
    return sweep, jobs


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A file store, and MLflow's client for it (MLflow 3 wants the file store allowed)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    return uri, mlflow_tracking.MlflowClient(tracking_uri=uri)


def runs_by_job(mlflow, experiment: str) -> dict[int, object]:
    exp = mlflow.get_experiment_by_name(experiment)
    runs = mlflow.search_runs([exp.experiment_id])
    by_job = {int(r.data.tags["cttv2.job_id"]): r for r in runs}
    assert len(by_job) == len(runs), "one run per job"
    return by_job


def test_export_writes_one_run_per_job_and_skips_them_the_second_time(cli, sdk, sweep_jobs, store):
    sweep, jobs = sweep_jobs
    uri, mlflow = store
    ids = [str(j.id) for j in jobs]

    res = cli("export", "mlflow", *ids, "--tracking-uri", uri, "--experiment", "e2e")
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3, res.stdout
    for line, job in zip(lines, jobs):
        assert line.startswith(f"job {job.id}: exported as run "), res.stdout
        assert "curves.png, result.json, weights.safetensors" in line, line
    assert lines[2].startswith("2 exported, 0 skipped (exported before), 0 not finished, 0 errors"), lines[2]

    runs = runs_by_job(mlflow, "e2e")
    assert sorted(runs) == [j.id for j in jobs]
    for job in jobs:
        run = runs[job.id]
        assert run.info.run_id in lines[jobs.index(job)]
        assert run.info.status == "FINISHED"
        tags = run.data.tags
        assert tags["cttv2.status"] == "succeeded" and tags["cttv2.algorithm"] == "fp"
        assert tags["cttv2.sweep_id"] == str(sweep.id)
        name = job.name or f"job-{job.id}"
        assert tags["mlflow.runName"] == name and run.info.run_name == name
        # The spec, flattened with dotted names, values as text.
        params = run.data.params
        assert params == spec_params(job.spec)
        assert params["training.lr"] == str(job.spec["training"]["lr"])
        assert params["data.classes"] == "[0, 1, 2]" and params["model.arch"] == "swin_micro"
        # Every metric's history, step = epoch, equal to the API's.
        api_metrics = sdk.jobs.metrics(job.id)
        assert api_metrics.keys and set(run.data.metrics) == set(api_metrics.keys)
        for key in api_metrics.keys:
            history = sorted((m.step, m.value) for m in mlflow.get_metric_history(run.info.run_id, key))
            expected = sorted((m.epoch, m.value) for m in api_metrics if m.key == key)
            assert history == expected, key
        # The job's files, byte for byte.
        assert {f.path for f in mlflow.list_artifacts(run.info.run_id)} == FILES
        folder = Path(urlparse(run.info.artifact_uri).path)
        for artifact in sdk.artifacts.list(job.id):
            if artifact.name in FILES:
                assert hashlib.sha256((folder / artifact.name).read_bytes()).hexdigest() == artifact.sha256

    # Again, by sweep: nothing new.
    res = cli("export", "mlflow", "--sweep", str(sweep.id), "--tracking-uri", uri, "--experiment", "e2e")
    lines = res.stdout.strip().splitlines()
    for line, job in zip(lines, jobs):
        assert line == (
            f"job {job.id}: skipped, exported before as run {runs[job.id].info.run_id} (--force replaces it)"
        )
    assert lines[2].startswith("0 exported, 2 skipped"), lines[2]
    assert {j: r.info.run_id for j, r in runs_by_job(mlflow, "e2e").items()} == {
        j: r.info.run_id for j, r in runs.items()
    }

    # --force: a new run in place of the old one.
    res = cli("export", "mlflow", ids[0], "--force", "--tracking-uri", uri, "--experiment", "e2e")
    assert res.stdout.startswith(f"job {jobs[0].id}: replaced as run "), res.stdout
    after = runs_by_job(mlflow, "e2e")
    assert after[jobs[0].id].info.run_id != runs[jobs[0].id].info.run_id
    assert after[jobs[1].id].info.run_id == runs[jobs[1].id].info.run_id


def test_unfinished_and_unknown_jobs_are_reported(cli, sdk, store):
    uri, mlflow = store
    long = sdk.jobs.submit(spec(TINY_FP, name="export-long", **{"training.epochs": 200}))
    try:
        res = cli("export", "mlflow", str(long.id), "999999", "--tracking-uri", uri, code=1)
    finally:
        sdk.jobs.cancel(long.id)
    lines = res.stdout.strip().splitlines()
    assert lines[0] in (
        f"job {long.id}: queued, not finished; not exported",
        f"job {long.id}: running, not finished; not exported",
    )
    assert lines[1].startswith("job 999999: error: job 999999 not found"), lines
    assert lines[2].startswith("0 exported, 0 skipped (exported before), 1 not finished, 1 errors: experiment 'cttv2'")
    assert mlflow.search_runs([mlflow.get_experiment_by_name("cttv2").experiment_id]) == []


def test_usage_errors_and_a_missing_mlflow(cli, tmp_path):
    res = cli("export", "mlflow", "--tracking-uri", (tmp_path / "m").as_uri(), code=2)
    assert "give JOB ids or --sweep ID" in res.stderr
    res = cli("export", "mlflow", "1", "--sweep", "2", "--tracking-uri", (tmp_path / "m").as_uri(), code=2)
    assert "give JOB ids or --sweep ID" in res.stderr

    shadow = tmp_path / "no-mlflow"
    shadow.mkdir()
    (shadow / "mlflow.py").write_text("raise ImportError(\"No module named 'mlflow'\")\n")
    without = CLI(tmp_path / "home")
    without.env = {**cli.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(shadow), cli.env.get("PYTHONPATH")]))}
    res = without("export", "mlflow", "1", "--tracking-uri", (tmp_path / "m").as_uri(), code=2)
    assert_one_line_error(
        res, "`cttv2 export mlflow` needs MLflow, from the `export` extra: pip install 'cttv2-client[export]'"
    )
    assert not (tmp_path / "m").exists()
