"""Builds the FastAPI application: knowledge, services, error handlers, routes."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds_service import __version__
from cds_service.errors import CdsError
from cds_service.evaluation import response_bytes
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.persistence import attach, lifespan
from cds_service.protocol import ErrorBody
from cds_service.routes import router
from cds_service.services import service_definitions
from cds_service.settings import Settings, get_settings

log = logging.getLogger("cds_service")


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    body = response_bytes(ErrorBody(error=code, message=message, details=details))
    return Response(body, status_code=status, media_type="application/json")


def create_app(settings: Settings | None = None, knowledge: Knowledge | None = None) -> FastAPI:
    settings = settings or get_settings()
    knowledge = knowledge or load_knowledge(settings.cards_dir)
    app = FastAPI(title="b12-cds", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.knowledge = knowledge
    app.state.services = service_definitions(knowledge)
    attach(app, settings, knowledge)

    @app.exception_handler(CdsError)
    async def _cds_error(_: Request, exc: CdsError) -> Response:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        details = [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        return error_response(400, "invalid_request", "The request is not valid.", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(500, "internal_error", "The service failed; the error has been logged.")

    app.include_router(router)
    return app
