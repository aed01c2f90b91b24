"""`cttv2 login`: check a server URL and token, save them for the other commands."""

from __future__ import annotations

import os

import click

from cttv2_client import Client
from cttv2_client.cli.app import cli
from cttv2_client.cli.common import handle_errors


@cli.command()
@click.option("--url", default=None, help="server URL, e.g. https://cttv2.lab.example")
@click.option("--token", default=None, help="API token (asked for, hidden, when not given)")
@handle_errors
def login(url: str | None, token: str | None) -> None:
    """Check a server URL and token and save them for the other commands."""
    from cttv2_client import config

    saved = config.load_file()
    url = url or click.prompt(
        "Server URL", default=os.environ.get(config.URL_ENV) or saved.url or "http://127.0.0.1:8000"
    )
    token = token or click.prompt("API token", hide_input=True)
    with Client(url, token) as client:
        client.request("GET", "/v1/jobs", params={"limit": 1})  # AuthError on a bad token
        version = client.version().get("version", "?")
    path = config.save(config.Settings(url=url.rstrip("/"), token=token))
    click.echo(f"logged in to {url.rstrip('/')} (server {version}); saved to {path}")
