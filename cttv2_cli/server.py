"""Server-side commands: serve, worker, db, admin."""

from __future__ import annotations

import os
import sys

import click

from cttv2_cli.main import cli


def load_settings():
    """Settings, or one clear line and exit 2 when a setting is bad."""
    from service.core.config import describe_settings_error, get_settings

    try:
        return get_settings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError or a bad value
        click.echo(f"cttv2: {describe_settings_error(exc)}", err=True)
        sys.exit(2)


def _migrate_on_start(settings) -> None:
    if settings.auto_migrate:
        from service.core.migrate import upgrade

        try:
            upgrade(settings)
        except Exception as exc:  # noqa: BLE001
            click.echo(
                f"cttv2: cannot migrate the database ({settings.database_url.split('@')[-1]}): "
                f"{str(exc).splitlines()[0]}",
                err=True,
            )
            sys.exit(1)


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Root handler on stderr: text lines, or one JSON object per line (CTTV2_LOG_FORMAT=json)."""
    import logging

    from service.core.log_context import RequestIdFilter, make_formatter

    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if log_format == "json":
        logging.captureWarnings(True)  # a Python warning becomes a JSON line too (logger py.warnings)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="API processes")
def serve(host: str, port: int, workers: int) -> None:
    """Run the API server."""
    settings = load_settings()
    _migrate_on_start(settings)
    setup_logging(log_format=settings.log_format)
    import uvicorn

    from service.core.log_context import logging_dict_config

    # Keep idle connections longer than clients and proxies do (60 s is common), so a client
    # never sends on a connection the server is closing at that moment.
    uvicorn.run(
        "service.main:app",
        host=host,
        port=port,
        workers=workers,
        log_config=logging_dict_config("INFO", settings.log_format),  # applied in every API process
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=75,
    )


@cli.command()
@click.option("--name", default=None, help="worker name (default: cttv2@<host>-<pid>)")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(name: str | None, loglevel: str) -> None:
    """Run one worker process: one job at a time (start one per GPU)."""
    settings = load_settings()
    # One thread per process unless configured: the aihwkit wheel bundles its own OpenMP and
    # OpenBLAS, and two threads on two cores were measured slower than one.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(settings.worker_threads))
    _migrate_on_start(settings)
    setup_logging(loglevel, settings.log_format)
    from worker.main import start_worker

    start_worker(settings, name=name, loglevel=loglevel)


@cli.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the database to REVISION (default head)."""
    from service.core.migrate import run

    run(load_settings(), "upgrade", revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade the database to REVISION (e.g. base)."""
    from service.core.migrate import run

    run(load_settings(), "downgrade", revision)
    click.echo(f"database at {revision}")


@db.command("current")
def db_current() -> None:
    """Print the database's revision and the head revision."""
    from service.core.db import make_engine
    from service.core.migrate import current_and_head

    engine = make_engine(load_settings())
    with engine.connect() as conn:
        current, head = current_and_head(conn)
    click.echo(f"current: {current}\nhead:    {head}")


@cli.group()
def admin() -> None:
    """Users, tokens, and purging old jobs."""


@admin.command("create-user")
@click.argument("name")
@click.option("--admin", "is_admin", is_flag=True, help="may manage users")
def create_user(name: str, is_admin: bool) -> None:
    """Create user NAME and print a new API token (shown once; only its hash is stored)."""
    from service.core.db import session_scope
    from service.users.service import UserError, create_user

    settings = load_settings()
    _migrate_on_start(settings)
    try:
        with session_scope() as session:
            _, token = create_user(session, settings, name, is_admin=is_admin)
    except UserError as exc:
        click.echo(f"cttv2: {exc}", err=True)
        sys.exit(1)
    click.echo(token)


@admin.command("create-token")
@click.argument("name")
@click.option("--label", default=None)
@click.option("--ttl-days", default=None, type=int)
def create_token(name: str, label: str | None, ttl_days: int | None) -> None:
    """Issue another token for user NAME."""
    from sqlalchemy import select

    from service.core.db import session_scope
    from service.users.models import User
    from service.users.service import issue_token

    settings = load_settings()
    with session_scope() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            click.echo(f"cttv2: no user {name!r}", err=True)
            sys.exit(1)
        token = issue_token(session, settings, user, label=label, ttl_days=ttl_days)
    click.echo(token)


@admin.command("revoke-token")
@click.option("--user", "user_name", default=None, help="revoke every token of this user")
@click.option("--token", "token_prefix", default=None, help="the token (or its first 12 characters)")
def revoke_token(user_name: str | None, token_prefix: str | None) -> None:
    """Revoke tokens, by user or by token."""
    from service.core.db import session_scope
    from service.users.service import UserError, revoke_tokens

    if not user_name and not token_prefix:
        click.echo("cttv2: give --user or --token", err=True)
        sys.exit(2)
    load_settings()
    try:
        with session_scope() as session:
            n = revoke_tokens(session, user_name=user_name, prefix=token_prefix)
    except UserError as exc:
        click.echo(f"cttv2: {exc}", err=True)
        sys.exit(1)
    click.echo(f"revoked {n} token(s)")


def _parse_age(text: str):
    """90d, 12h, 30m, 45s or 2w (a plain number: days) as a timedelta."""
    from datetime import timedelta

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    raw = text.strip().lower()
    unit = raw[-1] if raw and raw[-1] in units else "d"
    number = raw[:-1] if raw and raw[-1] in units else raw
    try:
        value = float(number)
    except ValueError:
        raise click.BadParameter(f"{text!r}: a number with s, m, h, d or w (e.g. 90d)") from None
    if not value >= 0 or value > 100 * 365:
        raise click.BadParameter(f"{text!r}: out of range")
    return timedelta(**{units[unit]: value})


@admin.command("purge")
@click.option("--older-than", "older_than", required=True, help="finished before this long ago: 90d, 12h, 2w")
@click.option("--user", "user_name", default=None, help="only this user's jobs")
@click.option("--dry-run", is_flag=True, help="print what would be freed; delete nothing")
def purge(older_than: str, user_name: str | None, dry_run: bool) -> None:
    """Delete finished jobs (succeeded, failed, cancelled) that ended before --older-than ago,
    with their files, as DELETE /v1/jobs/{id} does. Jobs a queued or running job starts from
    are kept."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from service.core.db import session_scope
    from service.jobs.deletion import purge as purge_jobs
    from service.users.models import User

    age = _parse_age(older_than)
    settings = load_settings()
    cutoff = datetime.now(UTC) - age
    with session_scope() as session:
        user_id = None
        if user_name is not None:
            user_id = session.scalar(select(User.id).where(User.name == user_name))
            if user_id is None:
                click.echo(f"cttv2: no user {user_name!r}", err=True)
                sys.exit(1)
        done = purge_jobs(session, settings.artifact_dir, cutoff, user_id=user_id, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    who = f" of {user_name}" if user_name else ""
    click.echo(
        f"{verb} {len(done.job_ids)} job(s){who} finished before {cutoff:%Y-%m-%d %H:%M} UTC, "
        f"freeing {done.bytes} bytes ({done.bytes / 2**20:.1f} MiB)"
    )
