"""Database engine, sessions and the column types every model shares."""

from __future__ import annotations

import json
import select
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, CursorResult, DateTime, Engine, Executable, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from service.core.config import Settings, get_settings

# Explicit constraint names: migrations stay identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# JSONB on PostgreSQL, JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_loads(data: str | bytes) -> Any:
    """The JSON columns' decoder (specs, results, progress): orjson, which decodes a 50-job
    page about twice as fast as the standard library (the page's fetch, measured: 4.4 -> 2.8
    ms, half of a list's cost); the standard library for what orjson refuses and SQLite may
    hold (NaN and Infinity, which json.dumps writes). orjson reads an integer beyond 64 bits
    as a float: none is stored (every integer is a validated field with bounds, or a count)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if settings.is_sqlite:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, json_deserializer=json_loads, connect_args={"timeout": 30, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # Fail fast rather than hang when PostgreSQL is down (the API answers 503 instead).
    engine = create_engine(
        url,
        json_deserializer=json_loads,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )
    # Liveness of a pooled connection without a round trip (pool_pre_ping's SELECT 1 cost one
    # per checkout): an idle connection has nothing to read, so a readable socket means the
    # server closed it or said goodbye (restart, terminated backend, reset). The pool then
    # drops it and checks out another (SQLAlchemy retries a checkout that raises
    # DisconnectionError), and the first dead one found invalidates the rest of the pool
    # (they predate the same restart). A connection that dies without a word (a silent
    # network drop) fails its first query: that request is a 503 and the pool is invalidated.
    event.listen(engine, "checkout", _check_alive)
    return engine


def _socket_says_closed(dbapi_conn) -> bool:
    """Whether a pooled psycopg connection is closed or has data waiting (for an idle
    connection: the server's goodbye or EOF). One poll() syscall, no round trip."""
    if getattr(dbapi_conn, "closed", False) or getattr(dbapi_conn, "broken", False):
        return True
    try:
        fd = dbapi_conn.pgconn.socket
    except Exception:  # noqa: BLE001 - no socket: the connection is gone
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _check_alive(dbapi_conn, record, proxy) -> None:
    if _socket_says_closed(dbapi_conn):
        # The pool reconnects this one at once and every older one on its next checkout.
        raise InvalidatePoolError("pooled connection closed by the server")


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings())


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@lru_cache
def get_read_engine() -> Engine:
    """The engine for reads (GET under /v1): on PostgreSQL in autocommit, so a request's
    statements go without the BEGIN and ROLLBACK round trips around them (under READ COMMITTED
    each statement of a transaction had its own snapshot anyway: the same reads)."""
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@lru_cache
def get_read_sessionmaker() -> sessionmaker[Session]:
    """Sessions for requests that only read (GET under /v1), on get_read_engine."""
    return sessionmaker(bind=get_read_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def execute_count(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE and return how many rows it matched (a conditional UPDATE's
    answer to "did this transition happen?")."""
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # DML always yields a cursor result
    return result.rowcount


def dialect_name(db: Session | Connection) -> str:
    """'postgresql' or 'sqlite': where the two need different SQL (upserts, row locks)."""
    return db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name
