"""`cttv2 device ...`: stored analog device specs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cttv2_client import Client, DeviceSpecRecord
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import connection, json_option, make_console, print_json
from cttv2_client.cli.render import when

if TYPE_CHECKING:
    from rich.table import Table


@cli.group()
def device() -> None:
    """Stored analog device specs."""


def _device_table(records: Iterable[DeviceSpecRecord]) -> Table:
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "family", "settings", "created"):
        table.add_column(col)
    for d in records:
        settings = ", ".join(f"{k}={v}" for k, v in d.spec.items() if k != "family" and v not in (None, 0, 0.0, False))
        table.add_row(str(d.id), d.name or "-", str(d.spec.get("family", "-")), settings or "-", when(d.created_at))
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
        print_json(record)
    else:
        click.echo(f"device spec {record.id} created; use it in a job with device: {{id: {record.id}}}")


@device.command("list")
@json_option
@connection
def device_list(client: Client, as_json: bool) -> None:
    """Your stored device specs."""
    records = list(client.device_specs.list())
    if as_json:
        print_json(records)
    else:
        make_console().print(_device_table(records))


@device.command("show")
@click.argument("spec_id", type=int)
@json_option
@connection
def device_show(client: Client, spec_id: int, as_json: bool) -> None:
    """One device spec."""
    record = client.device_specs.get(spec_id)
    if as_json:
        print_json(record)
    else:
        make_console().print(_device_table([record]))


@device.command("delete")
@click.argument("spec_id", type=int)
@connection
def device_delete(client: Client, spec_id: int) -> None:
    """Delete a device spec (refused while a queued or running job uses it)."""
    client.device_specs.delete(spec_id)
    click.echo(f"device spec {spec_id} deleted")
