"""HTTP request count and latency per route template, method and status code: a pure ASGI
middleware (no BaseHTTPMiddleware: no extra task or body wrapping per request). The route
label is the matched route's template (`/v1/jobs/{job_id}`), never the raw path; a request
that matched no route is counted under `unmatched`. Kept in this process's registry (with
`cttv2 serve --workers N`, each process counts its own requests)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # no `_created` series: they double the output and nobody graphs them

LABELS = ("method", "route", "status")
UNMATCHED = "unmatched"

REQUESTS = Counter("cttv2_http_requests", "HTTP requests handled", LABELS)
LATENCY = Histogram(
    "cttv2_http_request_duration_seconds",
    "HTTP request latency, from the request's arrival to the end of its response",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def route_template(scope: Scope) -> str:
    """The matched route's full template. FastAPI keeps included routers nested and records
    the route it chose, with its full path (prefixes included), in the request's scope;
    Starlette's router sets scope["route"] (its path_format is the full path when the route
    is not inside an included router)."""
    fastapi_scope = scope.get("fastapi")
    context = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    for source in (context, scope.get("route")):
        template = getattr(source, "path_format", None)
        if isinstance(template, str) and template:
            return template
    return UNMATCHED


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started is answered as a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            labels = (scope["method"], route_template(scope), str(status))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - start)
