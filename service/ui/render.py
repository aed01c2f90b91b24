"""How dashboard pages are rendered: Jinja2 templates (autoescaped), HTML error pages instead
of the API's JSON errors, and the security headers every /ui response carries."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.errors import APIError, validation_fields
from service.ui.auth import SignInRequired
from service.version import version_info

HERE = Path(__file__).parent
PREFIX = "/ui"

# script-src 'self': no inline script runs, only the package's own files; data for a page
# travels in <script type="application/json"> blocks, which are never executed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def fmt_pct(value: Any, digits: int = 2) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return ""
    return f"{100 * value:.{digits}f} %"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(time=fmt_time, duration=fmt_duration, pct=fmt_pct, bytes=fmt_bytes)
templates.env.globals.update(asset_version=version_info()["version"], prefix=PREFIX)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    title = {404: "Not found", 403: "Forbidden", 409: "Conflict", 422: "Invalid request"}.get(status_code, "Error")
    return page(request, "error.html", status_code=status_code, title=title, message=message)


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)


class UiRoute(APIRoute):
    """A page route: the API's errors become HTML pages (a missing session a redirect to the
    sign-in form), with the same status codes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return sign_in_redirect(request)
            except APIError as exc:
                return error_page(request, exc.status_code, exc.message)
            except RequestValidationError as exc:
                fields = validation_fields(exc.errors())
                if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
                    return error_page(request, 404, "no such page")
                first = fields[0] if fields else {"field": "request", "message": "invalid"}
                return error_page(request, 422, f"{first['field']}: {first['message']}")

        return page_handler


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every response under /ui (pages, errors, assets, streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *[(k, v) for k, v in SECURITY_HEADERS if k not in names],
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
