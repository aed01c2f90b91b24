"""The `cttv2` click group, the one every command registers on.

The user commands live beside this module; any installed package can add commands through the
`cttv2.commands` entry-point group, each entry naming a module that registers its commands on
`cli` when imported (the server package: `cttv2_cli.server`, `cttv2_cli.train`). Commands keep
their heavy imports inside their bodies, so `cttv2 --help` stays quick.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata

import click

ENTRY_POINT_GROUP = "cttv2.commands"
# The user commands (modules of this package), registered by load_commands().
USER_MODULES = ("login", "jobs", "sweeps", "devices", "weights", "presets", "export")


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for dist in ("cttv2-client", "cttv2"):
        try:
            click.echo(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the installed versions (the SDK, and the server package when present) and exit.",
)
def cli() -> None:
    """cttv2: analog in-memory training jobs (c-TTv2 on Swin-ViT)."""


_loaded = False


def load_commands() -> None:
    """Register the user commands and every `cttv2.commands` entry point on `cli` (once).

    An entry point that fails to load is reported on stderr and left out: a broken server
    install must not take the user commands down with it."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in USER_MODULES:
        importlib.import_module(f"cttv2_client.cli.{name}")
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001 - one line, then the other commands still work
            click.echo(f"cttv2: commands from {ep.value} not available: {type(exc).__name__}: {exc}", err=True)


def main() -> None:
    """Run `cttv2` with every installed command."""
    load_commands()
    try:
        cli(standalone_mode=True, prog_name="cttv2")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
