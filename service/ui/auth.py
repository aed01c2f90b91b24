"""Signing in to the dashboard: an API token becomes a browser session.

The cookie holds a random session id (only its keyed hash is stored, like tokens). Every page
looks the session up together with the token it was made from, so revoking the token, its
expiry or disabling the user ends the session on the next request. The token itself is never
stored in the browser, a URL, a page or a log line.

State-changing forms carry the session's CSRF token; SameSite=Strict keeps the cookie off
cross-site requests as well, and a cross-site page cannot read the CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.db import utcnow
from service.core.errors import APIError, Forbidden, Unauthorized
from service.core.security import hash_token
from service.ui.models import UiSession
from service.users.models import ApiToken, User
from service.users.service import authenticate

COOKIE = "cttv2_session"


class SignInRequired(APIError):
    """No valid session: the page redirects to the sign-in form."""

    status_code = 401
    code = "sign_in_required"


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a page, with the CSRF token its forms carry."""

    user: User
    csrf: str


def sign_in(session: Session, settings: Settings, token: str) -> tuple[str, UiSession]:
    """(the cookie value, the stored session) for a valid token; Unauthorized otherwise."""
    user = authenticate(session, settings, token)  # same checks and messages as the API
    pepper = settings.token_pepper.get_secret_value()
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token, pepper)))
    assert record is not None and record.user_id == user.id
    session_id = secrets.token_urlsafe(32)
    row = UiSession(
        session_hash=hash_token(session_id, pepper),
        token_id=record.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=record.expires_at,
    )
    session.add(row)
    # Sessions whose token has expired are never used again: drop them as new ones come.
    session.execute(delete(UiSession).where(UiSession.expires_at < utcnow()))
    session.commit()
    return session_id, row


def viewer(session: Session, settings: Settings, session_id: str | None) -> Viewer:
    """The user behind a session cookie, checked against its token on every request."""
    if not session_id or len(session_id) > 200:
        raise SignInRequired("sign in")
    digest = hash_token(session_id, settings.token_pepper.get_secret_value())
    row = session.execute(
        select(UiSession, ApiToken, User)
        .join(ApiToken, ApiToken.id == UiSession.token_id)
        .join(User, User.id == ApiToken.user_id)
        .where(UiSession.session_hash == digest)
    ).first()
    if row is None:
        raise SignInRequired("your session has ended: sign in again")
    ui_session, token, user = row
    now = utcnow()
    ended = (
        token.revoked_at is not None
        or (token.expires_at is not None and token.expires_at <= now)
        or user.disabled_at is not None
    )
    if ended:
        session.delete(ui_session)
        session.commit()
        raise SignInRequired("your token was revoked or has expired, or your user is disabled: sign in again")
    return Viewer(user=user, csrf=ui_session.csrf_token)


def check_csrf(viewer: Viewer, given: str | None) -> None:
    if not given or not hmac.compare_digest(given.encode(), viewer.csrf.encode()):
        raise Forbidden("this form has expired or did not come from this site: reload the page and try again")


def sign_out(session: Session, settings: Settings, session_id: str | None) -> None:
    if session_id:
        digest = hash_token(session_id, settings.token_pepper.get_secret_value())
        session.execute(delete(UiSession).where(UiSession.session_hash == digest))
        session.commit()


__all__ = ["COOKIE", "SignInRequired", "Unauthorized", "Viewer", "check_csrf", "sign_in", "sign_out", "viewer"]
