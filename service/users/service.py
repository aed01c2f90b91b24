"""Users and their API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.db import execute_count, utcnow
from service.core.errors import Conflict, NotFound, Unauthorized
from service.core.pagination import PageParams, paginate
from service.core.security import hash_token, new_token
from service.jobs.models import Job, JobStatus
from service.users.models import ApiToken, User
from service.users.schemas import MeOut, MyLimits, MyUsage
from service.users.storage import usage

RowT = TypeVar("RowT", bound=Row)


class UserError(ValueError):
    """A user-management request that cannot be done (message is for the admin)."""


def create_user(session: Session, settings: Settings, name: str, *, is_admin: bool = False) -> tuple[User, str]:
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise UserError(f"user {name!r} exists already")
    user = User(name=name, is_admin=is_admin)
    session.add(user)
    session.flush()
    token = issue_token(session, settings, user)
    return user, token


def issue_token(
    session: Session, settings: Settings, user: User, *, label: str | None = None, ttl_days: int | None = None
) -> str:
    return issue_token_record(session, settings, user, label=label, ttl_days=ttl_days)[1]


def issue_token_record(
    session: Session, settings: Settings, user: User, *, label: str | None = None, ttl_days: int | None = None
) -> tuple[ApiToken, str]:
    """A new token for user: (its stored record, the token itself, to show once)."""
    token = new_token()
    record = ApiToken(
        user_id=user.id,
        token_hash=hash_token(token, settings.token_pepper.get_secret_value()),
        prefix=token[:12],
        label=label,
        expires_at=utcnow() + timedelta(days=ttl_days or settings.token_ttl_days),
    )
    session.add(record)
    session.flush()
    return record, token


def revoke_tokens(session: Session, *, user_name: str | None = None, prefix: str | None = None) -> int:
    """Revoke every token of a user, or the tokens starting with a prefix. Returns the count."""
    stmt = update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    if user_name is not None:
        user = session.scalar(select(User).where(User.name == user_name))
        if user is None:
            raise UserError(f"no user {user_name!r}")
        stmt = stmt.where(ApiToken.user_id == user.id)
    if prefix is not None:
        if len(prefix) < 10:
            raise UserError("give at least the first 10 characters of the token")
        stmt = stmt.where(ApiToken.prefix == prefix[:12])
    return execute_count(session, stmt)


# What decides whether a token is let in, read with it (user_of) or in the same statement as a
# route's own read (CALLER_BY_DIGEST): labelled, so they never clash with the route's.
CALLER_COLUMNS = (
    User.id.label("caller_id"),
    ApiToken.revoked_at.label("caller_token_revoked_at"),
    ApiToken.expires_at.label("caller_token_expires_at"),
    User.disabled_at.label("caller_disabled_at"),
)


def check_caller(row: RowT | None) -> RowT:
    """`row`, a token's CALLER_COLUMNS (None: no such token), if it lets its user in now;
    else Unauthorized, with the reason."""
    if row is None:
        raise Unauthorized()
    if row.caller_token_revoked_at is not None:
        raise Unauthorized("API token revoked")
    expires_at = row.caller_token_expires_at
    if expires_at is not None and expires_at <= utcnow():
        raise Unauthorized("API token expired")
    if row.caller_disabled_at is not None:
        raise Unauthorized("user disabled")
    return row


def token_digest(settings: Settings, token: str | None) -> str:
    """The stored form of a bearer token (no token: Unauthorized)."""
    if not token:
        raise Unauthorized()
    return hash_token(token, settings.token_pepper.get_secret_value())


# The CALLER_COLUMNS of the token that hashes to the bind parameter `digest` (no row: no such
# token). A route adds its own read to it (e.g. an outer join to the caller's job, jobs.service)
# to check the token in the same statement; prebuilt, as the hot routes run it on every request.
CALLER_BY_DIGEST = (
    select(*CALLER_COLUMNS)
    .select_from(ApiToken)
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("digest"))
)


def authenticate(session: Session, settings: Settings, token: str | None) -> User:
    return user_of(session, token_digest(settings, token))


def user_of(session: Session, digest: str) -> User:
    """The user of the token that hashes to `digest`, if it lets them in (check_caller)."""
    row = session.execute(
        select(User, *CALLER_COLUMNS[1:])
        .join(ApiToken, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest)
    ).first()
    return check_caller(row)[0]


# -- the caller (/v1/users/me) ----------------------------------------------------------------


def me(session: Session, settings: Settings, user: User) -> MeOut:
    counts = dict(
        session.execute(
            select(Job.status, func.count())
            .where(Job.user_id == user.id, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
            .group_by(Job.status)
        ).all()
    )
    queued, running = counts.get(JobStatus.QUEUED, 0), counts.get(JobStatus.RUNNING, 0)
    storage = usage(session, settings, user.id)
    return MeOut(
        id=user.id,
        name=user.name,
        is_admin=user.is_admin,
        created_at=user.created_at,
        limits=MyLimits(
            max_active_jobs=settings.max_active_jobs_per_user,
            max_running_jobs=settings.max_running_jobs_per_user,
            max_storage_bytes=storage.quota,
        ),
        usage=MyUsage(
            active_jobs=queued + running, running_jobs=running, queued_jobs=queued, storage_bytes=storage.used
        ),
    )


# -- the admin API (/v1/admin/users) --------------------------------------------------------


def create_user_api(
    session: Session, settings: Settings, name: str, *, is_admin: bool
) -> tuple[User, tuple[ApiToken, str]]:
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} exists already", code="user_exists")
    user = User(name=name, is_admin=is_admin)
    session.add(user)
    session.flush()
    token = issue_token_record(session, settings, user, label="created by an admin")
    session.commit()
    return user, token


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def list_page(session: Session, params: PageParams):
    return paginate(session, select(User), User.id, params)


def set_disabled(session: Session, admin: User, user_id: int, disabled: bool) -> User:
    user = get_user(session, user_id)
    if disabled and user.id == admin.id:
        raise Conflict("an admin cannot disable themselves", code="cannot_disable_self")
    user.disabled_at = (user.disabled_at or utcnow()) if disabled else None
    session.commit()
    return user


def list_tokens(session: Session, user_id: int, params: PageParams):
    get_user(session, user_id)
    return paginate(session, select(ApiToken).where(ApiToken.user_id == user_id), ApiToken.id, params)


def revoke_token_by_id(session: Session, user_id: int, token_id: int) -> ApiToken:
    record = session.get(ApiToken, token_id)
    if record is None or record.user_id != user_id:
        raise NotFound(f"token {token_id} of user {user_id} not found")
    record.revoked_at = record.revoked_at or utcnow()
    session.commit()
    return record
