"""GET /metrics: Prometheus text exposition format, for an admin token (Bearer, like
/v1/admin: 401 without a valid token, 403 for a non-admin)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from service.core.errors import ErrorResponse
from service.metrics.collector import DatabaseCollector
from service.users.router import Admin

# The database figures in a registry of their own: the process registry (REGISTRY: the HTTP
# metrics, process and Python runtime) never runs a query when something else reads it.
database_registry = CollectorRegistry(auto_describe=False)
database_registry.register(DatabaseCollector())

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        403: {"model": ErrorResponse},
    },
)
def metrics(admin: Admin) -> Response:
    """Prometheus metrics (admin only): HTTP requests of this process; jobs, queue, workers and
    artifacts from the database."""
    body = generate_latest(REGISTRY) + generate_latest(database_registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
