"""`cttv2 presets [NAME]`: what a job spec may name (GET /v1/presets): device families and
presets, their knobs with unit, range and default, algorithms, models and datasets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from cttv2_client import Client
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import EXIT_USAGE, connection, fail, json_option, make_console, print_json

if TYPE_CHECKING:
    from rich.table import Table


@cli.command()
@click.argument("name", required=False)
@json_option
@connection
def presets(client: Client, name: str | None, as_json: bool) -> None:
    """Device families and presets, the knobs of a device spec and of the algorithms (unit,
    range, default), algorithms, models and datasets. With NAME (a family or preset, e.g.
    ReRamSB): that device's knobs and its own defaults."""
    listing = client.presets()
    if name is not None:
        devices = {**_section(listing, "families"), **_section(listing, "presets")}
        if name not in devices:
            known = ", ".join(sorted(devices))
            fail(f"no family or preset {name!r}; known: {known}", EXIT_USAGE)
        if as_json:
            print_json(devices[name])
        else:
            make_console().print(_device_detail(name, devices[name], listing))
        return
    if as_json:
        print_json(listing)
        return
    console = make_console()
    for table in _overview(listing):
        console.print(table)


def _section(listing: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = listing.get(key)
    return dict(value) if isinstance(value, Mapping) else {}


def range_text(field: Mapping[str, Any]) -> str:
    """A knob's JSON-schema bounds as an interval: [0, 1], (0, 100], >= 2, one of a|b."""
    if field.get("enum"):
        return " | ".join(str(v) for v in field["enum"])
    num = value_text
    low, low_open = field.get("minimum"), False
    if field.get("exclusiveMinimum") is not None:
        low, low_open = field["exclusiveMinimum"], True
    high, high_open = field.get("maximum"), False
    if field.get("exclusiveMaximum") is not None:
        high, high_open = field["exclusiveMaximum"], True
    if low is None and high is None:
        return "-"
    if high is None:
        return f"{'>' if low_open else '>='} {num(low)}"
    if low is None:
        return f"{'<' if high_open else '<='} {num(high)}"
    return f"{'(' if low_open else '['}{num(low)}, {num(high)}{')' if high_open else ']'}"


def value_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _knob_table(title: str, knobs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for col in ("knob", "unit", "range", "default", "what"):
        table.add_column(col, no_wrap=col in ("knob", "range"))
    for knob, field in knobs.items():
        field = field if isinstance(field, Mapping) else {}
        default = defaults[knob] if defaults is not None and knob in defaults else field.get("default")
        table.add_row(
            knob,
            escape(str(field.get("unit") or "-")),
            escape(range_text(field)),
            escape(value_text(default)),
            escape(str(field.get("description") or "")),
        )
    return table


def _add_row(table: Table, *cells: Any) -> None:
    """Cells are data, never rich markup (descriptions hold brackets: [w_min, w_max])."""
    from rich.markup import escape

    table.add_row(*(escape(str(c)) for c in cells))


def _overview(listing: Mapping[str, Any]) -> list[Table]:
    from rich.table import Table

    tables: list[Table] = []
    devices = Table(title="device families and presets (device.family)", title_justify="left")
    for col in ("name", "kind", "aihwkit class", "what"):
        devices.add_column(col, no_wrap=col != "what")
    for section in ("families", "presets"):
        for name, info in _section(listing, section).items():
            _add_row(
                devices,
                name,
                str(info.get("kind", section)),
                str(info.get("aihwkit_class", "-")),
                info.get("description", ""),
            )
    tables.append(devices)
    # device.family is one of the names above; the other knobs, their bounds and defaults:
    knobs = {k: v for k, v in _section(listing, "device_knobs").items() if k != "family"}
    tables.append(_knob_table("device knobs (device.*; a device's own defaults: cttv2 presets NAME)", knobs))
    tables.append(_knob_table("algorithm options (algorithm_options.*)", _section(listing, "algorithm_options")))

    algorithms = Table(title="algorithms (algorithm)", title_justify="left")
    for col in ("name", "default lr", "recipe", "what"):
        algorithms.add_column(col, no_wrap=col == "name")
    for name, info in _section(listing, "algorithms").items():
        recipe = ", ".join(f"{k}={value_text(v)}" for k, v in (info.get("recipe") or {}).items())
        _add_row(algorithms, name, value_text(info.get("default_lr")), recipe or "-", str(info.get("description", "")))
    tables.append(algorithms)

    models = Table(title="models (model.arch)", title_justify="left")
    for col in ("name", "family", "img size", "parameters", "analog tiles (all)", "what"):
        models.add_column(col, no_wrap=col != "what")
    for model in listing.get("models") or []:
        if isinstance(model, Mapping):
            tiles = ((model.get("analog") or {}).get("all") or {}).get("tiles")  # servers before ResNet: none
            _add_row(
                models,
                str(model.get("name")),
                str(model.get("family") or "swin"),
                value_text(model.get("img_size")),
                value_text(model.get("parameters")),
                value_text(tiles),
                str(model.get("description", "")),
            )
    tables.append(models)

    datasets = Table(title="datasets (data.dataset)", title_justify="left")
    datasets.add_column("name", no_wrap=True)
    datasets.add_column("where")
    for name, where in _section(listing, "datasets").items():
        _add_row(datasets, name, str(where))
    tables.append(datasets)
    return tables


def _device_detail(name: str, info: Mapping[str, Any], listing: Mapping[str, Any]) -> Table:
    knobs = _section(listing, "device_knobs")
    io_defaults = _section(listing, "io_defaults")
    defaults = {**io_defaults, **(info.get("defaults") or {})}
    wanted = [k for k in info.get("knobs") or [] if k in knobs] or list(knobs)
    title = f"{name} ({info.get('kind', 'device')}, {info.get('aihwkit_class', '-')}): {info.get('description', '')}"
    return _knob_table(title, {k: knobs[k] for k in wanted}, defaults)
