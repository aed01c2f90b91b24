"""Liveness, readiness and version. Unauthenticated and outside /v1."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.core import broker
from service.core.config import get_settings
from service.core.db import get_engine
from service.core.migrate import current_and_head
from service.version import version_info

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", responses={503: {"description": "not ready"}})
def readyz() -> JSONResponse:
    settings = get_settings()
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            current, head = current_and_head(conn)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head else f"at {current}, head is {head}"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unreachable: {str(exc).splitlines()[0][:200]}"
        checks["migrations"] = "unknown"
    try:
        broker.ping(settings)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"unreachable: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/version", operation_id="version")
def version() -> dict[str, str]:
    return version_info()
