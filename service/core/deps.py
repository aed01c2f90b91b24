"""Dependencies the routers share: a database session and the authenticated user."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.core.config import Settings, get_settings
from service.core.db import get_sessionmaker
from service.users.models import User


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        try:
            session.close()
        except SQLAlchemyError as exc:
            # The connection died after the response was built (the database went away):
            # the pool discards it; the next request gets a fresh one or a 503.
            logging.getLogger("cttv2.api").warning("session close failed: %s", str(exc).splitlines()[0])


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="an API token from `cttv2 admin create-user`")


def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    from service.users.service import authenticate

    user = authenticate(session, settings, credentials.credentials if credentials else None)
    request.state.user_id = user.id
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


# Ids are 32-bit on every backend: a larger number is a 422, not a database error.
from fastapi import Path  # noqa: E402

ID = Annotated[int, Path(ge=1, le=2_147_483_647, description="object id")]
