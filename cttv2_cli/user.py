"""User commands: drive a cttv2 server through the SDK (cttv2_client).

Every command takes --url/--token (else CTTV2_URL / CTTV2_TOKEN, else `cttv2 login`'s config
file). Read commands print rich tables, or JSON with --json. Exit codes: 0 ok, 1 an API error
or a job that failed or was cancelled, 2 a usage error. Errors are one line on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from cttv2_client import (
    Client,
    ConfigError,
    CTTV2Error,
    Job,
    JobError,
    SpecFileError,
    ValidationError,
)

from cttv2_cli.main import cli

EXIT_FAILED = 1
EXIT_USAGE = 2


# -- plumbing ----------------------------------------------------------------------------------
def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps wide tables on one line instead of rich's default 80 columns.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=stream, width=width, soft_wrap=False)


def _fail(message: str, code: int = EXIT_FAILED, details: list[str] | None = None) -> None:
    click.echo(f"cttv2: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn the SDK's exceptions into one readable line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobError as exc:
            _fail(str(exc))
        except ValidationError as exc:
            extra = [str(f) for f in exc.fields[1:]] if len(exc.fields) > 1 else []
            _fail(f"invalid request: {exc.message}", details=extra)
        except (SpecFileError, ConfigError) as exc:
            _fail(str(exc), EXIT_USAGE)
        except CTTV2Error as exc:
            _fail(str(exc))

    return wrapper


def connection(fn: Callable) -> Callable:
    """--url and --token on a command, turned into a `client` argument."""

    @click.option("--url", default=None, metavar="URL", help="server URL (default: $CTTV2_URL or the login config)")
    @click.option("--token", default=None, metavar="TOKEN",
                  help="API token (default: $CTTV2_TOKEN or the login config)")
    @functools.wraps(fn)
    def wrapper(*args: Any, url: str | None, token: str | None, **kwargs: Any) -> Any:
        with Client(url, token) as client:
            return fn(*args, client=client, **kwargs)

    return handle_errors(wrapper)


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")


def _print_json(data: Any) -> None:
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    click.echo(json.dumps(data, indent=2, default=str))


def _parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    """--set training.epochs=3 --set model.pretrained='{job: 7}' (values are YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected PATH=VALUE", param_hint="--set")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def _pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


STATUS_STYLE = {"queued": "yellow", "running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "magenta"}


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _progress_text(job: Job) -> str:
    p = job.progress
    if p is None or p.epoch is None:
        return "-"
    text = f"epoch {p.epoch}/{p.epochs}"
    if p.total_steps:
        text += f" ({100 * (p.step or 0) / p.total_steps:.0f}%)"
    return text


def _jobs_table(jobs: list[Job], title: str | None = None):
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "name", "status", "algorithm", "progress", "test acc", "created"):
        table.add_column(col, no_wrap=col in ("id", "status", "created"))
    for j in jobs:
        acc = j.result.test_accuracy if j.result else None
        table.add_row(str(j.id), j.name or "-", _status(j.status), j.algorithm or "-", _progress_text(j),
                      _pct(acc), _when(j.created_at))
    return table


def _job_panel(job: Job):
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("job", f"{job.id}" + (f" ({job.name})" if job.name else "")),
        ("status", _status(job.status) + (" (cancel requested)" if job.cancel_requested and not job.done else "")),
        ("algorithm", job.algorithm or "-"),
        ("model", str(job.spec.get("model", {}).get("arch", "-"))),
        ("data", _data_text(job.spec.get("data") or {})),
        ("progress", _progress_text(job)),
    ]
    if job.result:
        r = job.result
        rows += [("test accuracy", _pct(r.test_accuracy)),
                 ("test loss", f"{r.test_loss:.4f}" if r.test_loss is not None else "-"),
                 ("wall time", f"{r.wall_s:.0f} s" if r.wall_s is not None else "-")]
    if job.error:
        rows.append(("error", f"[red]{job.error.code}[/]: {job.error.message}"))
    if job.sweep_id:
        rows.append(("sweep", f"{job.sweep_id} {json.dumps(job.sweep_point)}"))
    rows += [("created", _when(job.created_at)), ("started", _when(job.started_at)),
             ("finished", _when(job.finished_at)), ("attempt", str(job.attempt))]
    for k, v in rows:
        table.add_row(k, v)
    return table


def _data_text(data: dict[str, Any]) -> str:
    text = str(data.get("dataset", "-"))
    if data.get("classes") is not None:
        text += f" classes {data['classes']}"
    elif data.get("num_classes"):
        text += f" first {data['num_classes']} classes"
    return text


def _summary_line(job: Job) -> str:
    text = f"job {job.id} {job.status}"
    if job.result and job.result.test_accuracy is not None:
        text += f": test accuracy {_pct(job.result.test_accuracy)}"
    if job.error:
        text += f": {job.error.code}: {job.error.message}"
    return text


def _exit_for(job: Job) -> None:
    if job.status in ("failed", "cancelled"):
        sys.exit(EXIT_FAILED)


# -- login --------------------------------------------------------------------------------------
@cli.command()
@click.option("--url", default=None, help="server URL, e.g. https://cttv2.lab.example")
@click.option("--token", default=None, help="API token (asked for, hidden, when not given)")
@handle_errors
def login(url: str | None, token: str | None) -> None:
    """Check a server URL and token and save them for the other commands."""
    from cttv2_client import config

    saved = config.load_file()
    url = url or click.prompt("Server URL", default=os.environ.get(config.URL_ENV) or saved.url or "http://127.0.0.1:8000")
    token = token or click.prompt("API token", hide_input=True)
    with Client(url, token) as client:
        client.request("GET", "/v1/jobs", params={"limit": 1})  # AuthError on a bad token
        version = client.version().get("version", "?")
    path = config.save(config.Settings(url=url.rstrip("/"), token=token))
    click.echo(f"logged in to {url.rstrip('/')} (server {version}); saved to {path}")


# -- device specs ---------------------------------------------------------------------------------
@cli.group()
def device() -> None:
    """Stored analog device specs."""


def _device_table(records):
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "family", "settings", "created"):
        table.add_column(col)
    for d in records:
        settings = ", ".join(f"{k}={v}" for k, v in d.spec.items() if k != "family" and v not in (None, 0, 0.0, False))
        table.add_row(str(d.id), d.name or "-", str(d.spec.get("family", "-")), settings or "-", _when(d.created_at))
    return table


@device.command("create")
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="a name to find it by")
@json_option
@connection
def device_create(client: Client, spec_file: Path, name: str | None, as_json: bool) -> None:
    """Store the device spec in SPEC_FILE (YAML: the DeviceSpec fields, or {name, spec})."""
    record = client.device_specs.create(spec_file, name=name)
    if as_json:
        _print_json(record)
    else:
        click.echo(f"device spec {record.id} created; use it in a job with device: {{id: {record.id}}}")


@device.command("list")
@json_option
@connection
def device_list(client: Client, as_json: bool) -> None:
    """Your stored device specs."""
    records = list(client.device_specs.list())
    if as_json:
        _print_json(records)
    else:
        _console().print(_device_table(records))


@device.command("show")
@click.argument("spec_id", type=int)
@json_option
@connection
def device_show(client: Client, spec_id: int, as_json: bool) -> None:
    """One device spec."""
    record = client.device_specs.get(spec_id)
    if as_json:
        _print_json(record)
    else:
        _console().print(_device_table([record]))


@device.command("delete")
@click.argument("spec_id", type=int)
@connection
def device_delete(client: Client, spec_id: int) -> None:
    """Delete a device spec (refused while a queued or running job uses it)."""
    client.device_specs.delete(spec_id)
    click.echo(f"device spec {spec_id} deleted")


# -- jobs -----------------------------------------------------------------------------------------
set_option = click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
                          help="override a field, e.g. --set training.epochs=3 (repeatable; YAML values)")


@cli.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--wait", "wait", is_flag=True, help="follow the job until it ends; exit 1 if it fails")
@click.option("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
@json_option
@connection
def submit(client: Client, job_file: Path, sets: tuple[str, ...], wait: bool, timeout: float | None,
           as_json: bool) -> None:
    """Submit the job spec in JOB_FILE (YAML or JSON)."""
    job = client.jobs.submit(job_file, overrides=_parse_sets(sets))
    if not as_json:
        click.echo(f"submitted job {job.id}" + (f" ({job.name})" if job.name else ""), err=wait)
    if wait:
        try:
            job = client.jobs.wait(job.id, timeout, raise_on_failure=False)
        except KeyboardInterrupt:
            _fail(f"stopped waiting; job {job.id} keeps running (cttv2 watch {job.id})", 130)
    if as_json:
        _print_json(job)
    elif wait:
        click.echo(_summary_line(job))
    if wait:
        _exit_for(job)


@cli.command("jobs")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="show at most N jobs")
@click.option("--all", "show_all", is_flag=True, help="every job (ignores --limit)")
@json_option
@connection
def jobs_cmd(client: Client, status: str | None, limit: int, show_all: bool, as_json: bool) -> None:
    """Your jobs, newest first."""
    import itertools

    it = client.jobs.list(status=status, page_size=None if show_all else min(limit, 100))
    jobs = list(it if show_all else itertools.islice(it, limit))
    if as_json:
        _print_json(jobs)
    else:
        _console().print(_jobs_table(jobs))


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def show(client: Client, job_id: int, as_json: bool) -> None:
    """One job: status, progress, result or error."""
    job = client.jobs.get(job_id)
    if as_json:
        _print_json(job)
    else:
        _console().print(_job_panel(job))


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def cancel(client: Client, job_id: int, as_json: bool) -> None:
    """Cancel a job (a running one stops at its next batch boundary)."""
    job = client.jobs.cancel(job_id)
    if as_json:
        _print_json(job)
    elif job.status == "cancelled":
        click.echo(f"job {job_id} cancelled")
    elif job.done:
        click.echo(f"job {job_id} had already ended ({job.status})")
    else:
        click.echo(f"job {job_id}: cancel requested; it stops at the next batch boundary")


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
        click.echo(_summary_line(job))
    _exit_for(job)


def _watch_live(client: Client, job_id: int) -> None:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = _console()
    with Progress(TextColumn(f"[bold]job {job_id}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as bar:
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
                shown = "  ".join(f"{k} {_metric(k, v)}" for k, v in sorted(values.items()))
                bar.console.print(f"epoch {data.get('epoch')} step {data.get('step')}: {shown}")
            elif event.event == "status":
                bar.console.print(f"status: {data.get('status')}" +
                                  (f" ({data['reason']})" if data.get("reason") else ""))
                bar.update(task, info=str(data.get("status")))


def _metric(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    if key.endswith(("accuracy", "error")) and 0 <= value <= 1:
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


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
        _print_json(chunk)
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
        _print_json(series)
        return
    names = series.keys
    rows: dict[int, dict[str, Any]] = {}
    for m in series:
        rows.setdefault(m.step, {"epoch": m.epoch})[m.key] = m.value
    table = Table()
    for col in ("step", "epoch", *names):
        table.add_column(col, justify="right")
    for step, row in sorted(rows.items()):
        table.add_row(str(step), str(row.get("epoch", "-")), *(_metric(k, row[k]) if k in row else "-" for k in names))
    _console().print(table)


@cli.command()
@click.argument("job_id", type=int)
@json_option
@connection
def artifacts(client: Client, job_id: int, as_json: bool) -> None:
    """A job's files (download them with `cttv2 download`)."""
    from rich.table import Table

    items = client.artifacts.list(job_id)
    if as_json:
        _print_json(items)
        return
    table = Table()
    for col in ("name", "kind", "size", "sha256", "updated"):
        table.add_column(col)
    for a in items:
        table.add_row(a.name, a.kind or "-", _size(a.size), (a.sha256 or "-")[:16], _when(a.updated_at))
    _console().print(table)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@cli.command()
@click.argument("job_id", type=int)
@click.argument("name")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="file or directory to save to (default: ./<base name>)")
@connection
def download(client: Client, job_id: int, name: str, output: Path | None) -> None:
    """Download artifact NAME of a job (resumable; checked against its sha256)."""
    path = client.artifacts.download(job_id, name, output)
    click.echo(f"saved {path} ({_size(path.stat().st_size)}, sha256 verified)")


# -- sweeps ---------------------------------------------------------------------------------------
@cli.group()
def sweep() -> None:
    """Sweeps: grids of jobs and their reports."""


def _sweep_table(sweeps):
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "status", "jobs", "succeeded", "failed", "running", "queued", "created"):
        table.add_column(col)
    for s in sweeps:
        c = s.counts
        table.add_row(str(s.id), s.name or "-", _status(s.status), str(s.total_jobs), str(c.succeeded),
                      str(c.failed), str(c.running), str(c.queued), _when(s.created_at))
    return table


@sweep.command("submit")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--wait", "wait", is_flag=True, help="follow the sweep until every job has ended")
@click.option("--timeout", type=float, default=None)
@json_option
@connection
def sweep_submit(client: Client, sweep_file: Path, sets: tuple[str, ...], wait: bool, timeout: float | None,
                 as_json: bool) -> None:
    """Submit the sweep in SWEEP_FILE (YAML: name, base job, grid, seeds, baseline)."""
    s = client.sweeps.submit(sweep_file, overrides=_parse_sets(sets))
    if not as_json:
        click.echo(f"submitted sweep {s.id} ({s.total_jobs} jobs)", err=wait)
    if wait:
        s = client.sweeps.wait(s.id, timeout)
    if as_json:
        _print_json(s)
    elif wait:
        click.echo(f"sweep {s.id} {s.status}: {s.counts.succeeded}/{s.total_jobs} jobs succeeded")
    if wait and s.status not in ("succeeded",):
        sys.exit(EXIT_FAILED)


@sweep.command("list")
@json_option
@connection
def sweep_list(client: Client, as_json: bool) -> None:
    """Your sweeps, newest first."""
    sweeps = list(client.sweeps.list())
    if as_json:
        _print_json(sweeps)
    else:
        _console().print(_sweep_table(sweeps))


@sweep.command("show")
@click.argument("sweep_id", type=int)
@json_option
@connection
def sweep_show(client: Client, sweep_id: int, as_json: bool) -> None:
    """One sweep and its jobs."""
    s = client.sweeps.get(sweep_id)
    if as_json:
        _print_json(s)
        return
    console = _console()
    console.print(_sweep_table([s]))
    console.print(_jobs_table(list(client.sweeps.jobs(sweep_id)), title=f"jobs of sweep {sweep_id}"))


@sweep.command("cancel")
@click.argument("sweep_id", type=int)
@json_option
@connection
def sweep_cancel(client: Client, sweep_id: int, as_json: bool) -> None:
    """Cancel every job of a sweep that has not ended."""
    s = client.sweeps.cancel(sweep_id)
    if as_json:
        _print_json(s)
    else:
        click.echo(f"sweep {sweep_id}: {s.status}")


@sweep.command("report")
@click.argument("sweep_id", type=int)
@click.option("--csv", "as_csv", is_flag=True, help="print the report as CSV")
@click.option("--png", "png_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="save the plot to this PNG file")
@json_option
@connection
def sweep_report(client: Client, sweep_id: int, as_csv: bool, png_file: Path | None, as_json: bool) -> None:
    """Mean test error per grid point and its change against the digital baseline."""
    if sum((as_csv, png_file is not None, as_json)) > 1:
        raise click.UsageError("give at most one of --csv, --png, --json")
    if as_csv:
        click.echo(client.sweeps.report(sweep_id, "csv"), nl=False)
        return
    if png_file is not None:
        data = client.sweeps.report(sweep_id, "png")
        png_file.write_bytes(data)
        click.echo(f"saved {png_file} ({_size(len(data))})")
        return
    report = client.sweeps.report(sweep_id)
    if as_json:
        _print_json(report)
        return
    from rich.table import Table

    title = f"sweep {sweep_id}" + ("" if report.complete else " (incomplete: jobs still running)")
    table = Table(title=title)
    for axis in report.axes:
        table.add_column(axis)
    for col in ("test error", "std", "vs baseline", "finished"):
        table.add_column(col, justify="right")
    if report.baseline is not None:
        b = report.baseline
        label = ["baseline (fp)"] + [""] * (len(report.axes) - 1) if report.axes else []
        table.add_row(*label, _pct(b.mean_test_error), _pct(b.std_test_error), "-", f"{b.n_finished}/{b.n_seeds}")
    for row in report.rows:
        delta = row.delta_vs_baseline
        table.add_row(*(str(row.point.get(a)) for a in report.axes), _pct(row.mean_test_error),
                      _pct(row.std_test_error), f"{100 * delta:+.1f} pt" if delta is not None else "-",
                      f"{row.n_finished}/{row.n_seeds}")
    _console().print(table)
