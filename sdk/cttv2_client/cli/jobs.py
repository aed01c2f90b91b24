"""Job commands: submit, rerun, wait, list (filters, CSV), show, tag, notes, cancel, delete,
watch (live progress), logs, metrics, artifacts, download."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click

from cttv2_client import Client, Job
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import (
    connection,
    exit_for,
    fail,
    json_option,
    make_console,
    parse_sets,
    print_json,
    set_option,
)
from cttv2_client.cli.render import job_panel, jobs_table, metric_text, size_text, summary_line, when
from cttv2_client.jobs import csv_value, job_table


@cli.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--wait", "wait", is_flag=True, help="follow the job until it ends; exit 1 if it fails")
@click.option("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
@json_option
@connection
def submit(
    client: Client, job_file: Path, sets: tuple[str, ...], wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Submit the job spec in JOB_FILE (YAML or JSON)."""
    job = client.jobs.submit(job_file, overrides=parse_sets(sets))
    _report_new_job(client, job, wait, timeout, as_json)


def _report_new_job(client: Client, job: Job, wait: bool, timeout: float | None, as_json: bool) -> None:
    """What submit and rerun print: the new job's id (on stderr with --wait), then, with
    --wait, its outcome; exit 1 if it failed or was cancelled."""
    if not as_json:
        what = f"submitted job {job.id}" + (f" ({job.name})" if job.name else "")
        if job.rerun_of is not None:
            what += f", a rerun of job {job.rerun_of}"
        click.echo(what, err=wait)
    if wait:
        job = _wait(client, job.id, timeout)
    if as_json:
        print_json(job)
    elif wait:
        click.echo(summary_line(job))
    if wait:
        exit_for(job)


def _wait(client: Client, job_id: int, timeout: float | None) -> Job:
    try:
        return client.jobs.wait(job_id, timeout, raise_on_failure=False)
    except KeyboardInterrupt:
        fail(f"stopped waiting; job {job_id} keeps running (cttv2 watch {job_id})", 130)
        raise  # not reached: fail() exits


@cli.command()
@click.argument("job_id", type=int)
@click.option("--wait", "wait", is_flag=True, help="follow the new job until it ends; exit 1 if it fails")
@click.option("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
@json_option
@connection
def rerun(client: Client, job_id: int, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Submit a new job with the same spec as job JOB_ID (its rerun_of names JOB_ID)."""
    job = client.jobs.rerun(job_id)
    _report_new_job(client, job, wait, timeout, as_json)


@cli.command("wait")
@click.argument("job_id", type=int)
@click.option("--timeout", type=float, default=None, help="give up after this many seconds (exit 1)")
@json_option
@connection
def wait_cmd(client: Client, job_id: int, timeout: float | None, as_json: bool) -> None:
    """Wait until a job ends (a progress bar on a terminal), print its outcome; exit 1 if it
    failed or was cancelled, or --timeout passed."""
    job = _wait(client, job_id, timeout)
    if as_json:
        print_json(job)
    else:
        click.echo(summary_line(job))
    exit_for(job)


@cli.command("jobs")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None)
@click.option("--tag", default=None, help="jobs having this tag")
@click.option("--name", default=None, help="jobs whose name starts with this (case-sensitive)")
@click.option("--sweep", type=click.IntRange(1), default=None, help="jobs of this sweep (its id)")
@click.option("--algorithm", default=None, help="jobs of this algorithm (c-ttv2, fp, ...)")
@click.option("--limit", type=click.IntRange(1), default=None, help="show at most N jobs (default 20; with --csv: all)")
@click.option("--all", "show_all", is_flag=True, help="every job (ignores --limit)")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV on stdout: one row per job with its spec (dotted names) and result.<key> columns",
)
@json_option
@connection
def jobs_cmd(
    client: Client,
    status: str | None,
    tag: str | None,
    name: str | None,
    sweep: int | None,
    algorithm: str | None,
    limit: int | None,
    show_all: bool,
    as_csv: bool,
    as_json: bool,
) -> None:
    """Your jobs, newest first; the filters combine (all must hold)."""
    import itertools

    if as_csv and as_json:
        raise click.UsageError("--csv and --json exclude each other")
    if as_csv and limit is None:
        show_all = True
    limit = limit or 20
    it = client.jobs.list(
        status=status,
        tag=tag,
        name=name,
        sweep=sweep,
        algorithm=algorithm,
        page_size=None if show_all else min(limit, 100),
    )
    jobs = list(it if show_all else itertools.islice(it, limit))
    if as_csv:
        columns, rows = job_table(jobs)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([csv_value(row[c]) for c in columns] for row in rows)
    elif as_json:
        print_json(jobs)
    else:
        make_console().print(jobs_table(jobs))


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def show(client: Client, job_id: int, as_json: bool) -> None:
    """One job: status, progress, result or error."""
    job = client.jobs.get(job_id)
    if as_json:
        print_json(job)
    else:
        make_console().print(job_panel(job))


@cli.command()
@click.argument("job_id", type=int)
@click.argument("tags", nargs=-1)
@click.option("--remove", "removed", multiple=True, metavar="TAG", help="remove this tag (repeatable)")
@json_option
@connection
def tag(client: Client, job_id: int, tags: tuple[str, ...], removed: tuple[str, ...], as_json: bool) -> None:
    """Add TAGS to a job (and remove the --remove ones); prints the job's tags."""
    if not tags and not removed:
        raise click.UsageError("give tags to add and/or --remove TAG")
    current = client.jobs.get(job_id).tags
    wanted = [t for t in dict.fromkeys([*current, *tags]) if t not in set(removed)]
    job = client.jobs.update(job_id, tags=wanted)
    if as_json:
        print_json(job)
    else:
        click.echo(f"job {job_id} tags: {', '.join(job.tags) or '(none)'}")


@cli.command()
@click.argument("job_id", type=int)
@click.argument("text")
@json_option
@connection
def notes(client: Client, job_id: int, text: str, as_json: bool) -> None:
    """Set a job's notes to TEXT ("-": read stdin; "": remove them)."""
    if text == "-":
        text = sys.stdin.read()
    job = client.jobs.update(job_id, notes=text)
    if as_json:
        print_json(job)
    else:
        click.echo(f"job {job_id} notes {'saved' if job.notes else 'removed'}")


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def cancel(client: Client, job_id: int, as_json: bool) -> None:
    """Cancel a job (a running one stops at its next batch boundary)."""
    job = client.jobs.cancel(job_id)
    if as_json:
        print_json(job)
    elif job.status == "cancelled":
        click.echo(f"job {job_id} cancelled")
    elif job.done:
        click.echo(f"job {job_id} had already ended ({job.status})")
    else:
        click.echo(f"job {job_id}: cancel requested; it stops at the next batch boundary")


@cli.command()
@click.argument("job_id", type=int)
@connection
def delete(client: Client, job_id: int) -> None:
    """Delete a finished job: its record, metrics, logs and files (a queued or running job
    must be cancelled first)."""
    client.jobs.delete(job_id)
    click.echo(f"job {job_id} deleted")


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def watch(client: Client, job_id: int, as_json: bool) -> None:
    """Follow a job live: a progress bar and one line per metrics report, until it ends.
    Exits 1 if the job failed or was cancelled."""
    client.jobs.get(job_id)  # a clear "not found" before opening the stream
    if as_json:
        for event in client.jobs.events(job_id):
            click.echo(json.dumps(event.model_dump(mode="json"), default=str))
    else:
        _watch_live(client, job_id)
    job = client.jobs.get(job_id)
    if not as_json:
        click.echo(summary_line(job))
    exit_for(job)


def _watch_live(client: Client, job_id: int) -> None:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = make_console()
    with Progress(
        TextColumn(f"[bold]job {job_id}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("", total=None, info="")
        for event in client.jobs.events(job_id):
            data = event.data if isinstance(event.data, dict) else {}
            if event.event == "progress" and data.get("total_steps"):
                info = f"epoch {data.get('epoch')}/{data.get('epochs')}"
                if data.get("images_per_s"):
                    info += f"  {data['images_per_s']:.0f} img/s"
                if data.get("eta_s") is not None:
                    info += f"  ETA {data['eta_s']:.0f}s"
                bar.update(task, total=data["total_steps"], completed=data.get("step", 0), info=info)
            elif event.event == "metrics":
                values = data.get("values") or {}
                shown = "  ".join(f"{k} {metric_text(k, v)}" for k, v in sorted(values.items()))
                bar.console.print(f"epoch {data.get('epoch')} step {data.get('step')}: {shown}")
            elif event.event == "status":
                bar.console.print(
                    f"status: {data.get('status')}" + (f" ({data['reason']})" if data.get("reason") else "")
                )
                bar.update(task, info=str(data.get("status")))


@cli.command()
@click.argument("job_id", type=int)
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines until the job ends")
@click.option("--offset", type=click.IntRange(0), default=0, help="start at this line")
@json_option
@connection
def logs(client: Client, job_id: int, follow: bool, offset: int, as_json: bool) -> None:
    """A job's log lines."""
    if follow:
        for line in client.jobs.follow_logs(job_id, offset):
            click.echo(json.dumps({"line": line}) if as_json else line)
        return
    chunk = client.jobs.logs(job_id, offset)
    if as_json:
        print_json(chunk)
    else:
        for line in chunk.lines:
            click.echo(line)


@cli.command()
@click.argument("job_id", type=int)
@click.option("--keys", default=None, help="comma-separated metric names (default: all)")
@json_option
@connection
def metrics(client: Client, job_id: int, keys: str | None, as_json: bool) -> None:
    """A job's metrics, one row per reported step."""
    from rich.table import Table

    series = client.jobs.metrics(job_id, keys=keys.split(",") if keys else None)
    if as_json:
        print_json(series)
        return
    names = series.keys
    rows: dict[int, dict[str, Any]] = {}
    for m in series:
        rows.setdefault(m.step, {"epoch": m.epoch})[m.key] = m.value
    table = Table()
    for col in ("step", "epoch", *names):
        table.add_column(col, justify="right")
    for step, row in sorted(rows.items()):
        values = (metric_text(k, row[k]) if k in row else "-" for k in names)
        table.add_row(str(step), str(row.get("epoch", "-")), *values)
    make_console().print(table)


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def artifacts(client: Client, job_id: int, as_json: bool) -> None:
    """A job's files (download them with `cttv2 download`)."""
    from rich.table import Table

    items = client.artifacts.list(job_id)
    if as_json:
        print_json(items)
        return
    table = Table()
    for col in ("name", "kind", "size", "sha256", "updated"):
        table.add_column(col)
    for a in items:
        table.add_row(a.name, a.kind or "-", size_text(a.size), (a.sha256 or "-")[:16], when(a.updated_at))
    make_console().print(table)


@cli.command()
@click.argument("job_id", type=int)
@click.argument("name")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="file or directory to save to (default: ./<base name>)",
)
@connection
def download(client: Client, job_id: int, name: str, output: Path | None) -> None:
    """Download artifact NAME of a job (resumable; checked against its sha256)."""
    path = client.artifacts.download(job_id, name, output)
    click.echo(f"saved {path} ({size_text(path.stat().st_size)}, sha256 verified)")
