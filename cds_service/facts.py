"""Facts: the pieces of the record the rule needs, matched to concepts, dated and in one unit.

Each raw resource is first screened on its codes and text (concept_screen: cheap, no validation);
only resources that name a concept are validated with fhir.resources and read (record_readers),
so a 10,000-Observation chart costs little more than reading it.
"""

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from cds_service import fhir_models
from cds_service.concept_screen import ConceptScreen, record_label
from cds_service.fhir_dates import CLOCK_SKEW_DAYS, as_date, latest_birth_date
from cds_service.knowledge import Knowledge
from cds_service.observation_reader import final_first, newest_first_key, raw_observation_date, scored_zero, upper_limit
from cds_service.patient_data import RESOURCE_TYPES, PatientData
from cds_service.reading import Reading
from cds_service.record_readers import READERS, reported
from cds_service.textmatch import TimeCheck, no_time_limit

RECORDS_PER_CHECK = 32  # validating this many costs about a millisecond


@dataclass(frozen=True, slots=True)
class Fact:
    """One piece of evidence from the record, attached to one concept."""

    concept: str
    resource_type: str
    resource_id: str | None
    text: str
    when: date | None
    active: bool
    matched_by: Literal["code", "text"]
    value: float | None = None
    unit: str | None = None
    status: str | None = None
    comparator: str | None = None  # a censored lab value: <, <=, >= or > (FHIR Quantity.comparator)
    until: date | None = None  # when a medicine course ended, if recorded
    flagged_low: bool = False  # the lab's interpretation says below its reference range
    # the value and unit as the lab reported them, shown beside the converted value
    reported_value: float | None = None
    reported_unit: str | None = None
    verification: str | None = None  # a Condition's verificationStatus code (confirmed, provisional, ...)
    # a value sent with no unit, in the canonical unit read in each unit the lab may have meant (candidateUnits)
    unitless_values: tuple[float, ...] = ()
    # a Condition's recordedDate, kept when `when` is its onset: a record entered after an earlier
    # answer is newer evidence than it, even when its onset is older (a pregnancy dated from the
    # last period, entered when found)
    recorded: date | None = None
    # when dosing is to begin, if the order says so (timing boundsPeriod.start): an order whose
    # start is still to come is replacement or use not yet under way; for a test ordered, the
    # last day it is for (occurrence[x])
    starts: date | None = None
    # a Condition recorded as a visit's diagnosis only (conditionDatedOnlyCategories): present at
    # that visit, its recordedDate, whatever its onset
    visit: bool = False
    # the lab's flags on the result (Observation.interpretation), upper case
    flags: frozenset[str] = frozenset()
    # the lab's own upper reference limit, in the canonical unit, when one normal range gives it
    upper_limit: float | None = None
    # a value outside the lab's plausibleRange: kept as reported, never compared
    implausible: bool = False
    # a value sent with no unit, read in the unit of the lab's normal range beside it
    unit_from_range: bool = False
    # a Condition dated by its recordedDate alone (no onset): when it was entered, not when it began
    entered_only: bool = False

    @property
    def reference(self) -> str | None:
        return f"{self.resource_type}/{self.resource_id}" if self.resource_id else None


ORDERED_NOW = "ordered-now"  # Fact.status of an order drafted in this call (order-select), not one on record


@dataclass
class PatientFacts:
    birth_date: date | None = None
    sex: str = "unknown"
    deceased: bool = False
    by_concept: dict[str, list[Fact]] = field(default_factory=lambda: defaultdict(list))
    skipped_invalid: int = 0  # invalid, or carrying a modifier extension we cannot understand
    malformed: int = 0  # prefetch entries that were not resources at all
    unchecked: frozenset[str] = frozenset()  # checks ("results", "therapy", "orders") the EHR sent no data for
    # medicine records in use or given whose product cannot be named: a reference to a Medication
    # not sent (no _include) with no display; any of them may be B12, so therapy is not fully checked
    unnamed_medications: int = 0
    in_progress: list[Fact] = field(default_factory=list)  # lab tests registered, no result yet
    # lab tests final with nothing reported ("Test not performed", no value): shown, never a result
    no_result: list[Fact] = field(default_factory=list)
    ended: dict[str, list[Fact]] = field(default_factory=dict)  # resolved or abated Conditions, by concept
    # stopped orders, by concept: read only to date the start of a medicine still taken
    renewals: dict[str, list[Fact]] = field(default_factory=dict)
    # B12 replacement orders on hold (recordStatus.therapyOnHold): paused, neither under way nor a
    # dose given; named on the card, so a clinician sees the treatment was meant and is not running
    held_therapy: list[Fact] = field(default_factory=list)
    # every result of a lab read as it stood on a past day (Knowledge.lab_history), raw and dated, and
    # how to read one: validated only when asked for, so a chart of a thousand eGFRs costs a few
    history: dict[str, list[tuple[date, dict[str, Any]]]] = field(default_factory=dict)
    read_result: Callable[[str, dict[str, Any]], "Fact | None"] | None = field(default=None, repr=False, compare=False)

    def of(self, concept: str) -> list[Fact]:
        return self.by_concept.get(concept, [])

    def result_near(self, lab: str, day: date, within_days: int) -> "Fact | None":
        """The valid result of `lab` with a value taken nearest `day`, before or after it, at most
        `within_days` away (on a tie, the later)."""
        near = sorted(((abs((taken - day).days), -taken.toordinal(), n) for n, (taken, _) in enumerate(self.history.get(lab, []))
                       if abs((taken - day).days) <= within_days))
        for _, _, n in near:
            fact = self.read_result(lab, self.history[lab][n][1]) if self.read_result is not None else None
            if fact is not None and fact.value is not None:
                return fact
        return None

    def result_by(self, lab: str, day: date) -> "Fact | None":
        """The latest valid result of `lab` with a value taken on or before `day`."""
        for _, n in sorted(((taken, n) for n, (taken, _) in enumerate(self.history.get(lab, [])) if taken <= day), reverse=True):
            fact = self.read_result(lab, self.history[lab][n][1]) if self.read_result is not None else None
            if fact is not None and fact.value is not None:
                return fact
        return None

    def courses(self, concept: str) -> list[Fact]:
        """Every course of a medicine, stopped orders too: what dates the start of current use."""
        return [*self.of(concept), *self.renewals.get(concept, [])]

    @property
    def unreadable(self) -> int:
        """Records sent that could not be read: any of them might have held a finding."""
        return self.malformed + self.skipped_invalid


def extract_facts(
    data: PatientData, knowledge: Knowledge, check: TimeCheck = no_time_limit, today: date | None = None,
) -> PatientFacts:
    """Every concept mention that passes the status rules, as Facts; `check` is called every few
    records (and by the text matcher), so no record set outlasts the call's deadline. With `today`,
    a lab result dated after tomorrow is an error in the record: counted as unreadable, never the
    latest result that hides the real one."""
    facts = PatientFacts(malformed=data.malformed)
    if data.patient:
        facts.birth_date = latest_birth_date(data.patient.get("birthDate"))
        gender = data.patient.get("gender")
        facts.sex = gender if gender in ("male", "female", "other") else "unknown"
        facts.deceased = data.patient.get("deceasedBoolean") is True or isinstance(data.patient.get("deceasedDateTime"), str)
    screen = ConceptScreen(knowledge, data, check, today)
    # Lab rules read only the latest valid result per lab, so lab Observations are validated
    # newest first and the rest are never parsed: large charts cost little more than reading.
    # A lab read as it stood on a past day (Knowledge.lab_history) keeps its results raw, to be read
    # when asked for (PatientFacts.result_near).
    labs: dict[str, list[tuple[tuple[datetime, int, datetime], str, dict[str, Any]]]] = defaultdict(list)
    status_rank = final_first(knowledge)
    unnamed_statuses = knowledge.rule.record_status.therapy_record_statuses
    for rtype in RESOURCE_TYPES:
        for n, raw in enumerate(data.of_type(rtype), 1):
            if n % RECORDS_PER_CHECK == 0:
                check()
            hits = screen.concepts(raw, rtype)
            if not hits:
                if rtype in unnamed_statuses and isinstance(status := raw.get("status"), str) and status in unnamed_statuses[rtype] \
                        and screen.medication_concept(raw) is None:
                    facts.unnamed_medications += 1
                continue
            if rtype == "Observation" and len(hits) == 1 and next(iter(hits)) in knowledge.units:
                when = raw_observation_date(raw)
                labs[next(iter(hits))].append((newest_first_key(when, raw, status_rank), when, raw))
                continue
            _add_facts(facts, raw, rtype, hits, screen)
    latest = (today + timedelta(days=CLOCK_SKEW_DAYS)).isoformat() if today is not None else None
    for concept, candidates in labs.items():
        candidates.sort(key=lambda c: c[0], reverse=True)
        for n, (_, when, raw) in enumerate(candidates, 1):
            if n % RECORDS_PER_CHECK == 0:  # a long run of invalid results, each validated
                check()
            if latest is not None and when[:10] > latest:  # ISO dates, partial ones too, compare as text
                facts.skipped_invalid += 1
                continue
            if _add_facts(facts, raw, "Observation", {concept: "code"}, screen):
                break
        if concept in knowledge.lab_history:
            facts.history[concept] = [(day, raw) for _, when, raw in candidates
                                      if (day := as_date(when)) is not None and (latest is None or when[:10] <= latest)]
    if facts.history:
        facts.read_result = lambda concept, raw: _read_one(raw, concept, screen)
    return facts


def _read_one(raw: dict[str, Any], concept: str, screen: "ConceptScreen") -> "Fact | None":
    """One lab result read on its own, leaving the patient's facts (and their counts) as they are."""
    scratch = PatientFacts()
    _add_facts(scratch, raw, "Observation", {concept: "code"}, screen)
    return next(iter(scratch.of(concept)), None)


# The elements _add_facts reads from a validated model; validation is limited to these and
# what FHIR requires, so a malformed element the rule never reads does not lose the record.
ELEMENTS_READ = frozenset({
    "id", "status", "clinicalStatus", "verificationStatus", "onset[x]", "recordedDate",
    "effective[x]", "issued", "value[x]", "doNotPerform", "dispenseRequest", "authoredOn",
    "dateAsserted", "performed[x]", "occurrence[x]",
})
# Read from the raw JSON instead, leniently: a malformed flag or abatement must not cost the record.


def awaiting_result(fact: Fact, k: Knowledge) -> bool:
    """Whether an Observation fact is a test in progress (registered, or interim with nothing
    reported yet): shown as a sample taken with no result, never as a result."""
    status = k.rule.record_status
    return fact.resource_type == "Observation" and (
        fact.status in status.observation_in_progress
        or (fact.status in status.observation_interim and fact.reported_value is None and not fact.flagged_low))


def _add_facts(
    facts: PatientFacts, raw: dict[str, Any], rtype: str, hits: dict[str, Literal["code", "text"]],
    screen: ConceptScreen,
) -> bool:
    """Validate one resource and record its facts; False when it is invalid or does not count."""
    if rtype == "MedicationRequest" and screen.k.reported_use_only.intersection(hits) and not reported(raw):
        hits = {c: how for c, how in hits.items() if c not in screen.k.reported_use_only}  # an order: medical use
        if not hits:
            return False
    model = None if fhir_models.has_modifier_extension(raw) else fhir_models.parse(raw, ELEMENTS_READ)
    r = READERS[rtype](model, raw, screen) if model is not None else Reading("invalid")
    if r.use == "invalid" or model is None:
        facts.skipped_invalid += 1
        return False
    if r.use == "skip" or (rtype == "Observation" and (r.value == 0 or scored_zero(raw)) and not set(hits) & set(screen.k.units)):
        return False  # a symptom scored 0 ("muscle pain score: 0") is a symptom absent
    therapy = screen.k.rule.suppressors.therapy_concepts
    if r.planned:
        hits = _split(hits, therapy)[1]
        if not hits:
            return False
    rid, label = model.id, record_label(raw, screen, rtype)
    if rtype == "MedicationRequest" and r.status in screen.k.rule.record_status.therapy_on_hold:
        held, hits = _split(hits, therapy)  # metformin on hold is still long-term use
        facts.held_therapy += [Fact(c, rtype, rid, label, r.when, False, how, status=r.status, until=r.until)
                               for c, how in held.items()]
        if not hits:
            return False
    if r.use == "no-result" or not r.reports:
        # a lab test that reported nothing is no result: kept apart, to be named on the card, so it
        # silences nothing and an older result of that lab is read instead; a symptom needs no value.
        # An interim one (preliminary) says its result is to follow: a test in progress, as registered is.
        labs = {c: how for c, how in hits.items() if c in screen.k.units}
        awaited = r.use != "no-result" and r.status in screen.k.rule.record_status.observation_interim
        (facts.in_progress if awaited else facts.no_result).extend(
            Fact(c, rtype, rid, label, r.when, awaited, how, status=r.status) for c, how in labs.items())
        hits = {c: how for c, how in hits.items() if c not in labs}
        if r.use == "no-result" or not hits:
            return False
    if r.use == "ended":  # kept apart: only "recent" confounders read them
        for concept, how in hits.items():
            facts.ended.setdefault(concept, []).append(Fact(concept, rtype, rid, label, r.when, False, how, status=r.status, until=r.until,
                                                                   verification=r.verification, entered_only=r.entered_only))
        return False
    if r.use == "renewal":  # kept apart: only the start of a medicine still taken reads them
        # ...except B12 replacement stopped with a recorded end: a course that ran until then, read on
        # as a completed one (with no end, nothing says a dose was given before it was halted)
        stopped_course = r.status in screen.k.rule.record_status.therapy_stopped and r.until is not None
        hits, renewed = _split(hits, therapy if stopped_course else ())
        for concept, how in renewed.items():
            facts.renewals.setdefault(concept, []).append(Fact(concept, rtype, rid, label, r.when, False, how, status=r.status, until=r.until))
        if not hits:
            return False
    if r.use == "in-progress":
        facts.in_progress += [Fact(c, rtype, rid, label, r.when, True, how, status=r.status) for c, how in hits.items()]
        return False
    for concept, how in hits.items():
        lab = screen.k.units.get(concept)
        given, from_range = r.unit, False
        if lab is not None and r.value is not None and not given:
            # no unit on the value, but the lab's normal range beside it gives one: the value is in it
            given = next((u for u in r.range_units if lab.factor(u) is not None), None)
            from_range = given is not None
        value, unit = r.value, given
        if lab is not None and r.value is not None:
            factor = lab.factor(given)
            value, unit = (r.value * factor, lab.canonical_unit) if factor is not None else (None, given)
        implausible = value is not None and lab is not None and not lab.plausible(value)
        if implausible:
            value, unit = None, given
        # a lab reported in several units, no unit given: the value in each, for a band they all agree on
        candidates = lab.unitless_values(r.value) if lab is not None and r.value is not None and not given else ()
        unitless = tuple(v for v in candidates if lab is not None and lab.plausible(v))
        implausible = implausible or bool(candidates and not unitless)  # implausible in every unit it may be in
        # a lasting disorder diagnosed at a visit stays as its status says (a neuropathy does not pass)
        active = r.active or (r.visit and screen.k.concepts[concept].persistent
                              and r.status in screen.k.rule.record_status.condition_clinical_active)
        # shown as the lab printed it ("µkat/L") when that reads the same as the unit read ("ukat/L")
        shown_unit = (r.unit_text if lab is not None and r.unit_text and r.unit and lab.factor(r.unit_text) is not None
                      and lab.factor(r.unit_text) == lab.factor(r.unit) else given)
        limit = upper_limit(r, lab) if lab is not None and r.upper_limits else None
        facts.by_concept[concept].append(Fact(concept, rtype, rid, label, r.when, active, how, value, unit, r.status,
                                              r.comparator, r.until, r.flagged_low, r.value, shown_unit, r.verification,
                                              unitless, r.recorded, r.starts, r.visit, r.flags, limit, implausible,
                                              from_range and value is not None))
    return True


def _split(hits: dict[str, Literal["code", "text"]], concepts: Collection[str]
           ) -> tuple[dict[str, Literal["code", "text"]], dict[str, Literal["code", "text"]]]:
    """(the hits of `concepts`, the others)."""
    return ({c: how for c, how in hits.items() if c in concepts},
            {c: how for c, how in hits.items() if c not in concepts})
