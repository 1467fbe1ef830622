"""Builds the FastAPI application: knowledge, services, error handlers, routes."""

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service import __version__
from cds_service.allowlist import is_loopback_url
from cds_service.auth import Authenticator, ClientJwtMiddleware
from cds_service.errors import CdsError
from cds_service.evaluation import response_bytes
from cds_service.fhir_fetch import new_client
from cds_service.gathering import Fetcher
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.limits import BodyLimitMiddleware
from cds_service.logs import REQUEST_ID_HEADER, CallTraceMiddleware, configure_logging
from cds_service.openapi import install as install_openapi
from cds_service.persistence import attach, storage_lifespan
from cds_service.protocol import ErrorBody
from cds_service.routes import router
from cds_service.services import service_definitions
from cds_service.settings import Settings, get_settings, unknown_setting_names

GC_YOUNG_THRESHOLD = 10_000
log = logging.getLogger("cds_service")


def tune_gc() -> None:
    """Garbage-collector settings for a process that parses large JSON bodies, applied once started."""
    # Everything loaded so far (knowledge, models, libraries) lives for the whole process:
    # keep it out of the cyclic GC, which otherwise rescans it while large requests parse.
    gc.freeze()
    # One request parses thousands of short-lived JSON containers; at the default threshold
    # (700) the collector runs several times per call for garbage that is freed anyway.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = response_bytes(ErrorBody(error=code, message=message, details=details))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class UnexpectedErrorMiddleware:
    """A failure nobody foresaw, answered as a JSON 500 inside the middleware that tags every answer
    (request id, CORS), so a browser client can read it and the log line carries the request id;
    Starlette's own last resort sits outside them both."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:  # half an answer is already sent: nothing better can follow it
                raise
            await internal_error(scope["method"], scope["path"], exc)(scope, receive, send)


def internal_error(method: str, path: str, exc: BaseException) -> Response:
    """Log an unforeseen failure by type and place (the formatters drop its text, which may quote
    input) and answer a JSON 500."""
    log.error("internal error on %s %s: %s", method, path[:200], type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", "The service failed; the error has been logged.")


# what a refused preflight asked for, by Starlette's failure word -> the request header naming it
CORS_FAILURES = {
    "origin": "Origin",
    "method": "Access-Control-Request-Method",
    "headers": "Access-Control-Request-Headers",
    "private-network": "Access-Control-Request-Private-Network",
}


class JsonCorsMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in JSON like every other error here."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ").split(", ")
        details = [{"loc": CORS_FAILURES.get(word, word), "msg": "not allowed"} for word in refused]
        headers = {k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")}
        names = ", ".join(d["loc"] for d in details)
        return error_response(response.status_code, "cors_not_allowed",
                              f"The CORS preflight asks for what this service does not allow: {names}.",
                              details, headers)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Storage and one pooled HTTP client (FHIR fetches, JWKS loads), both closed at shutdown."""
    settings: Settings = app.state.settings
    async with storage_lifespan(app), new_client(settings.fhir_deadline_seconds) as client:
        app.state.fetcher = Fetcher.from_settings(settings, client)
        app.state.authenticator.client = client
        tune_gc()
        yield


def create_app(settings: Settings | None = None, knowledge: Knowledge | None = None) -> FastAPI:
    settings = settings or get_settings()
    knowledge = knowledge or load_knowledge(settings.cards_dir)
    app = FastAPI(title="b12-cds", version=__version__, docs_url=None, redoc_url=None, lifespan=_lifespan,
                  redirect_slashes=False)  # never a 307: routes take a trailing slash, other paths get a JSON 404
    app.state.settings = settings
    app.state.authenticator = Authenticator(settings)
    for problem in app.state.authenticator.jwks_file_problems():
        log.error("CDS_TRUSTED_ISSUERS %s; every call from that issuer will be refused", problem)
    if not app.state.authenticator.enabled:
        log.warning("JWT verification is OFF: no CDS_TRUSTED_ISSUERS configured; any caller is accepted")
        if settings.fhir_allowed_servers and "*" in settings.cors_origins:
            # a closed network does not keep out a browser on it: any page it opens may call this service
            log.warning("JWT verification is off, FHIR fetching is allowed from %d server(s) and CORS admits every "
                        "origin: any web page open in a browser that reaches this service can read patient data "
                        "through it from those servers; set CDS_TRUSTED_ISSUERS, or CDS_CORS_ORIGINS to the "
                        "origins you use", len(settings.fhir_allowed_servers))
    elif not settings.public_base_url:
        # a token minted for another service would pass if the caller set Host to that service's host
        log.warning("CDS_PUBLIC_BASE_URL is not set: only calls to a loopback address (localhost) can be "
                    "verified, since the URL as received takes its host from the caller's Host header; every "
                    "other call is refused (401) until it is set to the URL the EHR calls")
    plain = [url for url in settings.fhir_allowed_servers + [u for i in settings.trusted_issuers.values() for u in i.fhir_servers]
             if url.lower().startswith("http://") and not is_loopback_url(url)]
    if plain:  # allowed (a FHIR server on a closed container network), but the token and PHI go unencrypted
        log.warning("%d allowed FHIR server(s) use plain http off loopback: the access token and the patient's "
                    "data cross the network unencrypted; use https in production", len(plain))
    if settings.fhir_deadline_seconds >= settings.request_deadline_seconds:
        log.warning("CDS_FHIR_DEADLINE_SECONDS (%g) is not below CDS_REQUEST_DEADLINE_SECONDS (%g): a slow FHIR "
                    "server turns calls into 503s instead of cards from what was prefetched",
                    settings.fhir_deadline_seconds, settings.request_deadline_seconds)
    app.state.knowledge = knowledge
    app.state.services = service_definitions(knowledge, settings.prefetch_date_tokens)
    reviews = [r for vs in knowledge.valuesets.values() for r in vs.review]
    unverified = sum(r.status == "unverified" for r in reviews)
    log.info("knowledge %s: %d value sets, %d codes, %d not yet verified (cds-service codes --unverified)",
             knowledge.version, len(knowledge.valuesets), len(reviews), unverified)
    attach(app, settings, knowledge)

    @app.exception_handler(CdsError)
    async def _cds_error(_: Request, exc: CdsError) -> Response:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        details = [{"loc": ".".join(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        return error_response(400, "invalid_request", "The request is not valid.", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), None, dict(exc.headers or {}))  # 405 keeps its Allow

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        # JSON may nest 1,024 levels (orjson's limit); Python's own recursion stops near 1,000, so a
        # value nested that deep where the service reads it is the request's fault, not the service's
        log.error("request refused (400): recursion too deep on %s %s, a value nested near JSON's 1,024 levels "
                  "or a fault of this service", request.method, request.url.path)
        return error_response(400, "invalid_request", "The request holds a value nested too deeply to read.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:  # outside the middleware below
        return internal_error(request.method, request.url.path, exc)

    app.include_router(router)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, on_error=error_response)
    app.add_middleware(ClientJwtMiddleware, authenticator=app.state.authenticator, on_error=error_response)
    app.add_middleware(UnexpectedErrorMiddleware)  # inside CORS and the request id, around everything else
    app.add_middleware(
        JsonCorsMiddleware, allow_origins=settings.cors_origins, allow_private_network=settings.cors_private_network,
        allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["authorization", "content-type", REQUEST_ID_HEADER.lower()],
        expose_headers=[REQUEST_ID_HEADER, "WWW-Authenticate"],  # a browser client reads why a 401 happened
    )
    app.add_middleware(CallTraceMiddleware)
    return app


def serve_app() -> FastAPI:
    """The factory `serve` hands to uvicorn: JSON logging in each worker, then the app."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    for name in unknown_setting_names(os.environ):
        log.warning("%s names no setting and is ignored: misspelt? (the settings are listed in the README)", name)
    return create_app(settings)
