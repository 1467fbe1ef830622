"""Facts: the pieces of the record the rule needs, matched to concepts, dated and in one unit.

This is the only module that knows FHIR paths. Each raw resource is first screened on its
codes and text (cheap, no validation); only resources that name a concept are validated
with fhir.resources, so a 10,000-Observation chart costs little more than reading it.
"""

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from cds_service import fhir_models
from cds_service.knowledge import STANDARD, Knowledge
from cds_service.knowledge_models import LabFlags, LabUnits
from cds_service.lab_text import LabTextReader
from cds_service.patient_data import RESOURCE_TYPES, PatientData, reference_parts
from cds_service.textmatch import TimeCheck, no_time_limit
from cds_service.valueset import loose_uri

NEGATIVE_ANSWER = "negative-answer"
CLOCK_SKEW_DAYS = 1
"""A date this many days ahead counts as today: the EHR's clock and the service's differ by time zone."""
MAX_LAB_VALUE = 1e12  # no concentration or count is negative or this large in any unit: a corrupt value
HL7_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"


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
    # start is still to come is replacement or use not yet under way
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

    def courses(self, concept: str) -> list[Fact]:
        """Every course of a medicine, stopped orders too: what dates the start of current use."""
        return [*self.of(concept), *self.renewals.get(concept, [])]

    @property
    def unreadable(self) -> int:
        """Records sent that could not be read: any of them might have held a finding."""
        return self.malformed + self.skipped_invalid


# no record's date lies outside these: one that does is a corrupt date, read as none (date
# arithmetic near year 1 or 9999 would overflow)
EARLIEST_DATE, LATEST_DATE = date(1800, 1, 1), date(2999, 12, 31)


def as_date(value: Any) -> date | None:
    day = _as_date(value)
    return day if day is not None and EARLIEST_DATE <= day <= LATEST_DATE else None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 4:
        try:
            if len(value) >= 10:
                return date.fromisoformat(value[:10])
            # a partial FHIR date (YYYY-MM, YYYY) reads as the first day it allows
            return date(int(value[:4]), int(value[5:7]) if len(value) >= 7 else 1, 1)
        except ValueError:
            return None
    return None


def items(value: Any) -> list[Any]:
    """A raw JSON array as a list; a single object sent in its place (as real clients bend arrays)
    as a list of one; anything else (a number, a string) as none."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def latest_birth_date(value: Any) -> date | None:
    """The last day a FHIR birthDate (YYYY, YYYY-MM or YYYY-MM-DD) allows: a partial date never
    makes a patient older than they may be (65 or over is a risk factor; under 16 is out of scope)."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 4:
            return as_date(date(int(value), 12, 31))
        if len(value) == 7 and value[4] == "-":
            year, month = int(value[:4]), int(value[5:])
            if not 1 <= month <= 12:
                return None
            return as_date(date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1))
    except (ValueError, OverflowError):
        return None
    return as_date(value)


def _codings(concept: Any) -> list[tuple[str, str, str]]:
    """(system, code, display) from a raw CodeableConcept dict; tolerant of junk."""
    if not isinstance(concept, dict):
        return []
    out = []
    for coding in items(concept.get("coding")):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            system, display = coding.get("system"), coding.get("display")  # text only: str() of a value
            out.append((system if isinstance(system, str) else "", coding["code"],  # nested ~1000 deep recurses
                        display if isinstance(display, str) else str(display) if type(display) in (int, float) else ""))
    return out


def _texts(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    texts = [concept["text"]] if isinstance(concept.get("text"), str) else []
    texts += [c[2] for c in _codings(concept) if c[2]]
    return texts


_NO_CONCEPTS: frozenset[str] = frozenset()


class ConceptScreen:
    """Finds which concepts a raw resource names, by code first and by text as a fallback."""

    def __init__(self, knowledge: Knowledge, data: PatientData, check: TimeCheck = no_time_limit,
                 today: date | None = None) -> None:
        self.k = knowledge
        self.data = data
        self.check = check
        self.today = today  # the clinic's date, when the readers need it (an end still to come has not ended)

    def coded(self, concept: Any, rtype: str) -> frozenset[str]:
        return self._coded(concept, rtype)[0]

    def _coded(self, concept: Any, rtype: str) -> tuple[frozenset[str], bool]:
        """(concepts named by the codings, whether a coding in a standard terminology speaks for the
        record: not when one of its codes is generic, as an EHR's translation of a catch-all code
        such as F18.10 into SNOMED CT 'Inhalant abuse' names the substance no better)."""
        found = _NO_CONCEPTS  # most codings name nothing: no set is built for them
        kinds = 0  # bit 1: a standard coding, bit 2: a generic one
        if not isinstance(concept, dict):
            return found, False
        codings = self.k.codings
        for coding in items(concept.get("coding")):
            if isinstance(coding, dict):
                code, system = coding.get("code"), coding.get("system")
                if isinstance(code, str) and (system is None or isinstance(system, str)):
                    hit, kind = codings[rtype, system or "", code]
                    if hit:
                        found = found.union(hit)
                    kinds |= kind
        return found, kinds == STANDARD

    def answering(self, found: frozenset[str], question: frozenset[str]) -> frozenset[str]:
        """`found` without the answer concepts whose question is not in `question` ("Pregnant" as the
        answer to "Pregnancy status", not to "Pregnancy intention" nor as the result of a pregnancy
        test; with none, every answer goes: an answer is read as a value, never as a record's own code)."""
        answers = self.k.answers
        if answers and not found.isdisjoint(answers):
            return frozenset(c for c in found if c not in answers or answers[c] in question)
        return found

    def text(self, texts: list[str], rtype: str, one_name: bool = False) -> set[str]:
        """Concepts the texts mention. With `one_name` they are names of one thing (a code's text and
        its codings' displays): a word that makes it something else in any of them holds for all, so
        'Multivitamin' as the text cancels the cyanocobalamin in the coding's ingredient list."""
        matcher = self.k.text_by_type.get(rtype)  # the terms of concepts read from this type only
        if matcher is None:
            return set()
        found: set[str] = set()
        for n, t in enumerate(texts, 1):
            if n % TEXTS_PER_CHECK == 0:  # a record can carry 100,000 names (codings' displays)
                self.check()
            found |= matcher.find(t, self.check)
        if one_name and found and len(texts) > 1:
            for n, t in enumerate(texts, 1):
                if n % TEXTS_PER_CHECK == 0:
                    self.check()
                found -= matcher.excluded(t)
        return found

    def medication_concept(self, raw: dict[str, Any]) -> Any:
        """The medicine's CodeableConcept: given inline, or the code of the Medication referenced
        (contained, or included in the search); else the reference's display as its text, as EHRs
        name the product there when the Medication itself was not sent."""
        if "medicationCodeableConcept" in raw:
            return raw["medicationCodeableConcept"]
        reference = raw.get("medicationReference")
        if not isinstance(reference, dict):
            return None
        ref, display = reference.get("reference"), reference.get("display")
        medication: Any = None
        if isinstance(ref, str) and ref.startswith("#"):
            medication = next((c for c in items(raw.get("contained"))
                               if isinstance(c, dict) and c.get("id") == ref[1:]), None)
        elif isinstance(ref, str):
            medication = self.data.medications.get(reference_parts(ref)[-1])
        code = medication.get("code") if isinstance(medication, dict) else None
        if code is None and isinstance(medication, dict):
            code = _ingredients_concept(medication)
        if code is None and isinstance(display, str) and display.strip():
            return {"text": display}
        return code

    def _laboratory(self, raw: dict[str, Any], coded: frozenset[str]) -> bool:
        """A lab result (a lab the rule reads, or category laboratory): its notes and text value are
        the laboratory's comment or result ("B12 deficiency can present with fatigue, paresthesia"),
        never the patient's symptoms."""
        if not coded.isdisjoint(self.k.units):
            return True
        return any(isinstance(coding, dict) and coding.get("code") == "laboratory"
                   for category in items(raw.get("category")) if isinstance(category, dict)
                   for coding in items(category.get("coding")))

    def concepts(self, raw: dict[str, Any], rtype: str) -> dict[str, Literal["code", "text"]]:
        medication = rtype.startswith("Medication")
        main = self.medication_concept(raw) if medication else raw.get("code")
        coded, standard = self._coded(main, rtype)
        if not coded and standard and not medication and "valueString" not in raw and (
            rtype != "Observation" or "valueCodeableConcept" not in raw
        ):
            return {}  # most of a chart, found early: a standard code the rule does not know, no answer text
        if coded and not coded.isdisjoint(self.k.history_questions):
            return {}  # "History of past illness: Influenza" is no illness now, nor a relative's the patient's
        coded = self.answering(coded, frozenset())  # an answer ("Pregnant") is no code: only a value
        value = raw.get("valueCodeableConcept") if rtype == "Observation" else None
        value_coded, value_standard = self._coded(value, rtype) if value is not None else (_NO_CONCEPTS, False)
        if value_coded:
            coded |= self.answering(value_coded, coded)
        # A record coded in a standard terminology speaks through its code; its text is read only
        # when it has none. Medications are the exception: products arrive under SCD/SBD codes no
        # value set can list in full, so the ingredient name in their text is the documented fallback.
        read_text = not coded and (not standard or medication)
        # A note speaks about its record: on a record coded as something the rule does not know (say
        # hypertension) it is that condition's context, not a complaint. A valueString is an answer
        # (a chief complaint, a symptom question) and is always read.
        read_notes = not standard or bool(coded)
        extra_texts = (
            None if medication or (("note" not in raw or not read_notes) and "valueString" not in raw)
            or (rtype == "Observation" and self._laboratory(raw, coded))
            else _free_texts(raw, read_notes)
        )
        if not coded and value is not None and not value_standard and not self._laboratory(raw, coded):
            # an answer given in words ("Chief complaint": {"text": "Muscle aches"}; substance use:
            # "Nitrous oxide") is read as a valueString is, unless a standard code speaks for it
            extra_texts = [*(extra_texts or []), *_texts(value)[:1]]
        if not coded and not read_text and not extra_texts:
            return {}  # most of a chart: a standard code the rule does not know, and no free text
        main_text = self.text(names := _texts(main), rtype, one_name=True) if read_text else set()
        if main_text and medication:  # a multivitamin's ingredient list names B12 at a few micrograms
            main_text -= self.k.strengths.out_of_range(main_text, names)
        texts = self.text(extra_texts, rtype) - coded if extra_texts else set()
        if not coded and not main_text and not texts:
            return {}
        result: dict[str, Literal["code", "text"]] = dict.fromkeys(coded, "code")
        result.update(dict.fromkeys((main_text | texts) - coded, "text"))
        return result


def _ingredients_concept(medication: dict[str, Any]) -> Any:
    """A Medication with no code, defined by its ingredients (FHIR R4 Medication.code is optional;
    compounded products are sent so): one ingredient stands for the product's code; several are
    read as a product name listing them ("Cyanocobalamin / Folic acid"), so the rules for a
    combination product's name (multivitamin, strength) apply as they do to any other."""
    items_ = [i.get("itemCodeableConcept") for i in items(medication.get("ingredient")) if isinstance(i, dict)]
    concepts_ = [c for c in items_ if isinstance(c, dict)]
    if len(concepts_) == 1:
        return concepts_[0]
    names = [t for c in concepts_ for t in _texts(c)[:1]]
    return {"text": " / ".join(names)} if names else None


def _free_texts(raw: dict[str, Any], notes_too: bool) -> list[str]:
    """The free text beside a record's code: its valueString, and its notes when `notes_too`."""
    notes, value = raw.get("note") if notes_too else None, raw.get("valueString")
    texts = [n["text"] for n in items(notes) if isinstance(n, dict) and isinstance(n.get("text"), str)]
    if isinstance(value, str):
        texts.append(value)
    return texts


def record_label(raw: dict[str, Any], screen: ConceptScreen, rtype: str) -> str:
    """What the record calls itself: the concept's text, else a coding display, else the display
    cards/ gives its code, else its type. An Observation that answers a question ("Symptom", "Chief
    complaint") is shown with its answer."""
    concept = screen.medication_concept(raw) if rtype.startswith("Medication") else raw.get("code")
    texts = _texts(concept)
    named = (screen.k.code_display(system, code) for system, code, _ in _codings(concept))
    label = texts[0] if texts else next((d for d in named if d), rtype)
    if rtype == "Observation":
        answers = _texts(raw.get("valueCodeableConcept"))
        answer = answers[0] if answers else raw.get("valueString")
        if isinstance(answer, str) and answer.strip() and answer.strip() != label:
            return f"{label}: {answer.strip()}" if texts else answer.strip()
    return label


UCUM = "http://unitsofmeasure.org"
RECORDS_PER_CHECK = 32  # validating this many costs about a millisecond
TEXTS_PER_CHECK = 1024  # reading this many short names costs a few milliseconds


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
    final_first = _final_first(knowledge)
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
                when = _raw_observation_date(raw)
                labs[next(iter(hits))].append((_newest_first_key(when, raw, final_first), when, raw))
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


_NO_INSTANT = datetime.min.replace(tzinfo=UTC)


def instant(text: Any) -> datetime:
    """A FHIR date or dateTime as the instant it names, for ordering results: "10:00-05:00" is after
    "14:00Z" the same day, which text order reads the other way round. A date alone is its midday
    in UTC, the moment of that day in every zone from -12:00 to +12:00, so it sorts by its date
    beside a time written in any of them (as its first moment, the 20th sorted before 22:00-05:00
    on the 19th, which is the 20th in UTC); a time with no zone (converters send them) is read as
    UTC; unreadable or absent sorts before every date."""
    if not isinstance(text, str) or len(text) < 4:
        return _NO_INSTANT
    try:
        if len(text) < 10:  # a partial date (YYYY, YYYY-MM): its first day
            moment = datetime(int(text[:4]), int(text[5:7]) if len(text) >= 7 else 1, 1, 12, tzinfo=UTC)
        elif len(text) == 10:
            moment = datetime.fromisoformat(text).replace(hour=12, tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(text)
            moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        day = as_date(text)  # a date this reads, with a time it cannot (as _observation_date does)
        return datetime(day.year, day.month, day.day, 12, tzinfo=UTC) if day else _NO_INSTANT
    except OverflowError:  # year 1 or 9999 moved across a zone
        return _NO_INSTANT
    return moment if EARLIEST_DATE <= moment.date() <= LATEST_DATE else _NO_INSTANT


def _final_first(k: Knowledge) -> Callable[[Any], int]:
    """Ranks a raw result's status on a tie in time: a final (amended, corrected) result above an
    interim (preliminary) one, which the lab has since replaced, above any other status."""
    status = k.rule.record_status
    final = frozenset(s for s in status.observation_status if s not in status.observation_interim)
    interim = frozenset(status.observation_interim)
    return lambda s: 0 if not isinstance(s, str) else 2 if s in final else 1 if s in interim else 0  # junk: last


def _newest_first_key(when: str, raw: dict[str, Any], final_first: Callable[[Any], int]) -> tuple[datetime, int, datetime]:
    """Sorts a lab's results newest first by the instant taken, then final before interim, then
    the later issued (the lab's latest word on the same sample)."""
    return instant(when), final_first(raw.get("status")), instant(raw.get("issued"))


def _raw_observation_date(raw: dict[str, Any]) -> str:
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


# The elements _add_facts reads from a validated model; validation is limited to these and
# what FHIR requires, so a malformed element the rule never reads does not lose the record.
ELEMENTS_READ = frozenset({
    "id", "status", "clinicalStatus", "verificationStatus", "onset[x]", "recordedDate",
    "effective[x]", "issued", "value[x]", "doNotPerform", "dispenseRequest", "authoredOn",
    "dateAsserted", "performed[x]", "occurrence[x]",
})
# Read from the raw JSON instead, leniently: a malformed flag or abatement must not cost the record.


@dataclass(frozen=True, slots=True)
class Reading:
    """What one validated resource says, before it is attached to concepts. `use` decides where it
    goes: a current or past record (counts), a resolved condition (ended: only "recent" confounders
    read it), a test not yet resulted (in-progress), a test that reports no value and says why
    (no-result), or nothing (skip; invalid is counted). `reports` is False for an Observation with
    no number and no lab flag: as a lab test, no result (a symptom needs no value)."""

    use: Literal["counts", "ended", "in-progress", "renewal", "no-result", "skip", "invalid"]
    when: date | None = None
    active: bool = False
    status: str | None = None
    until: date | None = None
    value: float | None = None
    unit: str | None = None
    unit_text: str | None = None  # Quantity.unit, as the lab printed it: shown when it means the same as `unit`
    comparator: str | None = None
    flagged_low: bool = False
    reports: bool = True
    verification: str | None = None
    recorded: date | None = None
    starts: date | None = None
    planned: bool = False  # a medicine planned, not known to be taken: no B12 replacement under way
    visit: bool = False  # a visit's diagnosis only: judged by its dates (Fact.visit)
    flags: frozenset[str] = frozenset()
    upper_limits: tuple[tuple[float, tuple[str, ...]], ...] = ()  # referenceRange highs, with the units they give


_SKIP = Reading("skip")


def _read_condition(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    clinical = _status_code(m.clinicalStatus, status.condition_status_words)
    verification = _status_code(m.verificationStatus, status.condition_status_words)
    if verification in status.condition_verification_ignored:
        return _SKIP
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
        return Reading("ended", when, False, clinical, _abatement_date(raw))
    return Reading("counts", when, active, clinical, verification=verification, recorded=as_date(m.recordedDate),
                   visit=visit_only)


def _read_observation(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.status in status.observation_in_progress:  # not a result: an older result is still read
        return Reading("in-progress", _observation_date(m), True, m.status)
    if m.status not in status.observation_status or _is_negative(m, screen):
        return _SKIP
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
                     flags=frozenset(f.upper() for f in lab_flags), upper_limits=_upper_limits(raw))
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
        if "type" in reference and all(code != "normal" for _, code, _ in _codings(reference["type"])):
            continue
        high = reference.get("high")
        if not isinstance(high, dict):
            continue
        value = high.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            out.append((float(value), _quantity_units(high.get("system"), high.get("code"), high.get("unit"))))
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


def awaiting_result(fact: Fact, k: Knowledge) -> bool:
    """Whether an Observation fact is a test in progress (registered, or interim with nothing
    reported yet): shown as a sample taken with no result, never as a result."""
    status = k.rule.record_status
    return fact.resource_type == "Observation" and (
        fact.status in status.observation_in_progress
        or (fact.status in status.observation_interim and fact.reported_value is None and not fact.flagged_low))


def _holds_number(obs: Any, k: Knowledge) -> bool:
    """Whether an Observation's value holds a number: a Quantity with a value, an integer, a range or
    ratio, or text that is one, with at most a unit, even text this reader cannot convert ("150-200 pg/mL"). A lab
    that writes "Test not performed", "QNS" or "Specimen hemolyzed, recollect x2", or sends no value,
    reports no number."""
    quantity = obs.valueQuantity
    return ((quantity is not None and quantity.value is not None) or obs.valueInteger is not None
            or obs.valueRange is not None or obs.valueRatio is not None
            or (obs.valueString is not None and k.lab_text.holds_number(obs.valueString)))


def _read_medication_request(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.doNotPerform or m.status not in (*status.medication_active, *status.medication_past,
                                          *status.medication_renewal_only):
        return _SKIP
    if m.intent in status.medication_intent_ignored:
        return _SKIP
    self_reported = reported(raw)
    # a plan nobody reports taking: read as an order for the risk factors (EHRs document home
    # medicines so), never as B12 replacement under way
    planned = m.intent in status.medication_intent_planned and not self_reported
    validity = m.dispenseRequest and m.dispenseRequest.validityPeriod
    use: Literal["counts", "renewal"] = "renewal" if m.status in status.medication_renewal_only else "counts"
    dosing = _dosing_bounds(raw.get("dosageInstruction"))
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


def _dosing_bounds(dosages: Any) -> tuple[list[date], list[date]]:
    """(starts, ends) of an order's dosing, from raw dosageInstruction[].timing.repeat.boundsPeriod:
    Epic writes a course's end there ("Until Wed 5/27/2020") and leaves the validityPeriod open, and
    a start still to come there for a course not yet begun. Each list is empty unless every
    instruction gives that bound: an instruction with no end runs on, one with no start has begun."""
    starts: list[date] = []
    ends: list[date] = []
    for repeat in _repeats(dosages):
        bounds = repeat.get("boundsPeriod")
        bounds = bounds if isinstance(bounds, dict) else {}
        starts.append(as_date(bounds.get("start")) or date.min)
        ends.append(as_date(bounds.get("end")) or date.max)
    return ([] if date.min in starts else starts), ([] if date.max in ends else ends)


def _single_dose(dosages: Any) -> bool:
    """Whether raw dosageInstruction orders one dose only: every instruction's timing.repeat.count is 1."""
    counts = [repeat.get("count") for repeat in _repeats(dosages)]
    return bool(counts) and all(type(c) is int and c == 1 for c in counts)


def _read_medication_statement(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.status in status.medication_statement_planned or m.status not in (
            *status.medication_statement_active, *status.medication_statement_past):
        return _SKIP  # to be taken later (intended), not taken, unknown, entered in error
    # STU3 `taken` (n, unk, na) and DSTU2 `wasNotTaken`, read from the raw JSON (R4 has neither): a
    # statement that the patient does not take the medicine, or that nobody knows, is no use of it
    taken = raw.get("taken")
    if (taken is not None and taken not in status.medication_statement_taken) or raw.get("wasNotTaken") is True:
        return _SKIP
    active = m.status in status.medication_statement_active
    # dated by when it was taken only: dateAsserted is when it was recorded (a medicines
    # reconciliation today of a drug taken for years), so with no effective date the start is unknown
    when = as_date(m.effectivePeriod and m.effectivePeriod.start) or as_date(m.effectiveDateTime)
    # a start still to come is use not yet begun, as an order's dosing start is
    return Reading("counts", when, active, m.status, as_date(m.effectivePeriod and m.effectivePeriod.end), starts=when)


def _dated_event(m: Any, counted: list[str], element: str) -> Reading:
    """Something done (a dose given, a procedure): counted by status, dated by element[x]."""
    if m.status not in counted:
        return _SKIP
    period = getattr(m, f"{element}Period")
    return Reading("counts", as_date(getattr(m, f"{element}DateTime")) or as_date(period and period.start),
                   status=m.status)


def _read_administration(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    return _dated_event(m, screen.k.rule.record_status.administration_counted, "effective")


def _read_procedure(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    return _dated_event(m, screen.k.rule.record_status.procedure_counted, "performed")


def _read_service_request(m: Any, raw: dict[str, Any], screen: ConceptScreen) -> Reading:
    k = screen.k
    status = k.rule.record_status
    if m.status not in status.pending_order_status or m.doNotPerform or m.intent in status.order_intent_ignored:
        return _SKIP
    # dated when written; an order sent with only the date it is for (occurrence[x]) by that, so a
    # test due three years ago lapses like one written then, where undated it was pending for ever
    period = m.occurrencePeriod
    when = as_date(m.authoredOn) or as_date(m.occurrenceDateTime) or (
        as_date(period.start or period.end) if period is not None else None)
    return Reading("counts", when, True, m.status)


# which records count, per resource type: the status rules of cards/rule.json recordStatus
READERS: dict[str, Callable[[Any, dict[str, Any], ConceptScreen], Reading]] = {
    "Condition": _read_condition, "Observation": _read_observation, "MedicationRequest": _read_medication_request,
    "MedicationStatement": _read_medication_statement, "MedicationAdministration": _read_administration,
    "Procedure": _read_procedure, "ServiceRequest": _read_service_request,
}


def _add_facts(
    facts: PatientFacts, raw: dict[str, Any], rtype: str, hits: dict[str, Literal["code", "text"]],
    screen: ConceptScreen,
) -> bool:
    """Validate one resource and record its facts; False when it is invalid or does not count."""
    model = None if fhir_models.has_modifier_extension(raw) else fhir_models.parse(raw, ELEMENTS_READ)
    r = READERS[rtype](model, raw, screen) if model is not None else Reading("invalid")
    if r.use == "invalid" or model is None:
        facts.skipped_invalid += 1
        return False
    if r.use == "skip" or (rtype == "Observation" and (r.value == 0 or _scored_zero(raw)) and not set(hits) & set(screen.k.units)):
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
            facts.ended.setdefault(concept, []).append(Fact(concept, rtype, rid, label, r.when, False, how, status=r.status, until=r.until))
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
        value, unit = r.value, r.unit
        lab = screen.k.units.get(concept)
        if lab is not None and r.value is not None:
            factor = lab.factor(r.unit)
            value, unit = (r.value * factor, lab.canonical_unit) if factor is not None else (None, r.unit)
        implausible = value is not None and lab is not None and not lab.plausible(value)
        if implausible:
            value, unit = None, r.unit
        # a lab reported in several units, no unit given: the value in each, for a band they all agree on
        candidates = lab.unitless_values(r.value) if lab is not None and r.value is not None and not r.unit else ()
        unitless = tuple(v for v in candidates if lab is not None and lab.plausible(v))
        implausible = implausible or bool(candidates and not unitless)  # implausible in every unit it may be in
        # a lasting disorder diagnosed at a visit stays as its status says (a neuropathy does not pass)
        active = r.active or (r.visit and screen.k.concepts[concept].persistent
                              and r.status in screen.k.rule.record_status.condition_clinical_active)
        # shown as the lab printed it ("µkat/L") when that reads the same as the unit read ("ukat/L")
        shown_unit = (r.unit_text if lab is not None and r.unit_text and r.unit and lab.factor(r.unit_text) is not None
                      and lab.factor(r.unit_text) == lab.factor(r.unit) else r.unit)
        limit = _upper_limit(r, lab) if lab is not None and r.upper_limits else None
        facts.by_concept[concept].append(Fact(concept, rtype, rid, label, r.when, active, how, value, unit, r.status,
                                              r.comparator, r.until, r.flagged_low, r.value, shown_unit, r.verification,
                                              unitless, r.recorded, r.starts, r.visit, r.flags, limit, implausible))
    return True


def _upper_limit(r: Reading, lab: LabUnits) -> float | None:
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
        codings = _codings(concept)
        found += [code for system, code, _ in codings if not system or loose_uri(system) in flags.loose_systems]
        text = concept.get("text") if isinstance(concept, dict) and not codings else None
        if isinstance(text, str) and (code := reader.flag_code(text)):
            found.append(code)
    return found


def _split(hits: dict[str, Literal["code", "text"]], concepts: Collection[str]
           ) -> tuple[dict[str, Literal["code", "text"]], dict[str, Literal["code", "text"]]]:
    """(the hits of `concepts`, the others)."""
    return ({c: how for c, how in hits.items() if c in concepts},
            {c: how for c, how in hits.items() if c not in concepts})


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


def _scored_zero(raw: dict[str, Any]) -> bool:
    """A valueInteger of 0 (a Quantity or a text "0" is read into the Reading's value)."""
    value = raw.get("valueInteger")
    return type(value) is int and value == 0


def _is_negative(obs: Any, screen: ConceptScreen) -> bool:
    """A symptom Observation that records absence (coded "No"/"Absent", valueBoolean false, or a
    free-text answer that is only "No", "None", "Absent", …)."""
    if obs.valueBoolean is False:
        return True
    if obs.valueCodeableConcept is not None:
        raw = obs.valueCodeableConcept.model_dump(mode="json", exclude_none=True)
        coded = screen.coded(raw, "Observation")
        if NEGATIVE_ANSWER in coded:
            return True
        if not coded.isdisjoint(screen.k.answers):  # a coded answer is the finding: "Not pregnant" is no "No"
            return False
        # a local answer code says "No" in its display
        return any(screen.k.text.is_negative_answer(text) for text in _texts(raw))
    return screen.k.text.is_negative_answer(obs.valueString)
