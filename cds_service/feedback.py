"""Feedback calls: validate the body, store every item before answering.

Unlike the audit, feedback is written synchronously: the client should learn whether it
was kept. The write is bounded by `db_timeout`; an unreachable database answers 503.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DataError, SQLAlchemyError

from cds_service.errors import BadRequest, ServiceUnavailable
from cds_service.evaluation import parse_json_object, validation_details
from cds_service.protocol import FeedbackRequest
from cds_service.storage import Storage, WriteHandoff, describe_db_error, storable
from cds_service.tables import naive_utc

log = logging.getLogger("cds_service.feedback")


def parse_feedback(body: bytes) -> FeedbackRequest:
    try:
        return FeedbackRequest.model_validate(parse_json_object(body))
    except ValidationError as exc:
        raise BadRequest("The request is not a valid CDS Hooks feedback body.", validation_details(exc)) from None


USER_COMMENT_MAX = 4000  # characters kept of a clinician's comment; the rest is cut, not refused
CLOCK_SKEW_LOGGED = timedelta(minutes=1)  # a client clock further ahead than this is worth a log line


def feedback_rows(service_id: str, request: FeedbackRequest, keep_comments: bool = False) -> list[dict[str, Any]]:
    """The rows to store. A clinician's free-text comment is kept only with `keep_comments`
    (CDS_STORE_USER_COMMENTS): it often names the patient, and no other column holds patient data."""
    received = naive_utc(datetime.now(UTC))
    rows = []
    for i, item in enumerate(request.feedback):
        reason = item.overrideReason.reason if item.overrideReason else None
        comment = item.overrideReason.userComment if item.overrideReason and keep_comments else None
        try:
            outcome_at = naive_utc(item.outcomeTimestamp)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 lies past year 9999 in UTC
            raise BadRequest("The feedback is not valid.", [
                {"loc": f"feedback.{i}.outcomeTimestamp", "msg": "out of range once converted to UTC"}
            ]) from None
        if outcome_at > received:
            # An outcome cannot postdate its report. Stored as claimed, a far-future time would stay
            # every card's latest outcome forever, and the report's period would misplace it.
            if outcome_at - received > CLOCK_SKEW_LOGGED:
                log.warning("feedback outcomeTimestamp ahead of this server's clock: taken as the time received")
            outcome_at = received
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


def _retrieved(task: asyncio.Future[bool]) -> None:
    if not task.cancelled():
        task.exception()


async def store_feedback(storage: Storage, rows: list[dict[str, Any]]) -> None:
    """All rows in one transaction, or ServiceUnavailable within about `db_timeout` having stored
    none of them: a write still queued or waiting for the database when the time is up is
    abandoned and rolled back; one already committing is waited for."""
    handoff = WriteHandoff()
    write = asyncio.ensure_future(asyncio.to_thread(storage.add_feedback, rows, handoff))
    write.add_done_callback(_retrieved)  # an abandoned write's failure is its own: not logged as unretrieved
    try:
        try:
            await asyncio.wait_for(asyncio.shield(write), storage.timeout + 1)
        except TimeoutError:
            if handoff.abandon():
                raise
            await write  # the commit began before the time was up: its outcome is the answer
    except DataError:
        log.warning("feedback refused by the database: a value cannot be stored")
        raise BadRequest("A value in the feedback cannot be stored.") from None
    except (SQLAlchemyError, TimeoutError) as exc:
        log.error("feedback not stored: database unavailable (%s)", describe_db_error(exc))
        raise ServiceUnavailable("The feedback could not be stored now; try again later.") from None
