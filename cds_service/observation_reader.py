"""Reading one Observation: its value in a unit the rule knows, the lab's flags and ranges, an
answer that records absence, and which of a lab's results is the newest."""

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from cds_service.concept_screen import ConceptScreen, codings_of, texts_of
from cds_service.fhir_dates import as_date, instant
from cds_service.fhir_shapes import items
from cds_service.knowledge import Knowledge
from cds_service.knowledge_models import LabFlags, LabUnits
from cds_service.lab_text import LabTextReader
from cds_service.reading import SKIP, Reading
from cds_service.valueset import INTERPRETATION, loose_uri

NEGATIVE_ANSWER = "negative-answer"
MAX_LAB_VALUE = 1e12  # no concentration or count is negative or this large in any unit: a corrupt value
UCUM = "http://unitsofmeasure.org"


def read_observation(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.status in status.observation_in_progress:  # not a result: an older result is still read
        return Reading("in-progress", _observation_date(m), True, m.status)
    if m.status in status.observation_status_unknown:  # final or entered in error: nobody says which
        return Reading("no-result", _observation_date(m), status=m.status)
    if m.status not in status.observation_status or _is_negative(m, raw, screen):
        return SKIP
    if raw.get("dataAbsentReason"):  # no value, and why (not performed, sample lost): no result, no finding
        return Reading("no-result", _observation_date(m), status=m.status)
    quantity = m.valueQuantity
    flags = k.rule.b12_result.low_flags
    lab_flags = _lab_flags(raw.get("interpretation"), flags, k.lab_text)
    written = k.lab_text.read(m.valueString) if m.valueString is not None else None
    if written is not None and written.flag is not None:  # "145 pg/mL L": the lab's flag, written beside the value
        lab_flags.append(written.flag)
    result = Reading("counts", _observation_date(m), status=m.status, flagged_low=any(f.upper() in flags.low_codes for f in lab_flags),
                     reports=bool(lab_flags) or written is not None or _holds_number(m, k),
                     flags=frozenset(f.upper() for f in lab_flags), upper_limits=_upper_limits(raw), range_units=_range_units(raw))
    unit_text = None
    if quantity is not None and quantity.value is not None:
        value = float(quantity.value)
        unit, comparator = _quantity_unit(quantity, k), quantity.comparator
        unit_text = quantity.unit.strip() if quantity.unit and quantity.unit.strip() else None
    elif m.valueInteger is not None:  # a count or a value with no unit (MCV 104): read as a Quantity with none
        value, unit, comparator = float(m.valueInteger), None, None
    elif written is not None:
        # a result some labs send as text ("<150 pg/mL", "145,0 pg/mL L"): read when it is only that
        value, unit, comparator = written.value, written.unit, written.comparator
    else:
        return result
    value += 0.0  # a -0 reads as 0
    if not math.isfinite(value) or not 0 <= value <= MAX_LAB_VALUE:
        return Reading("invalid")
    return replace(result, value=value, unit=unit, unit_text=unit_text, comparator=comparator)


def _upper_limits(raw: dict[str, Any]) -> tuple[tuple[float, tuple[str, ...]], ...]:
    """The high ends of the lab's normal ranges in raw Observation.referenceRange, with the units each
    gives (none: the result's). A range for a population (appliesTo, age) or of another kind (type other
    than normal: therapeutic, treatment) is not the patient's; text-only ranges are not read."""
    out = []
    for reference in items(raw.get("referenceRange")):
        if not isinstance(reference, dict) or "appliesTo" in reference or "age" in reference:
            continue
        if "type" in reference and all(code != "normal" for _, code, _ in codings_of(reference["type"])):
            continue
        high = reference.get("high")
        if not isinstance(high, dict):
            continue
        value = high.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            out.append((float(value), _quantity_units(high.get("system"), high.get("code"), high.get("unit"))))
    return tuple(out)


def _range_units(raw: dict[str, Any]) -> tuple[str, ...]:
    """The units the lab's normal ranges give, at either end, in the order written (for a value
    sent with none: it is in its range's unit)."""
    out: list[str] = []
    for reference in items(raw.get("referenceRange")):
        for end in ("low", "high"):
            bound = reference.get(end) if isinstance(reference, dict) else None
            if isinstance(bound, dict):
                out += _quantity_units(bound.get("system"), bound.get("code"), bound.get("unit"))
    return tuple(out)


def _quantity_units(system: Any, code: Any, unit: Any) -> tuple[str, ...]:
    """A Quantity's units in the order they are tried: its UCUM code (its code when no system is
    given), its human-readable unit, a code from another system; junk is skipped."""
    ucum = system is None or (isinstance(system, str) and loose_uri(system) == UCUM)
    given = ((code if ucum else None), unit, code)
    return tuple(u.strip() for u in given if isinstance(u, str) and u.strip())


def _quantity_unit(quantity: Any, k: Knowledge) -> str | None:
    """The unit a Quantity is read in: its UCUM code, else its human-readable unit, else a code from
    another system, whichever a lab in units.json knows first (a local code such as "GDL" beside
    "g/dL" must not hide the unit), else the first given."""
    given = _quantity_units(quantity.system, quantity.code, quantity.unit)
    known = next((u for u in given if any(lab.factor(u) is not None for lab in k.units.values())), None)
    return known or (given[0] if given else None)


def _holds_number(obs: Any, k: Knowledge) -> bool:
    """Whether an Observation's value holds a number: a Quantity with a value, an integer, a range or
    ratio, or text that is one, with at most a unit, even text this reader cannot convert ("150-200 pg/mL"). A lab
    that writes "Test not performed", "QNS" or "Specimen hemolyzed, recollect x2", or sends no value,
    reports no number."""
    quantity = obs.valueQuantity
    return ((quantity is not None and quantity.value is not None) or obs.valueInteger is not None
            or obs.valueRange is not None or obs.valueRatio is not None
            or (obs.valueString is not None and k.lab_text.holds_number(obs.valueString)))


def upper_limit(r: Reading, lab: LabUnits) -> float | None:
    """The lab's upper limit in the canonical unit: None when no range converts, or the ranges
    sent disagree (which one is the patient's is not said)."""
    limits = set()
    for value, units in r.upper_limits:
        # the first unit the lab knows, as _quantity_unit reads the result's (a local code beside "U/L" hides nothing)
        factor = next((f for u in units if (f := lab.factor(u)) is not None), None) if units else lab.factor(r.unit)
        if factor is not None:
            limits.add(round(value * factor, 6))
    return limits.pop() if len(limits) == 1 else None


def _observation_date(obs: Any) -> date | None:
    """When the sample was taken; a period with only its end (some lab systems send the collection's
    end) is dated by that end, not left undated."""
    period = obs.effectivePeriod
    return (as_date(obs.effectiveDateTime) or as_date(period and period.start) or as_date(period and period.end)
            or as_date(obs.effectiveInstant) or as_date(obs.issued))


def _lab_flags(interpretation: Any, flags: LabFlags, reader: LabTextReader) -> list[str]:
    """The lab flags in raw Observation.interpretation (low, normal, high: each says the lab measured
    something): codes from the flag code systems, under any spelling of their URIs, or with no
    system; an interpretation sent as text only read through textFlags, a mark after it passed over
    ("Low*"). Junk in it is ignored."""
    concepts = interpretation if isinstance(interpretation, list) else [interpretation]
    found = []
    for concept in concepts:
        codings = codings_of(concept)
        found += [code for system, code, _ in codings if not system or loose_uri(system) in flags.loose_systems]
        text = concept.get("text") if isinstance(concept, dict) and not codings else None
        if isinstance(text, str) and (code := reader.flag_code(text)):
            found.append(code)
    return found


def scored_zero(raw: dict[str, Any]) -> bool:
    """A valueInteger of 0 (a Quantity or a text "0" is read into the Reading's value)."""
    value = raw.get("valueInteger")
    return type(value) is int and value == 0


def _is_negative(obs: Any, raw: dict[str, Any], screen: ConceptScreen) -> bool:
    """A symptom Observation that records absence (coded "No"/"Absent", valueBoolean false, a
    free-text answer that is only "No", "None", "Absent", …, or no value at all and an interpretation
    of Negative or Not detected)."""
    if obs.valueBoolean is False:
        return True
    if _flagged_absent(raw, screen):
        return True
    if obs.valueCodeableConcept is not None:
        answer = obs.valueCodeableConcept.model_dump(mode="json", exclude_none=True)
        coded = screen.coded(answer, "Observation")
        if NEGATIVE_ANSWER in coded:
            return True
        if not coded.isdisjoint(screen.k.answers):  # a coded answer is the finding: "Not pregnant" is no "No"
            return False
        # a local answer code says "No" in its display
        return any(screen.k.text.is_negative_answer(text) for text in texts_of(answer))
    return screen.k.text.is_negative_answer(obs.valueString)


def _flagged_absent(raw: dict[str, Any], screen: ConceptScreen) -> bool:
    """A symptom sent with no value whose interpretation says Negative or Not detected, coded or in
    words; a lab's flag never (a lab result with no value and a Normal flag, 'N', is still a result)."""
    if "interpretation" not in raw or any(key.startswith("value") for key in raw):
        return False
    if screen.laboratory(raw, screen.coded(raw.get("code"), "Observation")):
        return False
    return any(NEGATIVE_ANSWER in screen.coded(_interpretation_system(i), "Observation")
               or (isinstance(i, dict) and isinstance(i.get("text"), str) and screen.k.text.is_negative_answer(i["text"]))
               for i in items(raw["interpretation"]))


def _interpretation_system(item: Any) -> Any:
    """An interpretation coded with no system is read as HL7's (the element holds nothing else)."""
    if not isinstance(item, dict) or not isinstance(item.get("coding"), list):
        return item
    return {**item, "coding": [{**c, "system": INTERPRETATION} if isinstance(c, dict) and not c.get("system") else c
                               for c in item["coding"]]}


def final_first(k: Knowledge) -> Callable[[Any], int]:
    """Ranks a raw result's status on a tie in time: a final (amended, corrected) result above an
    interim (preliminary) one, which the lab has since replaced, above any other status."""
    status = k.rule.record_status
    final = frozenset(s for s in status.observation_status if s not in status.observation_interim)
    interim = frozenset(status.observation_interim)
    return lambda s: 0 if not isinstance(s, str) else 2 if s in final else 1 if s in interim else 0  # junk: last


def newest_first_key(when: str, raw: dict[str, Any], final_first: Callable[[Any], int]) -> tuple[datetime, int, datetime]:
    """Sorts a lab's results newest first by the instant taken, then final before interim, then
    the later issued (the lab's latest word on the same sample)."""
    return instant(when), final_first(raw.get("status")), instant(raw.get("issued"))


def raw_observation_date(raw: dict[str, Any]) -> str:
    """The date _observation_date reads, from the raw JSON, to sort results newest first."""
    when = raw.get("effectiveDateTime")
    if isinstance(when, str):  # most results: the first place looked, so the others need not be read
        return when
    period = raw.get("effectivePeriod")
    period = period if isinstance(period, dict) else {}
    for value in (period.get("start"), period.get("end"), raw.get("effectiveInstant"), raw.get("issued")):
        if isinstance(value, str):
            return value
    return ""
