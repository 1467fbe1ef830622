"""Which records count, per resource type: each reader applies the status rules of cards/rule.json
recordStatus to one validated resource and dates it."""

import math
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, Literal

from cds_service.concept_screen import ConceptScreen
from cds_service.fhir_dates import CLOCK_SKEW_DAYS, as_date
from cds_service.fhir_shapes import items
from cds_service.observation_reader import read_observation
from cds_service.reading import SKIP, Reading

HL7_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"


def _read_condition(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    clinical = _status_code(m.clinicalStatus, status.condition_status_words)
    verification = _status_code(m.verificationStatus, status.condition_status_words)
    if verification in status.condition_verification_ignored:
        return SKIP
    # a visit's diagnosis keeps the status it had at the visit: its dates say whether it is current
    categories = _condition_categories(raw)
    visit_only = bool(categories) and categories <= set(status.condition_dated_only_categories)
    active = clinical in status.condition_clinical_active and not visit_only
    onset = as_date(m.onsetDateTime) or as_date(m.onsetPeriod and m.onsetPeriod.start)
    when = onset or as_date(m.recordedDate)
    # FHIR con-4: an abated condition is not current, whatever status was left off, nor one left
    # active beside the date it ended (a recurrence or relapse came back after it: still current)
    ended = _abated(raw) and (not active or (clinical in status.condition_abatement_date_ends
                                             and _ended_by(raw, screen.today)))
    if clinical in status.condition_clinical_ignored or ended:
        # a past illness whose onset is given in words or as an age ("March 2021") was not begun
        # when it was entered into the history: its recordedDate makes it nothing recent
        if onset is None and (m.onsetString is not None or m.onsetAge is not None):
            when = None
        return Reading("ended", when, False, clinical, _abatement_date(raw), verification=verification,
                       entered_only=onset is None and when is not None)
    return Reading("counts", when, active, clinical, verification=verification, recorded=as_date(m.recordedDate),
                   visit=visit_only)


def _read_medication_request(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.doNotPerform or m.status not in (*status.medication_active, *status.medication_past,
                                          *status.medication_renewal_only):
        return SKIP
    if m.intent in status.medication_intent_ignored:
        return SKIP
    self_reported = reported(raw)
    # a plan nobody reports taking: read as an order for the risk factors (EHRs document home
    # medicines so), never as B12 replacement under way
    planned = m.intent in status.medication_intent_planned and not self_reported
    validity = m.dispenseRequest and m.dispenseRequest.validityPeriod
    use: Literal["counts", "renewal"] = "renewal" if m.status in status.medication_renewal_only else "counts"
    dosing = _dosing_bounds(raw.get("dosageInstruction"), as_date(validity and validity.start) or as_date(m.authoredOn))
    starts = min(dosing[0], default=None)
    # the order began when it was written, or earlier when its validity or dosing says so (a backdated
    # order, a renewal whose dosing keeps the course's first day); a reported one (a medicine the patient
    # says they take) was written when it was recorded, so only its validity or dosing start dates the use
    began = min((d for d in (as_date(validity and validity.start), None if self_reported else as_date(m.authoredOn),
                             starts) if d), default=None)
    until = as_date(validity and validity.end) or max(dosing[1], default=None)
    if until is None and _single_dose(raw.get("dosageInstruction")):
        # one dose (timing.repeat.count 1): the course ends with it, on its start or when written;
        # left active for years, it is a dose given then, not replacement under way for ever
        until = starts or as_date(m.authoredOn)
    return Reading(use, began, m.status in status.medication_active, m.status, until, starts=starts, planned=planned)


def reported(raw: dict[str, Any]) -> bool:
    """A MedicationRequest that reports a medicine taken rather than orders it (reportedBoolean, or
    reportedReference naming who reported it): US Core records patient-reported medicines so."""
    return raw.get("reportedBoolean") is True or isinstance(raw.get("reportedReference"), dict)


def _repeats(dosages: Any) -> list[dict[str, Any]]:
    """Each raw dosageInstruction's timing.repeat, {} where an instruction has none (or is junk)."""
    out = []
    for dosage in items(dosages):
        timing = dosage.get("timing") if isinstance(dosage, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        out.append(repeat if isinstance(repeat, dict) else {})
    return out


def _dosing_bounds(dosages: Any, written: date | None) -> tuple[list[date], list[date]]:
    """(starts, ends) of an order's dosing, from raw dosageInstruction[].timing.repeat.boundsPeriod:
    Epic writes a course's end there ("Until Wed 5/27/2020") and leaves the validityPeriod open, and
    a start still to come there for a course not yet begun; a boundsDuration ("for 30 days") ends the
    course that long after it was written. Each list is empty unless every instruction gives that
    bound: an instruction with no end runs on, one with no start has begun."""
    starts: list[date] = []
    ends: list[date] = []
    for repeat in _repeats(dosages):
        bounds = repeat.get("boundsPeriod")
        bounds = bounds if isinstance(bounds, dict) else {}
        starts.append(as_date(bounds.get("start")) or date.min)
        lasts = _duration_days(repeat.get("boundsDuration"))
        end = as_date(bounds.get("end")) or (written + timedelta(days=lasts) if written and lasts is not None else None)
        ends.append(end or date.max)
    return ([] if date.min in starts else starts), ([] if date.max in ends else ends)


# UCUM units of time a Duration is written in, in days (a month and a year as dosing counts them)
_DAYS_PER_UNIT = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1, "wk": 7, "mo": 30, "a": 365}


def _duration_days(duration: Any) -> int | None:
    """Whole days a raw Duration lasts (rounded up), None when it gives no usable length."""
    if not isinstance(duration, dict):
        return None
    value, unit = duration.get("value"), duration.get("code") or duration.get("unit")
    per = _DAYS_PER_UNIT.get(unit) if isinstance(unit, str) else None
    if per is None or isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 100_000:
        return None
    return math.ceil(value * per)


def _single_dose(dosages: Any) -> bool:
    """Whether raw dosageInstruction orders one dose only: every instruction's timing.repeat.count is 1."""
    counts = [repeat.get("count") for repeat in _repeats(dosages)]
    return bool(counts) and all(type(c) is int and c == 1 for c in counts)


def _read_medication_statement(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.status in status.medication_statement_planned or m.status not in (
            *status.medication_statement_active, *status.medication_statement_past):
        return SKIP  # to be taken later (intended), not taken, unknown, entered in error
    # STU3 `taken` (n, unk, na) and DSTU2 `wasNotTaken`, read from the raw JSON (R4 has neither): a
    # statement that the patient does not take the medicine, or that nobody knows, is no use of it
    taken = raw.get("taken")
    if (taken is not None and taken not in status.medication_statement_taken) or raw.get("wasNotTaken") is True:
        return SKIP
    active = m.status in status.medication_statement_active
    # dated by when it was taken only: dateAsserted is when it was recorded (a medicines
    # reconciliation today of a drug taken for years), so with no effective date the start is unknown
    when = as_date(m.effectivePeriod and m.effectivePeriod.start) or as_date(m.effectiveDateTime)
    # a start still to come is use not yet begun, as an order's dosing start is
    return Reading("counts", when, active, m.status, as_date(m.effectivePeriod and m.effectivePeriod.end), starts=when)


def _dated_event(m: Any, counted: list[str], element: str, today: date | None) -> Reading:
    """Something done (a dose given, a procedure): counted by status, dated by element[x]. One dated
    after today (a day's slack for time zones) has not happened, whatever its status says: a
    gastrectomy booked for next month and entered as completed is no surgery yet (clinical review)."""
    if m.status not in counted:
        return SKIP
    period = getattr(m, f"{element}Period")
    when = as_date(getattr(m, f"{element}DateTime")) or as_date(period and period.start)
    if when is not None and today is not None and when > today + timedelta(days=CLOCK_SKEW_DAYS):
        return SKIP
    return Reading("counts", when, status=m.status)


def _read_administration(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    return _dated_event(m, screen.k.rule.record_status.administration_counted, "effective", screen.today)


def _read_procedure(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    return _dated_event(m, screen.k.rule.record_status.procedure_counted, "performed", screen.today)


def _read_service_request(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.status not in status.pending_order_status or m.doNotPerform or m.intent in status.order_intent_ignored:
        return SKIP
    # dated when written; an order sent with only the date it is for (occurrence[x]) by that, so a
    # test due three years ago lapses like one written then, where undated it was pending for ever
    period = m.occurrencePeriod
    first = as_date(m.occurrenceDateTime) or (as_date(period.start or period.end) if period is not None else None)
    last = as_date(m.occurrenceDateTime) or (as_date(period.end or period.start) if period is not None else None)
    # the day it is for nearest today (starts): an order written long ago for a day to come, or for a
    # period running now, is pending (courses.is_lapsed)
    due = last if last is None or first is None or screen.today is None else min(max(screen.today, first), last)
    return Reading("counts", as_date(m.authoredOn) or first, True, m.status, starts=due)


def _abatement_end(raw: dict[str, Any]) -> date | None:
    """When a Condition ended: abatementDateTime, or its abatementPeriod's end."""
    period = raw.get("abatementPeriod")
    return as_date(raw.get("abatementDateTime")) or (as_date(period.get("end")) if isinstance(period, dict) else None)


def _abatement_date(raw: dict[str, Any]) -> date | None:
    """The end, else the start of an abatement period (when the condition began to abate)."""
    period = raw.get("abatementPeriod")
    return _abatement_end(raw) or (as_date(period.get("start")) if isinstance(period, dict) else None)


def _ended_by(raw: dict[str, Any], today: date | None) -> bool:
    """Whether a Condition's recorded end (abatementDateTime, or its abatementPeriod's end: a period
    with only a start has not ended) has come, on `today` (None: any date recorded)."""
    end = _abatement_end(raw)
    return end is not None and (today is None or end <= today)


def _abated(raw: dict[str, Any]) -> bool:
    """Whether raw Condition.abatement[x] says the condition ended; a value that cannot be read
    (an unparseable date, an empty string) says nothing."""
    text = raw.get("abatementString")
    return (
        _abatement_date(raw) is not None
        or raw.get("abatementBoolean") is True  # DSTU2 and STU3 (R4 dropped it): abated, when not said
        or (isinstance(age := raw.get("abatementAge"), dict) and isinstance(age.get("value"), int | float))
        or (isinstance(span := raw.get("abatementRange"), dict) and any(isinstance(span.get(k), dict) for k in ("low", "high")))
        or (isinstance(text, str) and bool(text.strip()))
    )


def _condition_categories(raw: dict[str, Any]) -> set[str]:
    """A Condition's category codes from the HL7 and US Core condition-category systems (a local
    category beside them says nothing the rule reads), read from the raw JSON leniently."""
    return {coding["code"].strip().lower()
            for category in items(raw.get("category")) if isinstance(category, dict)
            for coding in items(category.get("coding"))
            if isinstance(coding, dict) and isinstance(coding.get("code"), str)
            and isinstance(coding.get("system"), str) and "condition-category" in coding["system"]}


# the DSTU2/STU3 URLs of the Condition status code systems, still sent by servers that upgraded
_OLD_STATUS_SYSTEMS = ("http://hl7.org/fhir/condition-clinical", "http://hl7.org/fhir/condition-ver-status")


def _status_code(concept: Any, words: Mapping[str, str]) -> str | None:
    """A clinicalStatus / verificationStatus as its HL7 code: the coding from an HL7 code system
    when there is one (EHRs put local codings first), in any case; else its words, the text or a
    local coding's display or code, written as a code ("Resolved": resolved; "In remission", which
    `words` maps to remission), which the rule's status lists read or ignore."""
    if concept is None:
        return None
    codings = concept.coding or []
    hl7 = next((c.code for c in codings if c.code and ((c.system or "").startswith(HL7_TERMINOLOGY)
                                                      or c.system in _OLD_STATUS_SYSTEMS)), None)
    said = hl7 or concept.text or next((c.display or c.code for c in codings if c.display or c.code), None)
    code = "-".join(said.lower().split()) if said else None
    return words.get(code, code) if code else None


# which records count, per resource type: the status rules of cards/rule.json recordStatus
READERS: dict[str, Callable[[Any, dict[str, Any], ConceptScreen], Reading]] = {
    "Condition": _read_condition, "Observation": read_observation, "MedicationRequest": _read_medication_request,
    "MedicationStatement": _read_medication_statement, "MedicationAdministration": _read_administration,
    "Procedure": _read_procedure, "ServiceRequest": _read_service_request,
}
