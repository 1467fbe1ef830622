"""One hook call from raw body to CDS response: the path shared by `serve` and `evaluate`."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from cds_service.assessment import Assessment, assess
from cds_service.draft_orders import (
    DraftOrders,
    draft_medications,
    draft_resources,
    read_drafts,
    read_drafts_and_selected,
    selected_only,
)
from cds_service.errors import BadRequest, NotFound, PreconditionFailed
from cds_service.facts import extract_facts
from cds_service.knowledge import Knowledge
from cds_service.order_rendering import render_order_card
from cds_service.order_rules import (
    OrderAssessment,
    assess_order_select,
    assess_order_sign,
    order_select_cannot_fire,
    order_sign_cannot_fire,
)
from cds_service.patient_data import PatientData, from_prefetch
from cds_service.prefetch import unchecked
from cds_service.protocol import (
    CdsResponse,
    HookRequest,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
)
from cds_service.rendering import render_card
from cds_service.services import ServiceDefinition
from cds_service.textmatch import TimeCheck, no_time_limit

CONTEXT_MODELS: dict[str, type[PatientViewContext]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


@dataclass
class Evaluation:
    """The response plus what the audit and logs may record (no patient data)."""

    response: CdsResponse
    assessment: Assessment | OrderAssessment | None = None
    resources: int = 0
    skipped: int = 0
    other_patient: int = 0  # resources naming another patient, left out


def validation_details(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    """Pydantic errors without the offending input values (they may hold patient data)."""
    return [
        {"loc": prefix + ".".join(str(p) for p in err["loc"]), "msg": err["msg"]}
        for err in exc.errors()
    ]


UTF8_BOM = b"\xef\xbb\xbf"


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object from a body; a leading UTF-8 byte-order mark is ignored, as RFC 8259 allows."""
    try:
        data = orjson.loads(body.removeprefix(UTF8_BOM))
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def parse_request(service: ServiceDefinition, data: dict[str, Any]) -> tuple[HookRequest, PatientViewContext]:
    """The validated envelope and context, or BadRequest naming what is wrong."""
    try:
        request = HookRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("The request is not a valid CDS Hooks request.", validation_details(exc)) from None
    if request.hook != service.hook:
        raise BadRequest(f"Service {service.id} answers the {service.hook} hook, not the one in the request.")
    try:
        context = CONTEXT_MODELS[service.hook].model_validate(request.context)
    except ValidationError as exc:
        raise BadRequest(
            f"The context is not valid for the {service.hook} hook.", validation_details(exc, "context.")
        ) from None
    return request, context


def find_service(services: dict[str, ServiceDefinition], service_id: str) -> ServiceDefinition:
    service = services.get(service_id)
    if service is None:
        raise NotFound("No CDS service with this id; GET /cds-services lists them.")  # the id is not echoed
    return service


def _order_select_drafts(
    context: OrderSelectContext, knowledge: Knowledge, today: date, check: TimeCheck,
    medications: PatientData | None = None,
) -> tuple[DraftOrders, DraftOrders]:
    """What all the drafts order and what the selected ones order, each draft read once."""
    return read_drafts_and_selected(
        draft_resources(context.draftOrders), selected_only(context.draftOrders, context.selections), knowledge,
        today, check, medications if medications is not None else draft_medications(context.draftOrders),
        context.patientId)


def ruled_out_by_drafts(
    context: PatientViewContext, knowledge: Knowledge, today: date, check: TimeCheck = no_time_limit
) -> str | None:
    """For the order hooks: why the draft orders alone mean no card, so nothing need be fetched."""
    if isinstance(context, OrderSelectContext):
        all_drafts, selected = _order_select_drafts(context, knowledge, today, check)
        return order_select_cannot_fire(selected, all_drafts, knowledge)
    if isinstance(context, OrderSignContext):
        all_drafts = read_drafts(draft_resources(context.draftOrders), knowledge, today, check,
                                 draft_medications(context.draftOrders), context.patientId)
        return order_sign_cannot_fire(all_drafts, knowledge)
    return None


def evaluate(
    service: ServiceDefinition, data: dict[str, Any], knowledge: Knowledge, now: datetime,
    check: TimeCheck = no_time_limit,
) -> Evaluation:
    """Validate, gather facts, assess, render. Pure apart from the uuids on the cards; `check`
    raises DeadlineExceeded once the call's time is up (it is called between records)."""
    request, context = parse_request(service, data)
    patient_data = from_prefetch(request.prefetch, context.patientId, service.prefetch.keys())
    if patient_data.patient is None and patient_data.foreign_patient:
        # Age and sex would be unknown, so the age exclusion could not hold: do not guess.
        raise PreconditionFailed(
            "The Patient resource sent or fetched is not the patient in context.",
            [{"key": "patient", "reason": "another patient's record"}],
        )
    today = now.date()
    facts = extract_facts(patient_data, knowledge, check, today)
    facts.unchecked = unchecked(service.prefetch, request.prefetch) | ({"therapy"} if facts.unnamed_medications else set())
    who = (context.patientId, now, context.encounterId, context.userId)
    skipped = facts.unreadable
    cards = []
    if isinstance(context, OrderSelectContext | OrderSignContext):
        medications = draft_medications(context.draftOrders)
        if isinstance(context, OrderSelectContext):
            all_drafts, selected = _order_select_drafts(context, knowledge, today, check, medications)
            order_assessment = assess_order_select(facts, selected, all_drafts, knowledge, today)
        else:
            all_drafts = read_drafts(draft_resources(context.draftOrders), knowledge, today, check, medications,
                                     context.patientId)
            order_assessment = assess_order_sign(facts, all_drafts, knowledge, today)
        if order_assessment.fires:
            cards.append(render_order_card(order_assessment, knowledge, *who))
        return Evaluation(CdsResponse(cards=cards), order_assessment, patient_data.count(), skipped + all_drafts.skipped,
                          patient_data.other_patient)
    assessment = assess(facts, knowledge, today)
    if assessment.fires:
        cards.append(render_card(assessment, knowledge, *who))
    return Evaluation(CdsResponse(cards=cards), assessment, patient_data.count(), skipped, patient_data.other_patient)


def response_bytes(response: BaseModel) -> bytes:
    return orjson.dumps(response.model_dump(mode="json", exclude_none=True))
