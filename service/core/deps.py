"""Dependencies the routers share: a database session and the authenticated user, or the
caller's token for a route that checks it itself.

A sync dependency costs a worker-thread hop per request (FastAPI runs it in the threadpool),
so what needs no I/O runs on the event loop: the settings, opening the session (a Session
takes its connection on first use). Two ways to authenticate:

- CurrentUser (most routes): the token read in a hop of its own, before the route's; closing
  the session is one more hop only when it still holds a transaction.
- Caller (the hot routes: a job's poll, the job list, a submit): nothing is read before the
  route; the route checks the token in its own single hop, in the same statement as its read
  where it can (a poll: one statement, one round trip, no ORM objects). Same checks, same
  401s, in the same order before a 422 (core.errors).

A GET under /v1 reads in autocommit on PostgreSQL (core.db.get_read_engine): no BEGIN and
ROLLBACK round trips."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.core.config import Settings, get_settings
from service.core.db import dialect_name, get_read_engine, get_read_sessionmaker, get_sessionmaker
from service.users.models import User

T = TypeVar("T")


def close_session(session: Session) -> None:
    try:
        session.close()
    except SQLAlchemyError as exc:
        # The connection died after the response was built (the database went away):
        # the pool discards it; the next request gets a fresh one or a 503.
        logging.getLogger("cttv2.api").warning("session close failed: %s", str(exc).splitlines()[0])


def _reads_only(request: Request) -> bool:
    """GET and HEAD under /v1 never write (none of those routes commits)."""
    return request.method in ("GET", "HEAD") and request.scope["path"].startswith("/v1/")


async def get_session(request: Request) -> AsyncIterator[Session]:
    session = (get_read_sessionmaker if _reads_only(request) else get_sessionmaker)()()
    try:
        yield session
    finally:
        if session.get_transaction() is None:
            session.close()  # nothing begun (or already closed): no I/O
        else:
            with anyio.CancelScope(shield=True):  # a client that went away still gives it back
                await anyio.to_thread.run_sync(close_session, session)


async def settings_dependency() -> Settings:
    return get_settings()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]

_bearer = HTTPBearer(auto_error=False, description="an API token from `cttv2 admin create-user`")


async def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    token = credentials.credentials if credentials else None
    user = await run_in_threadpool(_authenticate, session, settings, token)
    request.state.user_id = user.id
    return user


def _authenticate(session: Session, settings: Settings, token: str | None) -> User:
    from service.users.service import authenticate

    if dialect_name(session) == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})  # a write's too
    user = authenticate(session, settings, token)
    # The token read in autocommit (SQLite: no transaction for a read): ending it costs no
    # round trip and gives the connection back to the pool while the request waits for its
    # route's hop (many requests queued between hops, e.g. 200 event streams opening at
    # once, no longer each hold one and starve the pool); a write's transaction begins in
    # its route. The user stays loaded (expire_on_commit=False).
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The request's bearer token (its digest), not yet checked: for the hot routes, which check
    it in their own thread hop (`read`, `session`), in the same statement as their read where
    they can, instead of CurrentUser's hop and round trip of its own before the route's."""

    digest: str

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """`fn(connection)` in one worker-thread hop, on a pooled connection in autocommit (a
        read: no BEGIN, no ROLLBACK), given back to the pool in the same hop."""

        def call() -> T:
            with get_read_engine().connect() as conn:
                return fn(conn)

        return await run_in_threadpool(call)

    async def session(self, fn: Callable[[Session, User], T]) -> T:
        """`fn(session, user)` in one worker-thread hop: the token checked in the session's
        transaction (users.service.user_of), then the route's work, and the session closed in
        the same hop (for a write: one hop where CurrentUser and the route take two)."""

        def call() -> T:
            from service.users.service import user_of

            session = get_sessionmaker()()
            try:
                return fn(session, user_of(session, self.digest))
            finally:
                close_session(session)

        return await run_in_threadpool(call)

    async def check(self) -> None:
        """Unauthorized unless the token lets its user in (for a request refused before its
        route ran: core.errors)."""
        await self.read(self.user_id)

    def user_id(self, conn: Connection) -> int:
        """The caller's user id, the token checked (Unauthorized as authenticate), for a `read`
        whose own statement does not check it."""
        from service.users.service import CALLER_BY_DIGEST, check_caller

        return check_caller(conn.execute(CALLER_BY_DIGEST, {"digest": self.digest}).first()).caller_id


async def get_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    from service.users.service import token_digest

    caller = Caller(token_digest(settings, credentials.credentials if credentials else None))
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


# Ids are 32-bit on every backend: a larger number is a 422, not a database error.
from fastapi import Path  # noqa: E402

ID = Annotated[int, Path(ge=1, le=2_147_483_647, description="object id")]
