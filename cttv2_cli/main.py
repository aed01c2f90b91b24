"""The `cttv2` console script of the server package: the server commands (serve, worker, db,
admin; `server.py`) and the local engine (`train`; `train.py`) on the SDK's click group, beside
the user commands that live in the SDK (`cttv2_client.cli`, the `cli` extra).

There is one group, `cttv2_client.cli.app.cli`; this package registers its modules on it
through the `cttv2.commands` entry-point group (pyproject.toml), so the SDK's `cttv2` script and
this one run the same command set, whichever of the two pip wrote last. Without the SDK (a
server-only install such as the worker image) the server commands run on a group of their own.
Heavy imports (torch, the web app) happen inside the commands, so `cttv2 --help` is instant.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import click

SERVER_MODULES = ("cttv2_cli.server", "cttv2_cli.train")

_sdk_app: ModuleType | None
try:
    from cttv2_client.cli import app as _sdk_app
except ModuleNotFoundError as exc:  # no SDK, or one without its cli package
    if exc.name not in ("cttv2_client", "cttv2_client.cli"):
        raise
    _sdk_app = None

cli: click.Group
if _sdk_app is not None:
    cli = _sdk_app.cli
else:
    cli = click.Group(
        "cttv2",
        help="cttv2: analog in-memory training jobs (c-TTv2 on Swin-ViT). Server commands only: "
        "the user commands (submit, jobs, ...) come with the SDK, pip install './sdk[cli]'.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    cli = click.version_option(package_name="cttv2")(cli)


def main() -> None:
    # Imported here as well as through the entry points, so `python -m cttv2_cli` in a checkout
    # whose install predates the entry points still has them.
    for name in SERVER_MODULES:
        importlib.import_module(name)
    if _sdk_app is not None:
        _sdk_app.main()
        return
    try:
        cli(standalone_mode=True, prog_name="cttv2")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
