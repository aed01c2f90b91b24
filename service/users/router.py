"""User management for admins: /v1/admin/users (anyone else gets a 403); and for everyone,
/v1/users/me: who the token belongs to, their limits and usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from service.core.deps import ID, CurrentUser, SessionDep, SettingsDep
from service.core.errors import ErrorResponse, Forbidden
from service.core.pagination import Page, PageParams
from service.users import service
from service.users.models import User
from service.users.schemas import (
    MeOut,
    TokenCreate,
    TokenIssued,
    TokenOut,
    UserCreate,
    UserCreated,
    UserOut,
)


def require_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("this needs the admin role")
    return user


Admin = Annotated[User, Depends(require_admin)]

router = APIRouter(
    prefix="/admin/users",
    tags=["admin"],
    responses={403: {"model": ErrorResponse}},
)


me_router = APIRouter(prefix="/users", tags=["users"])


@me_router.get("/me", operation_id="get_me")
def get_me(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> MeOut:
    """The caller: id, name, role, this server's per-user job limits and the caller's usage."""
    return service.me(session, settings, user)


@router.get("", operation_id="list_users")
def list_users(admin: Admin, session: SessionDep, page: Annotated[PageParams, Depends()]) -> Page[UserOut]:
    rows, cursor = service.list_page(session, page)
    return Page(items=[UserOut.model_validate(u) for u in rows], next_cursor=cursor)


@router.post(
    "", status_code=status.HTTP_201_CREATED, operation_id="create_user", responses={409: {"model": ErrorResponse}}
)
def create_user(body: UserCreate, admin: Admin, session: SessionDep, settings: SettingsDep) -> UserCreated:
    user, token = service.create_user_api(session, settings, body.name, is_admin=body.is_admin)
    return UserCreated(user=UserOut.model_validate(user), token=_issued(token))


@router.get("/{user_id}", operation_id="get_user", responses={404: {"model": ErrorResponse}})
def get_user(user_id: ID, admin: Admin, session: SessionDep) -> UserOut:
    return UserOut.model_validate(service.get_user(session, user_id))


@router.post(
    "/{user_id}/disable",
    operation_id="disable_user",
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def disable_user(user_id: ID, admin: Admin, session: SessionDep) -> UserOut:
    """A disabled user's tokens stop working at once; their jobs are kept."""
    return UserOut.model_validate(service.set_disabled(session, admin, user_id, True))


@router.post("/{user_id}/enable", operation_id="enable_user", responses={404: {"model": ErrorResponse}})
def enable_user(user_id: ID, admin: Admin, session: SessionDep) -> UserOut:
    return UserOut.model_validate(service.set_disabled(session, admin, user_id, False))


@router.get("/{user_id}/tokens", operation_id="list_user_tokens", responses={404: {"model": ErrorResponse}})
def list_user_tokens(
    user_id: ID, admin: Admin, session: SessionDep, page: Annotated[PageParams, Depends()]
) -> Page[TokenOut]:
    rows, cursor = service.list_tokens(session, user_id, page)
    return Page(items=[TokenOut.model_validate(t) for t in rows], next_cursor=cursor)


@router.post(
    "/{user_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_user_token",
    responses={404: {"model": ErrorResponse}},
)
def create_user_token(
    user_id: ID, body: TokenCreate, admin: Admin, session: SessionDep, settings: SettingsDep
) -> TokenIssued:
    user = service.get_user(session, user_id)
    token = service.issue_token_record(session, settings, user, label=body.label, ttl_days=body.ttl_days)
    session.commit()
    return _issued(token)


@router.post(
    "/{user_id}/tokens/{token_id}/revoke", operation_id="revoke_user_token", responses={404: {"model": ErrorResponse}}
)
def revoke_user_token(user_id: ID, token_id: ID, admin: Admin, session: SessionDep) -> TokenOut:
    return TokenOut.model_validate(service.revoke_token_by_id(session, user_id, token_id))


def _issued(token) -> TokenIssued:
    record, secret = token
    return TokenIssued(**TokenOut.model_validate(record).model_dump(), token=secret)
