"""Database writes from a worker: retried through outages, fenced by the job's lease."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.core.db import session_scope

log = logging.getLogger("cttv2.worker.db")
T = TypeVar("T")

RETRYABLE = (OperationalError, PoolTimeoutError)


def with_retry(fn: Callable[..., T], *, deadline_s: float = 600.0, what: str = "write", max_delay_s: float = 10.0) -> T:
    """Run fn(session) in a transaction, retrying while the database is unreachable.

    A worker keeps its job through a database outage: training blocks on the write, and
    resumes when the database is back (or gives up after deadline_s)."""
    start = time.monotonic()
    delay = min(0.5, max_delay_s)
    while True:
        try:
            with session_scope() as session:
                return fn(session)
        except RETRYABLE as exc:
            if isinstance(exc, DBAPIError) and not _looks_transient(exc):
                raise
            if time.monotonic() - start > deadline_s:
                raise
            log.warning(
                "database unavailable during %s, retrying in %.1fs: %s", what, delay, str(exc).splitlines()[0][:200]
            )
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)


def _looks_transient(exc: DBAPIError) -> bool:
    text = str(exc.orig or exc).lower()
    return any(
        n in text
        for n in (
            "connect",
            "server closed",
            "terminating",
            "timeout",
            "database is locked",
            "the database system is",
            "shutting down",
            "starting up",
            "connection",
        )
    )
