"""`cttv2 export mlflow`: copy finished jobs into an MLflow tracking server or store, one run
per job (params: the spec, flattened; tags; per-epoch metrics; curves.png, result.json and
weights.safetensors as artifacts). Needs the `export` extra (mlflow-skinny), imported only
when the command runs.

A job is found again by its run's tag `cttv2.job_id`: exporting it twice skips it (--force
deletes that run and writes a new one). A run left unfinished by an export that broke off
(its MLflow status still RUNNING) is replaced without --force."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import click

from cttv2_client import Client, CTTV2Error, Job
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import EXIT_FAILED, EXIT_USAGE, connection, fail

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXTRA_HINT = "pip install 'cttv2-client[export]' (or: pip install mlflow-skinny)"
# The job files a run gets, when the job has them.
ARTIFACTS = ("curves.png", "result.json", "weights.safetensors")
# A job's status -> the MLflow run's.
RUN_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
JOB_TAG = "cttv2.job_id"
# MLflow's limits (mlflow.utils.validation), in case the installed version lacks the names.
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000


@cli.group()
def export() -> None:
    """Copy jobs into other tools (MLflow)."""


@export.command("mlflow")
@click.argument("job_ids", metavar="[JOB]...", nargs=-1, type=int)
@click.option("--sweep", "sweep_id", type=int, default=None, help="every job of this sweep (instead of JOBs)")
@click.option(
    "--tracking-uri",
    required=True,
    envvar="MLFLOW_TRACKING_URI",
    metavar="URI",
    help="MLflow tracking server or store: http://host:5000, sqlite:///mlflow.db, file:///path/mlruns "
    "(default: $MLFLOW_TRACKING_URI)",
)
@click.option("--experiment", default="cttv2", show_default=True, help="MLflow experiment (created if missing)")
@click.option("--force", is_flag=True, help="replace the run of a job exported before (default: skip it)")
@connection
def export_mlflow(
    client: Client,
    job_ids: tuple[int, ...],
    sweep_id: int | None,
    tracking_uri: str,
    experiment: str,
    force: bool,
) -> None:
    """Write finished jobs (JOB ids, or a --sweep's) as MLflow runs: params = the job's spec
    (dotted names, e.g. training.lr), tags cttv2.*, metrics per epoch, and curves.png,
    result.json, weights.safetensors as artifacts. A job exported before is skipped."""
    if bool(job_ids) == (sweep_id is not None):
        raise click.UsageError("give JOB ids or --sweep ID (one of the two)")
    mlflow = _mlflow_client(tracking_uri)
    try:
        experiment_id = _experiment_id(mlflow, experiment)
    except Exception as exc:  # noqa: BLE001 - MLflow's errors (unreachable server, bad store): one line
        fail(f"MLflow at {tracking_uri}: {_one_line(exc)}")
    listed: dict[int, Job | None] = dict.fromkeys(job_ids)
    if sweep_id is not None:  # in the order they were made
        listed = {j.id: j for j in sorted(client.sweeps.jobs(sweep_id), key=lambda j: j.id)}
    tally = Tally()
    for job_id, known in listed.items():
        try:
            job = known or client.jobs.get(job_id)
            line = export_job(client, mlflow, experiment_id, job, force=force, tally=tally)
        except CTTV2Error as exc:
            tally.errors += 1
            line = f"job {job_id}: error: {exc}"
        except Exception as exc:  # noqa: BLE001 - an MLflow failure: report it, go on with the next job
            tally.errors += 1
            line = f"job {job_id}: MLflow error: {_one_line(exc)}"
        click.echo(line)
    click.echo(
        f"{tally.exported} exported, {tally.skipped} skipped (exported before), "
        f"{tally.unfinished} not finished, {tally.errors} errors: experiment {experiment!r} "
        f"(id {experiment_id}) at {tracking_uri}"
    )
    if tally.errors:
        sys.exit(EXIT_FAILED)


@dataclass
class Tally:
    exported: int = 0
    skipped: int = 0
    unfinished: int = 0
    errors: int = 0


def _mlflow_client(tracking_uri: str) -> MlflowClient:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        fail(f"`cttv2 export mlflow` needs MLflow, from the `export` extra: {EXTRA_HINT}", EXIT_USAGE)
    if "://" not in tracking_uri or tracking_uri.startswith("file:"):
        # MLflow 3 refuses its local file store (maintenance mode) unless told: naming one
        # here is that choice. A database (sqlite:///...) or a server works as is.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except Exception as exc:
        fail(f"MLflow at {tracking_uri}: {_one_line(exc)}")
        raise  # not reached: fail() exits


def _experiment_id(mlflow: MlflowClient, name: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage != "active":
            fail(f"MLflow experiment {name!r} is deleted: restore it or give another --experiment")
        return str(found.experiment_id)
    return str(mlflow.create_experiment(name))


def export_job(client: Client, mlflow: MlflowClient, experiment_id: str, job: Job, *, force: bool, tally: Tally) -> str:
    """Write one job as a run (or skip it); returns the line to print."""
    if job.status not in RUN_STATUS:
        tally.unfinished += 1
        return f"job {job.id}: {job.status}, not finished; not exported"
    existing = mlflow.search_runs([experiment_id], filter_string=f"tags.`{JOB_TAG}` = '{job.id}'")
    complete = [r for r in existing if r.info.status != "RUNNING"]  # RUNNING: an export that broke off
    if complete and not force:
        tally.skipped += 1
        return f"job {job.id}: skipped, exported before as run {complete[0].info.run_id} (--force replaces it)"
    for run in existing:
        mlflow.delete_run(run.info.run_id)

    from mlflow.entities import Metric, Param

    run = mlflow.create_run(
        experiment_id,
        start_time=_ms(job.started_at or job.created_at),
        tags=run_tags(job, client.base_url),
        run_name=job.name or f"job-{job.id}",
    )
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in spec_params(job.spec).items()]
    for i in range(0, len(params), PARAMS_PER_BATCH):
        mlflow.log_batch(run_id, params=params[i : i + PARAMS_PER_BATCH])
    stamp = _ms(job.finished_at or datetime.now(timezone.utc))
    metrics = [
        Metric(m.key, m.value, stamp, m.epoch if m.epoch is not None else m.step) for m in client.jobs.metrics(job.id)
    ]
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        mlflow.log_batch(run_id, metrics=metrics[i : i + METRICS_PER_BATCH])
    present = {a.name for a in client.artifacts.list(job.id)}
    files = [name for name in ARTIFACTS if name in present]
    if files:
        with tempfile.TemporaryDirectory(prefix="cttv2-export-") as tmp:
            for name in files:
                path = client.artifacts.download(job.id, name, Path(tmp) / name)
                mlflow.log_artifact(run_id, str(path))
    mlflow.set_terminated(run_id, RUN_STATUS[job.status], end_time=_ms(job.finished_at))
    tally.exported += 1
    what = "replaced" if existing else "exported"
    return (
        f"job {job.id}: {what} as run {run_id} ({len(params)} params, {len(metrics)} metric points, "
        f"{', '.join(files) or 'no files'})"
    )


def run_tags(job: Job, server: str) -> dict[str, str]:
    tags = {
        JOB_TAG: str(job.id),
        "cttv2.status": job.status,
        "cttv2.algorithm": job.algorithm or "",
        "cttv2.server": server,
        "mlflow.runName": job.name or f"job-{job.id}",
    }
    if job.sweep_id is not None:
        tags["cttv2.sweep_id"] = str(job.sweep_id)
    if job.tags:
        tags["cttv2.tags"] = ",".join(job.tags)
    if job.error is not None:
        tags["cttv2.error"] = f"{job.error.code}: {job.error.message}"[:TAG_VALUE_MAX]
    return tags


def spec_params(spec: Mapping[str, Any]) -> dict[str, str]:
    """The spec as MLflow params: dotted names, string values (lists as JSON), each cut to
    MLflow's longest param value."""
    limit = _param_value_max()
    out = {}
    for key, value in flatten(spec).items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out[key] = text[:limit]
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"device": {"sp_skew": 0.1}} -> {"device.sp_skew": 0.1}; an empty section is kept as {}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _param_value_max() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:
        return PARAM_VALUE_MAX
    return int(MAX_PARAM_VAL_LENGTH)


@overload
def _ms(when: datetime) -> int: ...
@overload
def _ms(when: datetime | None) -> int | None: ...
def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)
