"""`cttv2 weights ...`: pretrained digital weights that fine-tuning jobs start from
(model.pretrained = {weights: NAME})."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cttv2_client import Client, Weights
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import EXIT_FAILED, connection, fail, json_option, make_console, print_json
from cttv2_client.cli.render import size_text, when

if TYPE_CHECKING:
    from rich.table import Table

STATUS_STYLE = {"pending": "yellow", "valid": "green", "invalid": "red"}


@cli.group()
def weights() -> None:
    """Uploaded pretrained weights (safetensors or a plain state dict)."""


def _weights_table(records: Iterable[Weights]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "arch", "img size", "status", "size", "sha256", "created", "error"):
        table.add_column(col, no_wrap=col != "error")
    for w in records:
        table.add_row(
            str(w.id),
            escape(w.name),
            w.arch or "-",
            str(w.img_size) if w.img_size else "-",
            f"[{STATUS_STYLE.get(w.status, 'white')}]{w.status}[/]",
            size_text(w.size),
            (w.sha256 or "-")[:16],
            when(w.created_at),
            escape(w.error or "-"),
        )
    return table


@weights.command("upload")
@click.argument("weights_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--arch", required=True, help="the model architecture they are for (e.g. swin_micro)")
@click.option("--name", default=None, help="the name jobs use (default: the file's name)")
@click.option("--img-size", type=click.IntRange(1), default=None, help="input size, when not the arch's")
@click.option("--wait", "wait", is_flag=True, help="wait for the server's check; exit 1 if they are invalid")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="with --wait: give up after this long")
@json_option
@connection
def weights_upload(
    client: Client,
    weights_file: Path,
    arch: str,
    name: str | None,
    img_size: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Upload WEIGHTS_FILE; a worker then checks it (status pending, then valid or invalid)."""
    record = client.weights.upload(weights_file, arch, name=name, img_size=img_size)
    if not as_json:
        click.echo(
            f"uploaded weights {record.id} ({record.name}, {size_text(record.size)}); "
            f"use them in a job with model.pretrained: {{weights: {record.name}}}",
            err=wait,
        )
    if wait:
        deadline = time.monotonic() + timeout
        delay = 0.2
        while record.status == "pending":
            if time.monotonic() > deadline:
                fail(f"weights {record.id} still pending after {timeout:g} s (cttv2 weights list)")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
            record = client.weights.get(record.id)
    if as_json:
        print_json(record)
    elif wait:
        click.echo(f"weights {record.id} {record.status}" + (f": {record.error}" if record.error else ""))
    if wait and record.status != "valid":
        raise SystemExit(EXIT_FAILED)


@weights.command("list")
@json_option
@connection
def weights_list(client: Client, as_json: bool) -> None:
    """Your uploaded weights."""
    records = list(client.weights.list())
    if as_json:
        print_json(records)
    else:
        make_console().print(_weights_table(records))


@weights.command("show")
@click.argument("weights_id", type=int)
@json_option
@connection
def weights_show(client: Client, weights_id: int, as_json: bool) -> None:
    """One upload: its status (and why it is invalid)."""
    record = client.weights.get(weights_id)
    if as_json:
        print_json(record)
    else:
        make_console().print(_weights_table([record]))


@weights.command("delete")
@click.argument("weights_id", type=int)
@connection
def weights_delete(client: Client, weights_id: int) -> None:
    """Delete an upload, record and file (refused while a queued or running job starts from it)."""
    client.weights.delete(weights_id)
    click.echo(f"weights {weights_id} deleted")
