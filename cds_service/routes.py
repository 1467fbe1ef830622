"""HTTP routes: parse, call the evaluation, serialise. No clinical logic here."""

import logging
import time
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cds_service.auth import caller_servers
from cds_service.errors import UnsupportedMediaType
from cds_service.evaluation import evaluate, find_service, parse_json_object, response_bytes
from cds_service.feedback import feedback_rows, parse_feedback, store_feedback
from cds_service.gathering import complete_prefetch
from cds_service.knowledge import Knowledge
from cds_service.limits import deadline, time_limit
from cds_service.logs import bind_call, safe_id
from cds_service.openapi import (
    DISCOVERY_RESPONSES,
    FEEDBACK_RESPONSES,
    HEALTH_RESPONSES,
    HOOK_RESPONSES,
    json_body,
)
from cds_service.protocol import DiscoveryResponse, FeedbackRequest, HookRequest
from cds_service.services import ServiceDefinition

log = logging.getLogger("cds_service.hook")
router = APIRouter()


# Dependencies are async: FastAPI runs plain `def` dependencies in a thread pool, a hop per call.
async def _knowledge(request: Request) -> Knowledge:
    knowledge: Knowledge = request.app.state.knowledge
    return knowledge


async def _services(request: Request) -> dict[str, ServiceDefinition]:
    services: dict[str, ServiceDefinition] = request.app.state.services
    return services


KnowledgeDep = Annotated[Knowledge, Depends(_knowledge)]
ServicesDep = Annotated[dict[str, ServiceDefinition], Depends(_services)]


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _require_json(request: Request) -> None:
    # A body with no Content-Type is read as JSON for clients that leave it out (curl --data), but not
    # from a browser (it sends Origin): a page may POST one cross-site with no CORS preflight, which
    # application/json would need, and so write feedback or start a fetch whatever CDS_CORS_ORIGINS says.
    assumed = "" if "origin" in request.headers else "application/json"
    content_type = request.headers.get("content-type", assumed).split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType("Send the request body as application/json.")
    # RFC 9110 15.5.16: a content coding the server does not decode is a 415 saying so, not "invalid JSON"
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("identity", ""):
        raise UnsupportedMediaType("Send the request body uncompressed: no Content-Encoding is accepted.")


# Each route also answers with a trailing slash (out of the schema): a redirect of a POST helps
# no EHR client, and the JWT aud is still checked against the URL as called.
@router.head("/cds-services", include_in_schema=False)  # listed first, registered last: a 405 allows GET
@router.head("/cds-services/", include_in_schema=False)
@router.get("/cds-services", responses=DISCOVERY_RESPONSES)
@router.get("/cds-services/", include_in_schema=False)
async def discovery(services: ServicesDep) -> Response:
    body = DiscoveryResponse(services=[s.describe() for s in services.values()])
    return _json(response_bytes(body))


@router.post("/cds-services/{service_id}", responses=HOOK_RESPONSES, openapi_extra=json_body(HookRequest))
@router.post("/cds-services/{service_id}/", include_in_schema=False)
async def call_service(service_id: str, request: Request, services: ServicesDep, knowledge: KnowledgeDep) -> Response:
    service = find_service(services, service_id)
    _require_json(request)
    started = time.perf_counter()
    seconds = request.app.state.settings.request_deadline_seconds
    check = time_limit(seconds)  # one budget: the awaits below are cancelled, the CPU work checks it
    async with deadline(seconds):
        data = parse_json_object(await request.body())
        bind_call(service.id, data.get("hookInstance"))
        now = datetime.now(request.app.state.settings.zone)  # the clinic's date is today's (CDS_TIMEZONE)
        data = await complete_prefetch(service, data, request.app.state.fetcher, knowledge, now.date(),
                                       caller_servers(request), check)
    result = evaluate(service, data, knowledge, now, check)
    request.app.state.audit.record(service.id, data, result)
    if result.other_patient:
        log.warning("prefetch held %d resources for another patient; left out (check the EHR's prefetch "
                    "queries) service=%s", result.other_patient, service.id)
    log.info(
        "hook answered service=%s hookInstance=%s outcome=%s cards=%d resources=%d skipped=%d ms=%.1f",
        service.id, safe_id(data.get("hookInstance")) or "(not a plain id)",
        result.assessment.outcome if result.assessment else "-",
        len(result.response.cards), result.resources, result.skipped,
        (time.perf_counter() - started) * 1000,
    )
    return _json(response_bytes(result.response))


@router.post(
    "/cds-services/{service_id}/feedback", responses=FEEDBACK_RESPONSES, openapi_extra=json_body(FeedbackRequest)
)
@router.post("/cds-services/{service_id}/feedback/", include_in_schema=False)
async def feedback(service_id: str, request: Request, services: ServicesDep) -> Response:
    service = find_service(services, service_id)
    bind_call(service.id, None)  # the `service` field of this call's log lines (feedback has no hookInstance)
    _require_json(request)
    async with deadline(request.app.state.settings.request_deadline_seconds):
        body = parse_feedback(await request.body())
    keep_comments = request.app.state.settings.store_user_comments
    await store_feedback(request.app.state.storage, feedback_rows(service.id, body, keep_comments))
    log.info("feedback stored service=%s items=%d", service.id, len(body.feedback))
    return _json(b"{}")


@router.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD
@router.head("/healthz/", include_in_schema=False)
@router.get("/healthz", responses=HEALTH_RESPONSES)
@router.get("/healthz/", include_in_schema=False)
async def healthz(request: Request, knowledge: KnowledgeDep) -> Response:
    return _json(orjson.dumps(
        {"status": "ok", "knowledgeVersion": knowledge.version, "audit": request.app.state.audit.stats()}
    ))

