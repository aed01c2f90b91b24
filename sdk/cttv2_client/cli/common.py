"""Plumbing shared by the user commands: the SDK client from --url/--token, SDK errors as one
line and an exit code, JSON output, --set overrides."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from cttv2_client import Client, ConfigError, CTTV2Error, Job, JobError, SpecFileError, ValidationError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_FAILED = 1
EXIT_USAGE = 2


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps wide tables on one line instead of rich's default 80 columns.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=stream, width=width, soft_wrap=False)


def fail(message: str, code: int = EXIT_FAILED, details: list[str] | None = None) -> None:
    click.echo(f"cttv2: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the SDK's exceptions into one readable line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobError as exc:
            fail(str(exc))
        except ValidationError as exc:
            extra = [str(f) for f in exc.fields[1:]] if len(exc.fields) > 1 else []
            fail(f"invalid request: {exc.message}", details=extra)
        except (SpecFileError, ConfigError) as exc:
            fail(str(exc), EXIT_USAGE)
        except CTTV2Error as exc:
            fail(str(exc))

    return wrapper


def connection(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--url and --token on a command, turned into a `client` argument."""

    @click.option("--url", default=None, metavar="URL", help="server URL (default: $CTTV2_URL or the login config)")
    @click.option(
        "--token", default=None, metavar="TOKEN", help="API token (default: $CTTV2_TOKEN or the login config)"
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, url: str | None, token: str | None, **kwargs: Any) -> Any:
        with Client(url, token) as client:
            return fn(*args, client=client, **kwargs)

    return handle_errors(wrapper)


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=VALUE",
    help="override a field, e.g. --set training.epochs=3 (repeatable; YAML values)",
)


def print_json(data: Any) -> None:
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    click.echo(json.dumps(data, indent=2, default=str))


def parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
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


def exit_for(job: Job) -> None:
    if job.status in ("failed", "cancelled"):
        sys.exit(EXIT_FAILED)
