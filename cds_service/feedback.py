"""Feedback calls: validate the body, store every item before answering.

Unlike the audit, feedback is written synchronously: the client should learn whether it
was kept. The write is bounded by `db_timeout`; an unreachable database answers 503.
"""

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DataError, SQLAlchemyError

from cds_service.audit import naive_utc
from cds_service.errors import BadRequest, ServiceUnavailable
from cds_service.evaluation import parse_json_object, validation_details
from cds_service.protocol import FeedbackRequest
from cds_service.storage import Storage, storable

log = logging.getLogger("cds_service.feedback")


# An ISO 8601 date-time in the extended form: a date, `T`, a time to at least the minute and an
# optional zone (`Z` or an offset). The calendar values are checked by pydantic afterwards; this
# keeps out what it would otherwise also take: Unix seconds, bare dates, a space for `T`.
ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}([.,]\d+)?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII)
TIMESTAMP_MSG = "outcomeTimestamp must be an ISO 8601 date-time string, e.g. 2026-11-25T02:00:14Z"


def parse_feedback(body: bytes) -> FeedbackRequest:
    data = parse_json_object(body)
    if data.get("feedback") == []:  # nothing to store, but the spec's answer to feedback is 200
        return FeedbackRequest.model_construct(feedback=[])
    details = _timestamp_errors(data.get("feedback"))
    try:
        request = FeedbackRequest.model_validate(data)
    except ValidationError as exc:
        named = {d["loc"] for d in details}
        details = [d for d in validation_details(exc) if d["loc"] not in named] + details
    if details:
        raise BadRequest("The request is not a valid CDS Hooks feedback body.", details)
    return request


def _timestamp_errors(items: Any) -> list[dict[str, Any]]:
    """The spec asks for an ISO 8601 date-time, and pydantic also parses numbers and bare dates."""
    if not isinstance(items, list):
        return []
    return [
        {"loc": f"feedback.{i}.outcomeTimestamp", "msg": TIMESTAMP_MSG}
        for i, item in enumerate(items)
        if isinstance(item, dict) and "outcomeTimestamp" in item
        and not (isinstance(item["outcomeTimestamp"], str) and ISO_DATE_TIME.fullmatch(item["outcomeTimestamp"]))
    ]


USER_COMMENT_MAX = 4000  # characters kept of a clinician's comment; the rest is cut, not refused


def feedback_rows(service_id: str, request: FeedbackRequest) -> list[dict[str, Any]]:
    received = naive_utc(datetime.now(UTC))
    rows = []
    for i, item in enumerate(request.feedback):
        reason = item.overrideReason.reason if item.overrideReason else None
        comment = item.overrideReason.userComment if item.overrideReason else None
        try:
            outcome_at = naive_utc(item.outcomeTimestamp)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 lies past year 9999 in UTC
            raise BadRequest("The feedback is not valid.", [
                {"loc": f"feedback.{i}.outcomeTimestamp", "msg": "out of range once converted to UTC"}
            ]) from None
        rows.append({
            "card_uuid": str(item.card),
            "service_id": service_id,
            "outcome": item.outcome,
            "accepted_suggestions": [storable(s.id) for s in item.acceptedSuggestions or []],
            "override_system": storable(reason.system) if reason else None,
            "override_code": storable(reason.code) if reason else None,
            "user_comment": storable(comment[:USER_COMMENT_MAX]) if comment else comment,
            "outcome_at": outcome_at,
            "received_at": received,
        })
    return rows


async def store_feedback(storage: Storage, rows: list[dict[str, Any]]) -> None:
    """All rows in one transaction, or ServiceUnavailable within about `db_timeout`."""
    try:
        await asyncio.wait_for(asyncio.to_thread(storage.add_feedback, rows), storage.timeout + 1)
    except DataError:
        log.warning("feedback refused by the database: a value cannot be stored")
        raise BadRequest("A value in the feedback cannot be stored.") from None
    except (SQLAlchemyError, TimeoutError) as exc:
        log.error("feedback not stored: database unavailable (%s)", type(exc).__name__)
        raise ServiceUnavailable("The feedback could not be stored now; try again later.") from None
