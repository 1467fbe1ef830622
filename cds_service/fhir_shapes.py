"""FHIR JSON as real clients shape it: arrays sent as one object, and orders written in DSTU2 or
STU3 (MedicationOrder, ProcedureRequest, ReferralRequest, DiagnosticOrder) re-shaped as the R4
MedicationRequest or ServiceRequest they stand for. Older FHIR servers make the CDS Hooks sandbox
send drafts so, and an EHR that upgraded its API before its data sends its records so."""

from typing import Any

OLDER_ORDER_TYPES = frozenset({"MedicationOrder", "ProcedureRequest", "ReferralRequest", "DiagnosticOrder"})

# named alike in DSTU2, STU3 and R4: status and intent (whose withdrawn codes R4 shares), a contained
# Medication a reference points at, and what makes an order no order or unreadable
_KEPT_AS_THEY_ARE = ("id", "status", "intent", "contained", "modifierExtension", "doNotPerform", "note")

# ProcedureRequest and ReferralRequest (STU3, DSTU2) and DiagnosticOrder (DSTU2) status codes R4's
# ServiceRequest writes otherwise, as (status, intent): a proposal is R4's intent, not a status; the
# rest (draft, active, completed, entered-in-error, unknown) are R4's
_SERVICE_REQUEST_STATUS = {
    "suspended": ("on-hold", None),
    "cancelled": ("revoked", None),
    "rejected": ("revoked", None),
    "failed": ("revoked", None),
    "aborted": ("revoked", None),
    "proposed": ("draft", "proposal"),
    "planned": ("draft", "plan"),
    "requested": ("active", None),
    "received": ("active", None),
    "accepted": ("active", None),
    "in-progress": ("active", None),
    "review": ("active", None),
}


def items(value: Any) -> list[Any]:
    """A raw JSON array as a list; a single object sent in its place (as real clients bend arrays)
    as a list of one; anything else (a number, a string) as none."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def as_r4_order(raw: dict[str, Any]) -> dict[str, Any]:
    """An order in an older shape as the R4 order it stands for; any other resource as it is."""
    rtype = raw.get("resourceType")
    if rtype == "MedicationOrder":
        return _medication_request_from_dstu2(raw)
    if isinstance(rtype, str) and rtype in OLDER_ORDER_TYPES:  # any JSON value may stand there
        return _service_request_from_older(raw)
    return raw


def _reshaped(raw: dict[str, Any], rtype: str, renames: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """`raw` as the R4 `rtype`: each element kept under its R4 name (the first of several older
    names found wins), and the elements that decide whether it orders anything kept as they were
    (a withdrawn or do-not-perform order, a modifier not understood). With no intent (DSTU2 has
    none) it is an order; with no status it has none, as R4 would refuse it (a draft gets its own)."""
    converted: dict[str, Any] = {"resourceType": rtype, "intent": "order"}
    converted |= {key: raw[key] for key in _KEPT_AS_THEY_ARE if key in raw}
    for old, new in renames:
        if old in raw and new not in converted:
            converted[new] = raw[old]
    return converted


def _medication_request_from_dstu2(raw: dict[str, Any]) -> dict[str, Any]:
    """A DSTU2 MedicationOrder as an R4 MedicationRequest. Of its dosing and dispensing only what R4
    writes alike is kept (the dosing's text, route and bounds, the validity period): DSTU2's dose
    and `periodUnits` are no R4 elements, and would make the whole record unreadable."""
    converted = _reshaped(raw, "MedicationRequest", (
        ("medicationCodeableConcept", "medicationCodeableConcept"),
        ("medicationReference", "medicationReference"), ("patient", "subject"), ("dateWritten", "authoredOn"),
        ("reasonCodeableConcept", "reasonCode"),
        # not DSTU2's, but a client that sends R4's home-medicine flags beside the old type means them
        ("reportedBoolean", "reportedBoolean"), ("reportedReference", "reportedReference")))
    dosing = [_dosage(d) for d in items(raw.get("dosageInstruction")) if isinstance(d, dict)]
    if dosing:
        converted["dosageInstruction"] = dosing
    dispense = raw.get("dispenseRequest")
    period = dict(dispense["validityPeriod"]) if isinstance(dispense, dict) and isinstance(dispense.get("validityPeriod"), dict) else {}
    if isinstance(raw.get("dateEnded"), str) and "end" not in period:  # when DSTU2 records a course's end
        period["end"] = raw["dateEnded"]
    if period:
        converted["dispenseRequest"] = {"validityPeriod": period}
    return converted


def _dosage(dosage: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: dosage[k] for k in ("text", "route", "method") if k in dosage}
    timing = dosage.get("timing")
    if isinstance(timing, dict):
        repeat = timing.get("repeat")
        bounds = {k: repeat[k] for k in ("boundsPeriod", "boundsDuration", "count") if k in repeat} \
            if isinstance(repeat, dict) else {}
        kept["timing"] = {**({"event": timing["event"]} if "event" in timing else {}), **({"repeat": bounds} if bounds else {})}
    return kept


def _service_request_from_older(raw: dict[str, Any]) -> dict[str, Any]:
    """A STU3 ProcedureRequest or ReferralRequest, or a DSTU2 DiagnosticOrder, as an R4
    ServiceRequest, its status as R4 codes it (a suspended order is on hold, a rejected one revoked,
    a requested or accepted one active)."""
    converted = _reshaped(raw, "ServiceRequest", (
        ("code", "code"), ("subject", "subject"), ("patient", "subject"),
        ("reasonCode", "reasonCode"), ("reasonCodeableConcept", "reasonCode"), ("reason", "reasonCode"),
        # when it was written: STU3's authoredOn, DSTU2 ProcedureRequest's orderedOn, a referral's dateSent
        ("authoredOn", "authoredOn"), ("orderedOn", "authoredOn"), ("dateSent", "authoredOn"),
        ("occurrenceDateTime", "occurrenceDateTime"), ("occurrencePeriod", "occurrencePeriod"),
        ("scheduledDateTime", "occurrenceDateTime"), ("scheduledPeriod", "occurrencePeriod"),  # DSTU2's
        ("performerType", "performerType")))
    if "authoredOn" not in converted and (written := _event_date(raw)) is not None:
        converted["authoredOn"] = written  # a DSTU2 DiagnosticOrder dates itself only by its events
    status = converted.get("status")
    if isinstance(status, str) and (mapped := _SERVICE_REQUEST_STATUS.get(status.strip().lower())) is not None:
        converted["status"] = mapped[0]
        if mapped[1] is not None and "intent" not in raw:
            converted["intent"] = mapped[1]
    if "code" not in converted:  # a referral names its service and specialty, a diagnostic order its items
        named = [c for c in (*items(raw.get("serviceRequested")), *items(raw.get("specialty"))) if isinstance(c, dict)]
        if named:  # every coding of both: 'Patient referral' with the specialty Rheumatology is a rheumatology referral
            codings = [coding for c in named for coding in items(c.get("coding")) if isinstance(coding, dict)]
            text = next((c["text"] for c in named if isinstance(c.get("text"), str)), None)
            converted["code"] = {**({"coding": codings} if codings else {}), **({"text": text} if text else {})}
        else:
            first = next((i.get("code") for i in items(raw.get("item")) if isinstance(i, dict) and isinstance(i.get("code"), dict)), None)
            if first is not None:
                converted["code"] = first
    return converted


def _event_date(raw: dict[str, Any]) -> str | None:
    """When a DSTU2 DiagnosticOrder was requested: its `requested` event, else its earliest."""
    events = [(e.get("status"), e["dateTime"]) for e in items(raw.get("event"))
              if isinstance(e, dict) and isinstance(e.get("dateTime"), str)]
    requested = [when for status, when in events if status == "requested"]
    return min(requested or [when for _, when in events], default=None)
