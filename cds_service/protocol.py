"""CDS Hooks 2.0 wire models (https://cds-hooks.hl7.org/2.0/).

Request models are lenient: unknown fields are ignored. Response models are exact: they
forbid extras and only carry what the spec defines. No model invents ids or values.
"""

import re
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# FHIR's id type, with the underscore some EHRs write (it breaks no reference)
PATIENT_ID = re.compile(r"[A-Za-z0-9\-._]{1,64}")
# An ISO 8601 date-time in the extended form: a date, `T`, a time to at least the minute and an
# optional zone (`Z` or an offset).
ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}([.,]\d+)?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII)


class Indicator(StrEnum):
    """Card urgency (spec section "Card Attributes")."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _no_empty_optional_values(self) -> Self:
        """CDS Hooks 2.0 prohibits null, "", [] and {} for an optional attribute without a value: an
        empty one becomes None, which every response leaves out (exclude_none), so a wording file
        with no links, say, never puts `"links": []` on the wire. Required fields are left as given."""
        for name in _optional_fields(type(self)):
            if getattr(self, name) in ("", [], {}):
                setattr(self, name, None)
        return self


@cache
def _optional_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """A response model's optional fields, read once per model rather than once per instance (a card
    builds some twenty of them)."""
    return tuple(name for name, field in model.model_fields.items() if not field.is_required())


class FhirAuthorization(_Lenient):
    """https://cds-hooks.hl7.org/2.0/#passing-the-access-token-to-the-cds-service"""

    access_token: str
    token_type: str = "Bearer"  # REQUIRED by the spec; left out, it is taken as the one value allowed
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    @field_validator("token_type")
    @classmethod
    def _token_type_is_bearer(cls, value: str) -> str:
        """The spec's fixed value, in any case (RFC 6749 5.1): the token is sent to fhirServer as
        `Bearer <token>`, which would be wrong for any other type. The error names no part of the value."""
        if value.lower() != "bearer":
            raise ValueError("token_type must be Bearer")
        return value


SUMMARY_MAX = 139  # CDS Hooks 2.0: a "<140-character summary"
HOOK_INSTANCE_MAX = 128  # the audit column hook_instance is VARCHAR(128)
CARD_ID_MAX = 64  # the feedback column card_uuid is VARCHAR(64); this service's card uuids have 36


class HookRequest(_Lenient):
    """https://cds-hooks.hl7.org/2.0/#http-request-1 -- the envelope every hook call carries."""

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1, max_length=HOOK_INSTANCE_MAX)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    # its fields differ by hook (read by PatientViewContext and the others); every hook here has a patient
    context: dict[str, Any] = Field(json_schema_extra={
        "required": ["patientId"], "properties": {"patientId": {"type": "string", "pattern": f"^{PATIENT_ID.pattern}$"}},
    })
    # Any value is taken, never a 400: a value that is not a resource or Bundle under a key the service
    # did not ask for is ignored (the spec's own example sends "user": "123"; patient_data.from_prefetch),
    # and under one of its own keys it is that key missing (prefetch.missing_keys).
    prefetch: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _base_without_whitespace(cls, value: str | None) -> str | None:
        """Whitespace around a pasted URL is no part of it: the allow-list and the fetch read one base."""
        return value.strip() if value is not None else None

    @field_validator("hookInstance")
    @classmethod
    def _hook_instance_is_printable(cls, value: str) -> str:
        """The spec says a UUID; any printable text is taken (real EHRs deviate), control characters
        are not: the value goes into logs and the audit. The error names no part of the value."""
        if not value.isprintable():
            raise ValueError("hookInstance must be printable text without control characters (a UUID)")
        return value


class PatientViewContext(_Lenient):
    """https://cds-hooks.hl7.org/hooks/patient-view/ context."""

    patientId: str = Field(min_length=1)
    userId: str | None = None
    encounterId: str | None = None

    @field_validator("patientId")
    @classmethod
    def _patient_id_is_an_id(cls, value: str) -> str:
        """The Patient.id (CDS Hooks 2.0): the order the card suggests names it as `Patient/{id}`, so
        a slash, a space or 10,000 characters would make that order invalid. An underscore, which
        some EHRs write though FHIR's id type has none, breaks no reference and is taken."""
        if not PATIENT_ID.fullmatch(value):
            raise ValueError("patientId must be a FHIR resource id: letters, digits, '-', '.' (and '_'), at most 64")
        return value


class OrderSelectContext(PatientViewContext):
    """https://cds-hooks.hl7.org/hooks/order-select/ context."""

    selections: list[str]
    draftOrders: dict[str, Any]


class OrderSignContext(PatientViewContext):
    """https://cds-hooks.hl7.org/hooks/order-sign/ context."""

    draftOrders: dict[str, Any]


class Coding(_Exact):
    """FHIR Coding as used by overrideReasons and source.topic."""

    system: str | None = None
    code: str
    display: str | None = None


class Source(_Exact):
    """https://cds-hooks.hl7.org/2.0/#source"""

    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Exact):
    """https://cds-hooks.hl7.org/2.0/#action"""

    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None  # one relative reference (Type/id) per delete action


class Suggestion(_Exact):
    """https://cds-hooks.hl7.org/2.0/#suggestion"""

    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Exact):
    """https://cds-hooks.hl7.org/2.0/#link"""

    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(_Exact):
    """https://cds-hooks.hl7.org/2.0/#card-attributes"""

    uuid: str | None = None
    summary: str = Field(max_length=SUMMARY_MAX)
    detail: str | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class CdsResponse(_Exact):
    """https://cds-hooks.hl7.org/2.0/#cds-service-response"""

    cards: list[Card]
    systemActions: list[Action] | None = None


class ServiceDescription(_Exact):
    """One entry of the discovery response (https://cds-hooks.hl7.org/2.0/#response)."""

    hook: str
    id: str
    title: str | None = None
    description: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class DiscoveryResponse(_Exact):
    """https://cds-hooks.hl7.org/2.0/#discovery"""

    services: list[ServiceDescription]


class ReasonCoding(_Lenient):
    """The Coding a client sends back from a card's overrideReasons."""

    system: str | None = Field(default=None, max_length=512)
    code: str = Field(min_length=1, max_length=256)
    display: str | None = None


class OverrideReason(_Lenient):
    """https://cds-hooks.hl7.org/2.0/#overridereason"""

    reason: ReasonCoding | None = None
    userComment: str | None = None  # stored (CDS_STORE_USER_COMMENTS) up to feedback.USER_COMMENT_MAX characters


ACCEPTED_SUGGESTIONS_MAX = 32


class AcceptedSuggestion(_Lenient):
    """https://cds-hooks.hl7.org/2.0/#suggestion-accepted"""

    id: str = Field(min_length=1, max_length=128)


class Feedback(_Lenient):
    """One item of a feedback call (https://cds-hooks.hl7.org/2.0/#feedback)."""

    card: str = Field(min_length=1, max_length=CARD_ID_MAX)
    outcome: Literal["accepted", "overridden"]
    # a card carries a handful of suggestions (this service's, one): more is no client's feedback,
    # and 900,000 of them held the event loop validating for seconds
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=ACCEPTED_SUGGESTIONS_MAX)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @field_validator("outcomeTimestamp", mode="before")
    @classmethod
    def _timestamp_is_iso_8601(cls, value: Any) -> Any:
        """The spec asks for an ISO 8601 date-time; pydantic alone would also take Unix seconds and
        bare dates. Calendar values are checked by the datetime parse that follows."""
        if isinstance(value, str) and ISO_DATE_TIME.fullmatch(value):
            return value
        raise ValueError("outcomeTimestamp must be an ISO 8601 date-time string, e.g. 2026-11-25T02:00:14Z")

    @model_validator(mode="after")
    def _outcome_agrees(self) -> Self:
        """An accepted card has no override reason and an overridden one no accepted suggestion
        (CDS Hooks 2.0): either is a client bug that would make the record say both (an empty
        overrideReason, as a client that sends every field writes one, says nothing). An accepted
        outcome without acceptedSuggestions, which the spec requires, is taken: only which suggestion
        is lost (EHRs report a card acknowledged so), and it is counted as accepted."""
        reason = self.overrideReason
        if self.outcome == "accepted" and reason is not None and (reason.reason is not None or (reason.userComment or "").strip()):
            raise ValueError("an accepted outcome carries no overrideReason (that is for overridden cards)")
        if self.outcome == "overridden" and self.acceptedSuggestions:
            raise ValueError("an overridden outcome carries no acceptedSuggestions (that is for accepted cards)")
        return self

    @field_validator("card")
    @classmethod
    def _card_is_printable_id(cls, value: str) -> str:
        """CDS Hooks 2.0 only asks for a string (the card's uuid): any printable id is stored as sent
        and counts as a card never audited; a UUID in any form is stored in its canonical lower-case
        form, so it meets the audit's. The error names no part of the value."""
        if not value.strip() or not value.isprintable():
            raise ValueError("card must be the card's id: non-blank printable text (no control characters)")
        try:
            return str(UUID(value))
        except ValueError:
            return value


class FeedbackRequest(_Lenient):
    """https://cds-hooks.hl7.org/2.0/#feedback -- the body of POST .../feedback."""

    # an empty list stores nothing, and the spec's answer to feedback is 200
    feedback: list[Feedback] = Field(max_length=1000)


class ErrorBody(_Exact):
    """The JSON body of every 4xx/5xx this service returns."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None
