"""The `cttv2` console script: server commands (serve, worker, db, admin), the local engine
(`train`) and the user commands that talk to a server through the SDK.

Each command module registers itself on `cli`; heavy imports (torch, the web app) happen
inside the commands, so `cttv2 --help` is instant.
"""

from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cttv2")
def cli() -> None:
    """cttv2: analog in-memory training jobs (c-TTv2 on Swin-ViT)."""


def _register() -> None:
    import importlib

    # Each module adds its commands to `cli`. `user` needs the SDK (cttv2_client), which a
    # server-only install may lack.
    for name in ("server", "train", "user"):
        try:
            importlib.import_module(f"cttv2_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"cttv2_cli.{name}", "cttv2_client"):
                raise


def main() -> None:
    _register()
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
