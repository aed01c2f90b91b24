"""Keyset pagination, the one way every list endpoint pages: newest first by id,
`?limit=&cursor=`, answered as {"items": [...], "next_cursor": ... | null}."""

from __future__ import annotations

import base64
import binascii
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select

from service.core.config import get_settings
from service.core.errors import field_error

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams:
    def __init__(
        self,
        limit: int | None = Query(None, ge=1, le=10_000, description="items per page"),
        cursor: str | None = Query(None, max_length=200, description="next_cursor of the previous page"),
    ) -> None:
        settings = get_settings()
        self.limit = min(limit or settings.page_size_default, settings.page_size_max)
        self.after_id = decode_cursor(cursor) if cursor else None


async def page_params(
    limit: int | None = Query(None, ge=1, le=10_000, description="items per page"),
    cursor: str | None = Query(None, max_length=200, description="next_cursor of the previous page"),
) -> PageParams:
    """PageParams as an async dependency: the same query parameters, with no worker-thread
    hop (FastAPI runs a class dependency's __init__ in its threadpool)."""
    return PageParams(limit, cursor)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id":
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise field_error("cursor", "invalid cursor", summary="cursor: not a cursor this API returned") from None


def paginate(session, stmt: Select, id_column, params: PageParams) -> tuple[list, str | None]:
    """Rows of `stmt` after the cursor, newest first, plus the next cursor (None at the end)."""
    if params.after_id is not None:
        stmt = stmt.where(id_column < params.after_id)
    result = session.execute(stmt.order_by(id_column.desc()).limit(params.limit + 1))
    # objects, or rows of columns; all() fetches them at once (iterating fetched one at a time)
    rows = result.scalars().all() if len(stmt.column_descriptions) == 1 else result.all()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)
