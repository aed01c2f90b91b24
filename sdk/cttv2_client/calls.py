"""API calls as data: a Call is one request (method, path, arguments) and how to read its
answer. The resources build them once; Client runs them through its sync transport and
AsyncClient through its async one, so both send the same requests and parse the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from cttv2_client.models import APIModel

T = TypeVar("T")
M = TypeVar("M", bound=APIModel)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)
    idempotent: bool | None = None  # None: decided by the method and an Idempotency-Key


def parse_model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return model.model_validate(response.json())

    return parse


def parse_nothing(response: httpx.Response) -> None:
    return None


def parse_json(response: httpx.Response) -> Any:
    return response.json()


def get(path: str, model: type[M], **kwargs: Any) -> Call[M]:
    return Call("GET", path, parse_model(model), kwargs)


def delete(path: str) -> Call[None]:
    return Call("DELETE", path, parse_nothing)


@dataclass
class Pager(Generic[M]):
    """A paged list endpoint, followed by next_cursor: call() is the next page's request,
    returning (items, more)."""

    path: str
    model: type[M]
    params: dict[str, Any]
    page_size: int | None = None

    def __post_init__(self) -> None:
        self.params = dict(self.params)
        if self.page_size:
            self.params["limit"] = self.page_size

    def call(self) -> Call[tuple[list[M], bool]]:
        return Call("GET", self.path, self._parse, {"params": dict(self.params)})

    def _parse(self, response: httpx.Response) -> tuple[list[M], bool]:
        page = response.json()
        items = [self.model.model_validate(item) for item in page.get("items", [])]
        cursor = page.get("next_cursor")
        if cursor:
            self.params["cursor"] = cursor
        return items, bool(cursor)
