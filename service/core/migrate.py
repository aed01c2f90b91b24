"""Alembic from code: `cttv2 db upgrade`, and the upgrade serve/worker run on start.

Concurrent starts (API and worker together) must not both migrate: a lock serializes them
(an advisory lock on PostgreSQL, a file lock beside the SQLite file).
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from service.core.config import Settings
from service.core.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
_LOCK_KEY = 0x6374_7476  # "cttv"


def alembic_config() -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["configure_logger"] = False
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_and_head(conn) -> tuple[str | None, str | None]:
    return MigrationContext.configure(conn).get_current_revision(), head_revision()


@contextmanager
def _migration_lock(settings: Settings, conn):
    if settings.is_sqlite:
        lock_path = settings.state_dir.absolute() / "migrate.lock"
        if settings.database_url.startswith("sqlite:///"):
            lock_path = Path(settings.database_url.removeprefix("sqlite:///") + ".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})


def run(settings: Settings, action: str = "upgrade", revision: str = "head") -> None:
    engine = make_engine(settings)
    try:
        with engine.connect() as lock_conn:
            lock_conn.commit()
            with _migration_lock(settings, lock_conn):
                with engine.begin() as conn:
                    cfg = alembic_config()
                    cfg.attributes["connection"] = conn
                    getattr(command, action)(cfg, revision)
    finally:
        engine.dispose()


def upgrade(settings: Settings) -> None:
    run(settings, "upgrade", "head")
