"""The FastAPI application. Never imports torch (a test checks sys.modules)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

import service.models  # noqa: F401  (every table known before the first query)
from service.artifacts.router import router as artifacts_router
from service.core.body_limit import BodyLimitMiddleware
from service.core.errors import ErrorResponse, install_error_handlers
from service.core.middleware import RequestIdMiddleware
from service.device_specs.router import router as device_specs_router
from service.health.router import router as health_router
from service.jobs.router import router as jobs_router
from service.metrics.http import MetricsMiddleware
from service.metrics.router import router as metrics_router
from service.presets.router import router as presets_router
from service.sweeps.router import router as sweeps_router
from service.ui.render import HERE as UI_DIR
from service.ui.render import SecurityHeadersMiddleware
from service.ui.router import router as ui_router
from service.users.router import me_router
from service.users.router import router as admin_users_router
from service.version import version_info
from service.weights.router import router as weights_router


def _operation_id(route: APIRoute) -> str:
    return route.name  # every route names its operation_id explicitly; this is the fallback


def create_app() -> FastAPI:
    app = FastAPI(
        title="cttv2",
        summary="Analog in-memory training jobs: c-TTv2 on Swin-ViT, simulated with IBM aihwkit",
        version=version_info()["version"],
        generate_unique_id_function=_operation_id,
        responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    )
    install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)  # /ui only: CSP, nosniff, frame-ancestors
    app.add_middleware(BodyLimitMiddleware)  # inside the request id: a 413 is logged with it
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(MetricsMiddleware)  # outermost: a request's whole time, by route template

    v1 = APIRouter(prefix="/v1")
    for router in (
        device_specs_router,
        jobs_router,
        artifacts_router,
        presets_router,
        sweeps_router,
        weights_router,
        admin_users_router,
        me_router,
    ):
        v1.include_router(router)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(v1)
    app.include_router(ui_router)  # the dashboard (service/ui), signed in by a session cookie
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")
    return app


app = create_app()
