"""`cttv2 sweep ...`: submit a grid of jobs, follow it, fetch its report (table, CSV, PNG)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cttv2_client import Client, Sweep
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import (
    EXIT_FAILED,
    connection,
    json_option,
    make_console,
    parse_sets,
    print_json,
    set_option,
)
from cttv2_client.cli.render import jobs_table, pct, size_text, status_markup, when

if TYPE_CHECKING:
    from rich.table import Table


@cli.group()
def sweep() -> None:
    """Sweeps: grids of jobs and their reports."""


def _sweep_table(sweeps: Iterable[Sweep]) -> Table:
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "status", "jobs", "succeeded", "failed", "running", "queued", "created"):
        table.add_column(col)
    for s in sweeps:
        c = s.counts
        table.add_row(
            str(s.id),
            s.name or "-",
            status_markup(s.status),
            str(s.total_jobs),
            str(c.succeeded),
            str(c.failed),
            str(c.running),
            str(c.queued),
            when(s.created_at),
        )
    return table


@sweep.command("submit")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--wait", "wait", is_flag=True, help="follow the sweep until every job has ended")
@click.option("--timeout", type=float, default=None)
@json_option
@connection
def sweep_submit(
    client: Client, sweep_file: Path, sets: tuple[str, ...], wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Submit the sweep in SWEEP_FILE (YAML: name, base job, grid, seeds, baseline)."""
    s = client.sweeps.submit(sweep_file, overrides=parse_sets(sets))
    if not as_json:
        click.echo(f"submitted sweep {s.id} ({s.total_jobs} jobs)", err=wait)
    if wait:
        s = client.sweeps.wait(s.id, timeout)
    if as_json:
        print_json(s)
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
        print_json(sweeps)
    else:
        make_console().print(_sweep_table(sweeps))


@sweep.command("show")
@click.argument("sweep_id", type=int)
@json_option
@connection
def sweep_show(client: Client, sweep_id: int, as_json: bool) -> None:
    """One sweep and its jobs."""
    s = client.sweeps.get(sweep_id)
    if as_json:
        print_json(s)
        return
    console = make_console()
    console.print(_sweep_table([s]))
    console.print(jobs_table(list(client.sweeps.jobs(sweep_id)), title=f"jobs of sweep {sweep_id}"))


@sweep.command("cancel")
@click.argument("sweep_id", type=int)
@json_option
@connection
def sweep_cancel(client: Client, sweep_id: int, as_json: bool) -> None:
    """Cancel every job of a sweep that has not ended."""
    s = client.sweeps.cancel(sweep_id)
    if as_json:
        print_json(s)
    else:
        click.echo(f"sweep {sweep_id}: {s.status}")


@sweep.command("delete")
@click.argument("sweep_id", type=int)
@connection
def sweep_delete(client: Client, sweep_id: int) -> None:
    """Delete a sweep and all its jobs, records and files (cancel it first if jobs are left)."""
    client.sweeps.delete(sweep_id)
    click.echo(f"sweep {sweep_id} deleted, with its jobs")


@sweep.command("report")
@click.argument("sweep_id", type=int)
@click.option(
    "--csv",
    "csv_file",
    is_flag=False,
    flag_value="-",
    default=None,
    metavar="[FILE]",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="save the report as CSV to FILE (without FILE: print it)",
)
@click.option(
    "--png",
    "png_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="save the plot to this PNG file",
)
@json_option
@connection
def sweep_report(client: Client, sweep_id: int, csv_file: Path | None, png_file: Path | None, as_json: bool) -> None:
    """Mean test error per grid point and its change against the digital baseline."""
    csv_to_stdout = csv_file is not None and str(csv_file) == "-"
    if (as_json or csv_to_stdout) and sum((csv_file is not None, png_file is not None, as_json)) > 1:
        raise click.UsageError("--json and --csv without FILE print the report: give them alone")
    if csv_file is not None:
        text = client.sweeps.report(sweep_id, "csv")
        if csv_to_stdout:
            click.echo(text, nl=False)
        else:
            csv_file.write_bytes(text.encode())
            click.echo(f"saved {csv_file} ({size_text(len(text.encode()))})")
    if png_file is not None:
        data = client.sweeps.report(sweep_id, "png")
        png_file.write_bytes(data)
        click.echo(f"saved {png_file} ({size_text(len(data))})")
    if csv_file is not None or png_file is not None:
        return
    report = client.sweeps.report(sweep_id)
    if as_json:
        print_json(report)
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
        table.add_row(*label, pct(b.mean_test_error), pct(b.std_test_error), "-", f"{b.n_finished}/{b.n_seeds}")
    for row in report.rows:
        delta = row.delta_vs_baseline
        table.add_row(
            *(str(row.point.get(a)) for a in report.axes),
            pct(row.mean_test_error),
            pct(row.std_test_error),
            f"{100 * delta:+.1f} pt" if delta is not None else "-",
            f"{row.n_finished}/{row.n_seeds}",
        )
    make_console().print(table)
