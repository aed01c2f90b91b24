"""One error shape for every 4xx/5xx: {"error": {"code", "message", "fields"?}}.

Raise APIError (or one of its subclasses) from services; the handlers below turn it, request
validation errors, unknown routes and database outages into that shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("cttv2.api")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class APIError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.fields = fields
        self.headers = headers
        if status_code is not None:
            self.status_code = status_code


class NotFound(APIError):
    status_code = 404
    code = "not_found"


class Conflict(APIError):
    status_code = 409
    code = "conflict"


class Unauthorized(APIError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid API token") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(APIError):
    status_code = 403
    code = "forbidden"


class Invalid(APIError):
    status_code = 422
    code = "validation_error"


class TooLarge(APIError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(APIError):
    status_code = 429
    code = "rate_limited"


class Unavailable(APIError):
    status_code = 503
    code = "service_unavailable"


def field_error(
    field: str, message: str, *, summary: str | None = None, code: str | None = None, error: type[APIError] = Invalid
) -> APIError:
    """An error (a 422 unless `error` says otherwise) blaming one field: fields has that field
    and message; the top message is `summary`, by default "<field>: <message>"."""
    return error(summary or f"{field}: {message}", code=code, fields=[{"field": field, "message": message}])


# Pydantic location -> dotted field name; the leading "body"/"query" part is dropped.
def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, parts = parts[0], parts[1:]
        if not parts:
            return where
    # Drop union-branch tags pydantic inserts (e.g. "DeviceSpec", "function-after[...]").
    parts = [p for p in parts if not (p[:1].isupper() or "[" in p)]
    return ".".join(parts) or "body"


def validation_fields(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        msg = err.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "json_invalid":  # loc is (body, character position)
            ctx = err.get("ctx") or {}
            detail = ctx.get("error", "")
            out.append({"field": "body", "message": f"invalid JSON{': ' + detail if detail else ''}"})
            continue
        out.append({"field": field_name(err.get("loc", ())), "message": msg})
    return out


def invalid_from(exc: ValidationError, prefix: str = "") -> Invalid:
    """A 422 from a pydantic error raised while validating part of a request."""
    fields = validation_fields(exc.errors())
    if prefix:
        for f in fields:
            f["field"] = prefix if f["field"] == "body" else f"{prefix}.{f['field']}"
    first = fields[0] if fields else {"field": prefix or "body", "message": "invalid"}
    return Invalid(f"{first['field']}: {first['message']}", fields=fields)


def _body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if fields:
        err["fields"] = fields
    return {"error": err}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(_body(exc.code, exc.message, exc.fields), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A route on core.deps.Caller checks the token with its own read, after validation:
        # an invalid request is first checked for a valid token, so that without one it is a
        # 401 (as on every route), never a 422 that describes the request to a stranger.
        caller = getattr(request.state, "caller", None)
        if caller is not None:
            try:
                await caller.check()
            except APIError as refused:
                return await _api_error(request, refused)
            except (OperationalError, PoolTimeoutError) as down:
                return await _db_down(request, down)
        fields = validation_fields(list(exc.errors()))
        first = fields[0] if fields else {"field": "body", "message": "invalid request"}
        return JSONResponse(_body("validation_error", f"{first['field']}: {first['message']}", fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse(_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DataError)
    async def _bad_value(_: Request, exc: DataError) -> JSONResponse:
        # A value the validators let through but the database cannot store (a NUL character
        # in a text, an unpaired surrogate, a number out of a column's range): the request's
        # fault, so a 422; the database's own one-line reason, never the SQL or parameters.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        log.info("value refused by the database: %s", reason)
        return JSONResponse(_body("validation_error", f"body: a value cannot be stored: {reason}"), status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not _is_connection_error(exc):
            log.exception("database error")
            return JSONResponse(_body("internal_error", "internal error"), status_code=500)
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return JSONResponse(
            _body("database_unavailable", "the database is unavailable; try again shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(_body("internal_error", "internal error"), status_code=500)


def _is_connection_error(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    needles = (
        "connection",
        "could not connect",
        "server closed",
        "terminating",
        "timeout",
        "database is locked",
        "the database system is",
        "shutting down",
        "starting up",
    )
    return any(n in text for n in needles)
