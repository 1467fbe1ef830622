"""The rule engine: a pure function from PatientFacts, knowledge and today's date to an Assessment.

No I/O and no clock: `today` is an argument. Every outcome carries its reason, so the card
can explain itself and the audit can record which criteria fired.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from cds_service.contract import PatternVariant
from cds_service.facts import CLOCK_SKEW_DAYS, ORDERED_NOW, Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.knowledge_models import Confounder, ConfounderCheck, LabThreshold, LabUpperLimit, ResultBands
from cds_service.protocol import Indicator

Band = Literal["deficient", "indeterminate", "normal", "unknown"]
CriticalFeature = Literal["neurological", "macrocytic-anaemia", "both", "untreated-low"]


@dataclass(frozen=True)
class Evidence:
    """One criterion that holds, with the facts behind it."""

    id: str
    label: str
    facts: tuple[Fact, ...] = ()
    note: str = ""
    # for a lab criterion: the threshold its latest result crossed, in the lab's canonical unit
    comparator: str = ""
    threshold: float | None = None
    # for a medicine: when its current use began (earlier courses renewed into the active order)
    since: date | None = None
    # for a diagnosis that stands for a lab sign: the latest result of that lab taken since it,
    # which decides instead of the diagnosis (shown, so the card does not hide it)
    measured_since: Fact | None = None
    # for a medicine no longer in use but counted as current (a long course inside the grace window):
    # when it ended, shown so the card does not call it current
    ended: date | None = None
    # for a medicine confounder: the lab result that answers its advice (a creatine kinase since a
    # statin began), shown in the advice's place
    checked: Fact | None = None
    # for a lab sign or lab confounder read against the lab's own upper limit (labUpperLimit): that
    # limit, and the multiple of it crossed; or, with no range to read, the lab's high flag that made it hold
    lab_limit: float | None = None
    limit_times: float | None = None
    flagged_high: bool = False

    def started_after(self, day: date) -> bool:
        if self.since is not None:
            return self.since > day
        return any(f.when is not None and f.when > day for f in self.facts)


@dataclass(frozen=True)
class Assessment:
    outcome: str
    variant: PatternVariant | None = None
    indicator: Indicator | None = None
    trigger: tuple[Fact, ...] = ()
    signs: tuple[Evidence, ...] = ()
    risk_factors: tuple[Evidence, ...] = ()
    confounders: tuple[Evidence, ...] = ()
    last_b12: Fact | None = None
    undated_b12: Fact | None = None  # a result with no date at all: on record, its age unknown
    no_result_b12: Fact | None = None  # a recent B12 test that reported nothing ("Test not performed")
    b12_band: Band | None = None
    recent_result_days: int = 0
    new_risk_since_normal: bool = False
    low_in_pregnancy: bool = False  # the latest result is a low total B12 taken while pregnant
    lapsed_orders: tuple[Fact, ...] = ()  # open B12 orders too old to count as pending
    past_therapy: tuple[Fact, ...] = ()  # B12 replacement recorded after the last result, none current
    earlier_therapy: Fact | None = None  # with none since the last result (or no result): the latest on record
    held_therapy: Fact | None = None  # with none since the last result: the latest B12 order on hold
    critical_feature: CriticalFeature | None = None  # what made the card critical, named in its summary
    diagnosis: Fact | None = None  # the B12 deficiency diagnosed on record a diagnosed-deficiency card reviews
    unchecked: frozenset[str] = frozenset()  # checks made without data (shown as "not checked"); "age" too
    unreadable: int = 0  # records sent that could not be read
    # the latest result of a lab the rule reads for a sign or a confounder, whose value no lab reports
    # (Fact.implausible): it hides the lab's earlier results too, so the card names it
    implausible: tuple[Fact, ...] = ()
    # risk-factor medicines in use but not yet for their minimum duration (metformin for 3 months):
    # named, so a clinician who sees them in the chart knows they were read and why they do not count
    short_courses: tuple[Evidence, ...] = ()

    @property
    def fires(self) -> bool:
        return self.variant is not None

    @property
    def criteria(self) -> list[str]:
        """Ids of everything that fired, for the audit trail (no patient data)."""
        out = [f"outcome:{self.outcome}"]
        out += [f"trigger:{f.concept}" for f in self.trigger[:1]]
        out += [f"sign:{e.id}" for e in self.signs]
        out += [f"risk:{e.id}" for e in self.risk_factors]
        out += [f"confounder:{e.id}" for e in self.confounders]
        return out


def format_value(value: float, apart_from: float | None = None) -> str:
    """A lab value as clinicians read it: one decimal, two below 10 (an MMA of 0.62 against 0.45).
    Beside the threshold it crossed (`apart_from`), as many more decimals as keep the two apart: an
    MMA of 451 nmol/L is 0.451 µmol/L, not 0.45, against "> 0.45 µmol/L"."""
    digits = 2 if abs(value) < 10 else 1
    while apart_from is not None and value != apart_from and round(value, digits) == round(apart_from, digits) and digits < 6:
        digits += 1
    return f"{round(value, digits):g}"


def _days(since: date, today: date) -> int:
    return (today - since).days


def _come(day: date, today: date) -> bool:
    """Whether `day` has come (or is within the clock skew of today)."""
    return _days(day, today) >= -CLOCK_SKEW_DAYS


def _in_window(day: date, window: int, today: date) -> bool:
    """Whether `day` lies in the last `window` days, the clock skew allowed."""
    return -CLOCK_SKEW_DAYS <= _days(day, today) <= window


def within(fact: Fact, days: int, today: date) -> bool:
    """Dated in the last `days` days (a day ahead allowed)."""
    return fact.when is not None and _in_window(fact.when, days, today)


def _lapsed(order: Fact, knowledge: Knowledge, today: date) -> bool:
    """An open order authored longer ago than the pending-order window (undated ones never lapse)."""
    return order.when is not None and _days(order.when, today) > knowledge.rule.suppressors.pending_order_days


def open_orders(facts: PatientFacts, concepts: list[str], knowledge: Knowledge, today: date) -> list[Fact]:
    """Orders of `concepts` still pending: authored inside the pending-order window, or undated."""
    return [f for c in concepts for f in facts.of(c) if not _lapsed(f, knowledge, today)]


def tests_in_progress(facts: PatientFacts, concepts: list[str], knowledge: Knowledge, today: date) -> list[Fact]:
    """Lab tests of `concepts` registered with no result yet, inside the pending-order window, and
    not overtaken by a result of any of those kinds dated on or after them."""
    latest = newest([f for c in concepts for f in facts.of(c)])
    return [
        f for f in facts.in_progress
        if f.concept in concepts and not _lapsed(f, knowledge, today)
        and (latest is None or latest.when is None or f.when is None or f.when > latest.when)
    ]


def lapsed_orders(facts: PatientFacts, concepts: list[str], knowledge: Knowledge, today: date) -> tuple[Fact, ...]:
    return tuple(f for c in concepts for f in facts.of(c) if _lapsed(f, knowledge, today))


def _ended(course: Fact, today: date) -> date | None:
    """When a past course ended: its recorded end, else (unknown) its start. An end still to come
    on a completed course is a validity period's, not when it ended: the start is used then (an end
    tomorrow is today's somewhere: a day ahead is allowed, as for every date read)."""
    return course.until if course.until is not None and _come(course.until, today) else course.when


def _as_given(course: Fact, today: date) -> Fact:
    """A course as the card names it: an end still to come is no end ("ended" next month would mislead)."""
    return replace(course, until=None) if course.until is not None and not _come(course.until, today) else course


def begun(fact: Fact, today: date) -> bool:
    """Whether a medicine's dosing has begun: an order whose start is still to come (a day ahead
    allowed, as EHR and service clocks differ by time zone) is neither use nor replacement yet."""
    return fact.starts is None or _come(fact.starts, today)


def in_use(fact: Fact, today: date) -> bool:
    """An active record of a medicine, begun and not past its recorded end: an "active" record whose
    end has passed (an order or statement nobody closed) ended then."""
    return fact.active and begun(fact, today) and (fact.until is None or fact.until >= today)


def on_b12_therapy(facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """B12 replacement active now (and not past its recorded end), or given within the administration
    window: administered, or a course that ended (or began, with no end recorded) inside it. A course
    still to start is not replacement under way: a baseline level is what it needs."""
    sup = knowledge.rule.suppressors
    window = sup.therapy_administration_days
    given = [f for concept in sup.therapy_concepts for f in facts.of(concept) if begun(f, today)]
    current = [f for f in given if in_use(f, today)]
    if current or any((ended := _ended(f, today)) is not None and _in_window(ended, window, today) for f in given):
        return True
    return on_maintenance(given, knowledge, today)


DOSE_RECORDS = ("MedicationAdministration", "Procedure")  # a dose given: administered, or billed as an injection


def on_maintenance(given: list[Fact], knowledge: Knowledge, today: date) -> bool:
    """An established series of B12 injections (pernicious anaemia maintenance, every 2-3 months):
    a patient a little overdue for the next dose is still on replacement, not one to re-test."""
    sup = knowledge.rule.suppressors
    doses = sorted((f.when for f in given if f.resource_type in DOSE_RECORDS and f.when is not None
                    and _in_window(f.when, sup.maintenance_window_days, today)), reverse=True)
    return (len(doses) >= sup.maintenance_doses and _days(doses[0], today) <= sup.maintenance_latest_days
            and _days(doses[-1], doses[0]) >= sup.maintenance_min_span_days)  # a series, not one stay's doses


def treated_since(facts: PatientFacts, knowledge: Knowledge, day: date, today: date) -> tuple[Fact, ...]:
    """B12 replacement given on or after `day` (administered, or a course begun or ended since),
    newest first: a low result it followed is no longer untreated."""
    given = [_as_given(f, today) for c in knowledge.rule.suppressors.therapy_concepts for f in facts.of(c)
             if begun(f, today) and (ended := _ended(f, today)) is not None and ended >= day]
    return tuple(sorted(given, key=lambda f: _ended(f, today) or date.min, reverse=True))


@dataclass(frozen=True)
class Course:
    """Current use of a medicine: the records that show it, when the use began (None: unknown), and
    when it ended if it has (a long course still inside the grace window)."""

    facts: tuple[Fact, ...]
    start: date | None
    ended: date | None = None

    def lasted(self, minimum_days: int | None, today: date) -> bool:
        """Whether the use lasted `minimum_days` up to today or its end (an unknown start counts)."""
        return self.start is None or minimum_days is None or _days(self.start, self.ended or today) >= minimum_days


def current_course(facts: PatientFacts, concept: str, knowledge: Knowledge, today: date, grace: bool = False) -> Course | None:
    """Current use of a medicine: its records in use now; or, with `grace` (long-term use), when none
    is, the courses that ended at most currentUseGraceDays ago (the renewal not yet written, the B12
    stores it depleted not refilled). None when it is not in use."""
    records = facts.of(concept)
    using = [f for f in records if in_use(f, today)]
    ended = None
    if not using and grace:
        window = knowledge.rule.record_status.current_use_grace_days
        recent = [(end, f) for f in records if begun(f, today) and (end := _ended(f, today)) is not None
                  and _in_window(end, window, today)]
        if recent:
            ended = max(end for end, _ in recent)
            using = [f for _, f in recent]
    if not using:
        return None
    return Course(tuple(using), course_start(using, facts.courses(concept), knowledge, today), ended)


def course_start(current: list[Fact], found: list[Fact], knowledge: Knowledge, today: date) -> date | None:
    """When use of a medicine began: the earliest start of its `current` records, carried back through
    the other courses in `found` that each ended at most renewalGapDays before the next began
    (renewals); None when unknown (an undated current record)."""
    if not current or any(f.when is None for f in current):
        return None
    start = min(f.when for f in current if f.when is not None)
    status = knowledge.rule.record_status
    chosen = {id(f) for f in current}
    past = sorted((f for f in found if id(f) not in chosen and begun(f, today) and f.when is not None
                   and f.resource_type in ("MedicationRequest", "MedicationStatement")),
                  key=lambda f: f.when or date.min, reverse=True)
    for course in past:
        if course.when is None or course.when >= start:
            continue
        ended = course.until if course.until is not None and course.until <= today else None
        gap = _days(ended, start) <= status.renewal_gap_days if ended else _days(course.when, start) <= status.renewal_start_gap_days
        if gap:
            start = course.when
    return start


def dose_raised(course: Course, found: list[Fact], knowledge: Knowledge, concept: str, today: date) -> date | None:
    """When the dose of a medicine in use was last raised: the start of a current record that names
    it at a higher strength than the latest earlier course of it (a dose change stops the old order
    and starts a new one); None when no name states a strength to compare."""
    doses = knowledge.strengths.doses.get(concept)
    if doses is None:
        return None
    chosen = {id(f) for f in course.facts}
    earlier = [f for f in found if id(f) not in chosen and begun(f, today) and f.when is not None]
    raised = []
    for current in course.facts:
        if current.when is None:
            continue
        before = newest([f for f in earlier if f.when is not None and f.when < current.when])
        now, then = doses.stated([current.text]), doses.stated([before.text]) if before is not None else {}
        if any(name in then and mg > then[name] for name, mg in now.items()):
            raised.append(current.when)
    return max(raised, default=None)


def _recent(fact: Fact, window: int, today: date) -> bool:
    """An illness or injury inside the window: one that has ended by its end (over before the window,
    however recently it was entered), else by its start."""
    if fact.until is not None and _come(fact.until, today):
        return _days(fact.until, today) <= window
    return within(fact, window, today)


def _current(fact: Fact, lookback: int, today: date) -> bool:
    """Active, or dated inside the look-back; a visit's diagnosis also by its visit (recordedDate):
    aches since the spring, diagnosed last week, were present last week."""
    return fact.active or within(fact, lookback, today) or (
        fact.visit and fact.recorded is not None and _in_window(fact.recorded, lookback, today))


def newest(facts: list[Fact]) -> Fact | None:
    """The newest dated fact, if any."""
    dated = [f for f in facts if f.when is not None]
    return max(dated, key=lambda f: f.when or date.min) if dated else None


def age_in_years(birth: date | None, today: date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def crosses(fact: Fact, comparator: str, threshold: float) -> bool:
    """Whether a result is above (">") or below ("<") a threshold. A censored result (<0.5, >100)
    crosses only when every value it allows does; an unknown comparator never does."""
    value, censored = fact.value, fact.comparator or ""
    if value is None:
        return False
    if comparator == ">":
        return {"": value > threshold, ">=": value > threshold, ">": value >= threshold}.get(censored, False)
    return {"": value < threshold, "<=": value < threshold, "<": value <= threshold}.get(censored, False)


def stays_within(fact: Fact, comparator: str, threshold: float) -> bool:
    """Whether every value a result allows fails to cross the threshold (the negation of `crosses`
    only for uncensored values: <0.5 neither crosses nor stays within 0.45)."""
    value, censored = fact.value, fact.comparator or ""
    if value is None:
        return False
    if comparator == ">":
        return censored in ("", "<", "<=") and value <= threshold
    return censored in ("", ">", ">=") and value >= threshold


def low_flag_believed(fact: Fact, bands: ResultBands) -> bool:
    """Whether a result flagged low by the lab reads as low: cut-offs are assay-dependent, so the
    flag decides over this rule's, but not past flagBelievedUpTo (a B12 of 900 pg/mL flagged low is
    a flag sent with the wrong result or unit, no lab's lower limit), nor beside a value no lab reports.
    A value sent with no unit is above it only when it is in every unit it may be in."""
    if fact.implausible:  # a value no lab reports (a unit mistyped): its flag may belong to another value
        return False
    if not fact.flagged_low or bands.flag_believed_up_to is None:
        return fact.flagged_low
    values = [fact.value] if fact.value is not None else list(fact.unitless_values)
    return not values or not all(crosses(replace(fact, value=v), ">", bands.flag_believed_up_to) for v in values)


def b12_band(fact: Fact, bands: ResultBands) -> Band:
    """A B12 result against its NICE bands. The lab's low flag reads as deficient (low_flag_believed),
    else the value is read; a censored value that spans bands is indeterminate. A value
    sent with no unit has the band every unit it may be in agrees on, else none (150: deficient in
    pg/mL, indeterminate in pmol/L)."""
    if low_flag_believed(fact, bands):
        return "deficient"
    if fact.value is None:
        agreed = {b12_band(replace(fact, value=v, unitless_values=()), bands) for v in fact.unitless_values}
        return agreed.pop() if len(agreed) == 1 else "unknown"
    if crosses(fact, "<", bands.deficient_below):
        return "deficient"
    if crosses(fact, ">", bands.normal_above):
        return "normal"
    return "indeterminate"


def _latest_result(facts: PatientFacts, lab: str, lookback: int, today: date) -> Fact | None:
    return newest([f for f in facts.of(lab) if f.value is not None and within(f, lookback, today)])


def _crossing(latest: Fact | None, comparator: str, threshold: float, ev_id: str, label: str) -> Evidence | None:
    if latest is None or not crosses(latest, comparator, threshold):
        return None
    return Evidence(ev_id, label, (latest,), comparator=comparator, threshold=threshold)


def _threshold(sign: LabThreshold | Confounder, group: str) -> float:
    """The threshold for the patient's group: pregnant, else sex (unknown when not recorded)."""
    if sign.value is not None:
        return sign.value
    by_group: dict[str, float] = {str(k): v for k, v in (sign.value_by_sex or {}).items()}
    return by_group.get(group, by_group["unknown"])  # "unknown" is required at load


def lab_limit_believed(limit: LabUpperLimit | None, result: Fact) -> float | None:
    """The lab's own upper limit sent with a result, when the rule reads one (labUpperLimit) and it is
    plausible for the test: one outside (a typo, a range in another unit sent unlabelled) is not
    believed, so a limit far too low never makes a normal result raised."""
    if limit is None or result.upper_limit is None:
        return None
    return result.upper_limit if limit.plausible[0] <= result.upper_limit <= limit.plausible[1] else None


def _threshold_in_force(result: Fact, ruled: LabThreshold | Confounder, group: str) -> float:
    """What a result is read against: its lab's own upper limit (times labUpperLimit.times) when
    believed, as the clinician reads it by the range printed beside it; else the rule's threshold."""
    limit = ruled.lab_upper_limit
    own = lab_limit_believed(limit, result)
    return limit.times * own if limit is not None and own is not None else _threshold(ruled, group)


def _lab_crossing(latest: Fact | None, ruled: LabThreshold | Confounder, group: str) -> Evidence | None:
    """A lab sign or lab confounder that holds: its result crosses the lab's own upper limit when
    one is believed (and then only it: a limit above the rule's threshold clears a value between
    them), else the rule's threshold, or, below it, is flagged high by the lab (labUpperLimit.flagCodes),
    which had a range of its own to read it by. The evidence says which, for the card to show. Only
    a value read is judged: a flag beside a value no lab reports, or in a unit not known, may be another's."""
    if latest is None or latest.value is None:
        return None
    limit = ruled.lab_upper_limit
    comparator = ruled.comparator or ">"
    ev = _crossing(latest, comparator, _threshold_in_force(latest, ruled, group), ruled.id, ruled.label)
    own = lab_limit_believed(limit, latest)
    if limit is not None and own is not None:
        return replace(ev, lab_limit=own, limit_times=limit.times) if ev else None
    if ev is None and limit is not None and not latest.flags.isdisjoint(limit.flag_code_set):
        return Evidence(ruled.id, ruled.label, (latest,), flagged_high=True)
    return ev


def _pregnancies(facts: PatientFacts, knowledge: Knowledge, today: date) -> list[Fact]:
    """Current pregnancies: a pregnancy Condition or a "Pregnant" status Observation dated in the window
    (no pregnancy outlasts it, whatever status an EHR left on it; an active Condition with no date still
    counts), unless a "Not pregnant" status or the recorded end of a resolved pregnancy Condition (a
    birth, a loss), in the window, is newer than it (_known: the latest wins; on the same day the
    pregnancy stands). An undated Condition is not shown to be newer than a dated "Not pregnant": it
    ends too (a resolved Condition's end leaves it: it may be the next pregnancy, recorded undated)."""
    rule = knowledge.rule.pregnancy
    if not _may_be_pregnant(facts, knowledge, today):
        return []
    evidence = [f for c in (rule.concept, *rule.pregnant_status_concepts) for f in facts.of(c)
                if within(f, rule.lookback_days, today) or (f.active and f.when is None)]
    status = newest([f for c in rule.not_pregnant_status_concepts for f in facts.of(c)
                     if within(f, rule.lookback_days, today)])
    resolved = [d for d in _resolved_ends(facts, knowledge) if _in_window(d, rule.lookback_days, today)]
    ends = [d for d in (status.when if status else None, *resolved) if d is not None]
    if not ends:
        return evidence
    latest = max(ends)
    return [f for f in evidence if ((known := _known(f)) is not None and known >= latest)
            or (known is None and status is None)]


def _resolved_ends(facts: PatientFacts, knowledge: Knowledge) -> list[date]:
    """The recorded ends (abatement) of resolved pregnancy Conditions: a pregnancy known to have ended
    then, which ends a "Pregnant" status answered before it as a "Not pregnant" would."""
    return [p.until for p in facts.ended.get(knowledge.rule.pregnancy.concept, []) if p.until is not None]


def _known(pregnancy: Fact) -> date | None:
    """When a pregnancy was on record: its date, or its Condition's recordedDate when that is later.
    A pregnancy Condition is often dated from the last menstrual period and entered weeks later, when
    found: a "Not pregnant" answered in between is older evidence than it, and ends nothing."""
    dates = [d for d in (pregnancy.when, pregnancy.recorded) if d is not None]
    return max(dates) if dates else None


def _may_be_pregnant(facts: PatientFacts, knowledge: Knowledge, day: date) -> bool:
    """Not past pregnancy.maxAgeYears on that day (a record of pregnancy at 80 is an error in the
    chart); with no birth date, as the record says."""
    limit = knowledge.rule.pregnancy.max_age_years
    age = age_in_years(facts.birth_date, day)
    return limit is None or age is None or age <= limit


def _ended_pregnancies(facts: PatientFacts, knowledge: Knowledge) -> list[tuple[date, date]]:
    """Pregnancies since ended, as (from, to): a resolved pregnancy Condition, its onset to its recorded
    end; a pregnancy (Condition or "Pregnant" status) followed by a "Not pregnant" status or a resolved
    pregnancy Condition's end newer than it (_known), its date to that end, and never longer than the
    pregnancy window (no pregnancy lasts longer)."""
    rule = knowledge.rule.pregnancy
    spans = [(p.when, p.until) for p in facts.ended.get(rule.concept, []) if p.when is not None and p.until is not None]
    ends = sorted([*(f.when for c in rule.not_pregnant_status_concepts for f in facts.of(c) if f.when is not None),
                   *_resolved_ends(facts, knowledge)])
    for p in (f for c in (rule.concept, *rule.pregnant_status_concepts) for f in facts.of(c)):
        start, known = p.when, _known(p)
        end = next((d for d in ends if known is not None and d > known), None)
        if start is not None and end is not None:
            spans.append((start, min(end, start + timedelta(days=rule.lookback_days))))
    return spans


def _taken_in_pregnancy(result: Fact, facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """Whether a result was taken during a current pregnancy: on or after its date (an undated one:
    inside the pregnancy window). A low result from before the pregnancy is what it always was."""
    window = knowledge.rule.pregnancy.lookback_days
    return result.when is not None and within(result, window, today) and any(
        p.when is None or result.when >= p.when for p in _pregnancies(facts, knowledge, today))


def _group(facts: PatientFacts, knowledge: Knowledge, today: date) -> str:
    return "pregnant" if _pregnancies(facts, knowledge, today) else facts.sex


def _group_when_taken(result: Fact | None, group: str, facts: PatientFacts, knowledge: Knowledge) -> str:
    """The patient's group when a result was taken: pregnant too when it fell inside a pregnancy that
    has since ended (_ended_pregnancies), whose thresholds (Hb 11.0) it must be read by."""
    if group == "pregnant" or result is None or result.when is None:
        return group
    taken = result.when
    inside = _may_be_pregnant(facts, knowledge, taken) and any(
        start <= taken <= end for start, end in _ended_pregnancies(facts, knowledge))
    return "pregnant" if inside else group


def _indeterminate_sign(last: Fact, knowledge: Knowledge) -> Evidence:
    """An indeterminate result; one censored across the deficiency cut-off ('<148 pmol/L') may be low too."""
    cut_off = knowledge.rule.b12_result.bands[last.concept].deficient_below
    spans = last.comparator in ("<", "<=") and not crosses(last, "<", cut_off)
    phrase = knowledge.wording.phrases["indeterminateOrLowB12" if spans else "indeterminateB12"]
    return Evidence("indeterminate-b12", phrase.format(test=result_test_label(last, knowledge)), (last,))


def result_test_label(fact: Fact, knowledge: Knowledge) -> str:
    """The test a result is of, as a label reads it ("serum vitamin B12", "active B12 (holotranscobalamin)")."""
    label = knowledge.concepts[fact.concept].label
    return label[:1].lower() + label[1:]


def follow_up_from(b12: Fact, knowledge: Knowledge) -> date | None:
    """From when a methylmalonic acid answers the question a B12 result raises: taken after it, or
    up to the re-test window (90 days) before it, as results weeks apart describe the same state;
    counted from the B12, so the answer does not change as the days pass. None for an undated B12."""
    window = knowledge.rule.suppressors.recent_result_days
    return None if b12.when is None else b12.when - timedelta(days=window)


def _follow_up_since(
    facts: PatientFacts, knowledge: Knowledge, counted_from: date | None, today: date
) -> tuple[bool, Evidence] | None:
    """The latest follow-up result (methylmalonic acid) taken on or after `counted_from` (the B12 it
    answers' follow_up_from; any, with None) and current (inside the untreated-low look-back, as a low
    B12 must be): (whether it crosses its lab sign's threshold, the evidence), or None when there is none."""
    sign = knowledge.rule.follow_up_sign
    current = knowledge.rule.untreated_low.lookback_days
    since = [f for f in facts.of(sign.lab) if f.value is not None and f.when is not None
             and (counted_from is None or f.when >= counted_from) and within(f, current, today)]
    latest = newest(since)
    if latest is None or latest.value is None:
        return None
    return _answer(latest, sign, _group(facts, knowledge, today))  # censored across the threshold: None


def _answer(result: Fact, sign: LabThreshold, group: str) -> tuple[bool, Evidence] | None:
    """Whether a result clearly crosses its sign's threshold (True; the lab's own limit or high flag
    decides as for the sign, _lab_crossing), clearly does not (False), or, censored across it, says
    neither (None); with the evidence the card shows."""
    crossed = _lab_crossing(result, sign, group)
    if crossed is not None:
        return True, crossed
    threshold = _threshold_in_force(result, sign, group)
    if stays_within(result, sign.comparator, threshold):
        return False, Evidence(sign.id, sign.label, (result,), comparator=sign.comparator, threshold=threshold)
    return None


def orders_active_b12(facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """In a current pregnancy the first B12 test is active B12: total B12 falls in pregnancy (NG239)."""
    return knowledge.rule.pregnancy.order_active_b12 and _group(facts, knowledge, today) == "pregnant"


def low_in_current_pregnancy(result: Fact, facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """A low total B12 taken in the current pregnancy, when total B12 falls: no proof of deficiency,
    and no reason a test of active B12 would be redundant (NG239)."""
    preg = knowledge.rule.pregnancy
    return (result.concept in preg.low_unreliable_concepts
            and b12_band(result, knowledge.rule.b12_result.bands[result.concept]) == "deficient"
            and orders_active_b12(facts, knowledge, today) and _taken_in_pregnancy(result, facts, knowledge, today))


def out_of_population(facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """Under the rule's age (NG239 covers over-16s) or deceased (a chart reviewed after death)."""
    population = knowledge.rule.population
    age = age_in_years(facts.birth_date, today)
    return (age is not None and age < population.min_age_years) or (facts.deceased and population.exclude_deceased)


def _implausible_results(facts: PatientFacts, knowledge: Knowledge, today: date) -> tuple[Fact, ...]:
    """The latest result of each lab a sign or a confounder reads, inside its look-back, when it holds
    a value no lab reports: read as no value, it leaves that sign unread (a B12 is shown on its own line)."""
    windows = knowledge.rule.lab_lookbacks
    latest = ((lab, newest([f for f in facts.of(lab) if f.resource_type == "Observation"])) for lab in windows)
    return tuple(f for lab, f in latest if f is not None and f.implausible and within(f, windows[lab], today))


def assess(facts: PatientFacts, knowledge: Knowledge, today: date) -> Assessment:
    """Decide whether the B12 card fires, which variant, and how urgently."""
    rule = knowledge.rule
    if out_of_population(facts, knowledge, today):
        return Assessment("out-of-population")
    age = age_in_years(facts.birth_date, today)

    trigger = tuple(
        sorted(
            (f for c in rule.trigger.concepts for f in facts.of(c) if _current(f, rule.trigger.lookback_days, today)),
            key=lambda f: f.when or date.min,
            reverse=True,
        )
    )
    if not trigger:
        return Assessment("no-trigger")

    sup = rule.suppressors
    if on_b12_therapy(facts, knowledge, today):
        return Assessment("suppressed:on-b12-therapy", trigger=trigger)
    if open_orders(facts, sup.pending_order_concepts, knowledge, today):
        return Assessment("suppressed:pending-order", trigger=trigger)
    b12 = rule.b12_result
    if tests_in_progress(facts, b12.recent_result_concepts, knowledge, today):
        return Assessment("suppressed:result-pending", trigger=trigger)

    last = newest([f for c in b12.result_concepts for f in facts.of(c)])
    band: Band | None = b12_band(last, b12.bands[last.concept]) if last is not None else None
    # total B12 falls in pregnancy: a low one taken then proves no deficiency. An active B12 taken in
    # the same pregnancy is the result that tells; without one, the card asks for it.
    preg = rule.pregnancy
    low_in_pregnancy = last is not None and low_in_current_pregnancy(last, facts, knowledge, today)
    if low_in_pregnancy:
        reliable = newest([f for c in b12.result_concepts if c not in preg.low_unreliable_concepts for f in facts.of(c)
                            if _taken_in_pregnancy(f, facts, knowledge, today)])
        if reliable is not None:
            last, band, low_in_pregnancy = reliable, b12_band(reliable, b12.bands[reliable.concept]), False

    risks = _risk_factors(facts, knowledge, today, age)
    first = min((f.when for f in trigger if f.when is not None), default=None)
    confounders = _confounders(facts, knowledge, today, trigger[0], first)  # all that hold: urgency reads them
    low = rule.untreated_low
    treated = treated_since(facts, knowledge, last.when, today) if last is not None and last.when is not None else ()
    # what every outcome from here on carries; each return below says only what it decides
    base = Assessment(
        "undecided", trigger=trigger, risk_factors=risks, confounders=listed_once(confounders, knowledge), last_b12=last,
        b12_band=band, recent_result_days=sup.recent_result_days,
        unchecked=frozenset(facts.unchecked | ({"age"} if age is None else set())), unreadable=facts.unreadable,
        lapsed_orders=lapsed_orders(facts, sup.pending_order_concepts, knowledge, today),
        implausible=_implausible_results(facts, knowledge, today),
        short_courses=_short_courses(facts, knowledge, today),
        past_therapy=treated,
        # named on the card: "no current replacement" should not read as "never treated" to a
        # clinician whose patient's injections lapsed
        earlier_therapy=next(iter(treated_since(facts, knowledge, date.min, today)), None) if not treated else None,
        held_therapy=newest(facts.held_therapy) if not treated else None,
        low_in_pregnancy=low_in_pregnancy,
        undated_b12=next((f for c in b12.result_concepts for f in facts.of(c) if f.when is None), None),
        # named on the card, so a clinician who knows a sample was sent is not told nothing is on record
        no_result_b12=newest([f for f in facts.no_result if f.concept in b12.recent_result_concepts
                              and within(f, sup.recent_result_days, today)]),
    )
    if band == "deficient" and last is not None and low.enabled and within(last, low.lookback_days, today) and not low_in_pregnancy:
        if treated:
            return _lapsed_treatment(facts, knowledge, today, (), base)
        # the signs decide how urgent treatment is (neurological features: do not delay), so show them
        return replace(base, outcome="card", variant="untreated-low", indicator=Indicator.CRITICAL,
                       signs=_signs(facts, knowledge, today))
    if band == "indeterminate" and last is not None and last.when is not None:
        answer = _follow_up_since(facts, knowledge, follow_up_from(last, knowledge), today)
        if answer is not None:  # the follow-up NG239 advises was done: it answers the question
            raised, evidence = answer
            if not raised:
                return replace(base, outcome="suppressed:normal-follow-up")
        if answer is not None and treated:
            return _lapsed_treatment(facts, knowledge, today, (_indeterminate_sign(last, knowledge), answer[1]), base)
        if answer is not None:
            signs = (*_signs(facts, knowledge, today), _indeterminate_sign(last, knowledge))
            if evidence.id not in {e.id for e in signs}:
                signs = (*signs, evidence)
            indicator, listed = _follow_up_urgency(confounders, signs, facts, knowledge, evidence.facts[0], today)
            return replace(base, outcome="card", variant="untreated-mma", indicator=indicator, signs=signs, confounders=listed)
    # MMA is never suggested twice: once one answered the indeterminate B12 (follow_up_from), re-test B12
    # an indeterminate B12 over a year old (the untreated-low look-back) is evidence, not a current value:
    # as an old low one, it asks for a new B12, not for the MMA that would settle a current one
    mma_due = (band == "indeterminate" and last is not None and within(last, low.lookback_days, today)
               and not follow_up_answered(facts, knowledge, last, today))
    # BSH: a normal B12 does not rule deficiency out when the picture is strong (falsely normal results
    # with intrinsic-factor antibodies): neurological signs or macrocytic anaemia ask for MMA instead
    strong_picture = (band == "normal" and last is not None and b12.discordant_normal_follow_up
                      and within(last, sup.normal_result_days, today)  # older: no longer silences, test again
                      and _critical_feature(_signs(facts, knowledge, today), knowledge) is not None)
    # nitrous oxide: a normal serum B12 says little, so MMA is asked for whatever B12 shows
    unreliable = {rf.id for rf in rule.risk_factors if rf.serum_b12_unreliable} & {e.id for e in risks}
    if (strong_picture or unreliable) and not mma_due:
        # the MMA asked for was taken (around that B12; with nitrous oxide, whenever B12 was) and is
        # raised: it answers the question, as after an indeterminate B12, so treatment is the next step
        after = follow_up_from(last, knowledge) if strong_picture and not unreliable and last is not None else None
        answer = _follow_up_since(facts, knowledge, after, today)
        if answer is not None and answer[0]:
            return _raised_follow_up(facts, knowledge, today, answer[1], base, confounders, after_nitrous_oxide=bool(unreliable))
    discordant = strong_picture and last is not None and not follow_up_answered(facts, knowledge, last, today)
    follow_up_lab = rule.follow_up_sign.lab
    functional_due = (bool(unreliable) or discordant) and not mma_due
    if functional_due and any(within(f, sup.recent_result_days, today) for f in facts.of(follow_up_lab)):
        return replace(base, outcome="suppressed:recent-result")
    recent = [f for c in b12.recent_result_concepts for f in facts.of(c) if within(f, sup.recent_result_days, today)]
    # a recent result makes a repeat B12 redundant, not the MMA NG239 advises after an indeterminate one
    if recent and not mma_due and not functional_due and not low_in_pregnancy:
        return replace(base, outcome="suppressed:recent-result")
    if (mma_due or functional_due) and tests_in_progress(facts, [follow_up_lab], knowledge, today):
        return replace(base, outcome="suppressed:result-pending")
    if band == "normal" and last is not None and within(last, sup.normal_result_days, today) and not functional_due:
        if last.when is None or not any(e.started_after(last.when) for e in risks):
            return replace(base, outcome="suppressed:recent-normal-result")
        base = replace(base, new_risk_since_normal=True)
    signs = _signs(facts, knowledge, today)
    if band == "indeterminate" and last is not None:
        signs += (_indeterminate_sign(last, knowledge),)
    elif band == "deficient" and last is not None:
        words = knowledge.wording.result
        sign_id, label = (("low-b12-in-pregnancy", words.low_in_pregnancy) if low_in_pregnancy
                          else ("earlier-treated-low-b12", words.treated_low.format(test=result_test_label(last, knowledge))) if treated
                          else ("earlier-low-b12", words.earlier_low.format(days=low.lookback_days, test=result_test_label(last, knowledge))))
        signs += (Evidence(sign_id, label, (last,)),)
    if not signs:
        return replace(base, outcome="no-sign")
    diagnosis = deficiency_on_record(facts, knowledge)
    if (low.diagnosis_outdated_by_normal and diagnosis is not None and band == "normal" and last is not None
            and last.when is not None and diagnosis.when is not None and last.when > diagnosis.when
            and not treated_since(facts, knowledge, diagnosis.when, today)):
        # measured normal since, untreated: history, not a deficiency to treat now (a normal level on
        # replacement says the treatment works, and the review stands once it lapses)
        diagnosis = None
    # a deficiency already diagnosed, with no replacement current: a test answers nothing the diagnosis
    # has not (pernicious anaemia is treated for life); "none current" is a claim only when all was sent
    if low.diagnosis_review and diagnosis is not None and "therapy" not in facts.unchecked:
        critical = _critical_feature(signs, knowledge)
        # the diagnosis has its own section: not listed again as a risk factor
        if diagnosis.resource_id is not None:
            record = (diagnosis.resource_type, diagnosis.resource_id)
            base = replace(base, risk_factors=tuple(e for e in risks if {(f.resource_type, f.resource_id) for f in e.facts} != {record}))
        return replace(base, outcome="card", variant="diagnosed-deficiency",
                       indicator=Indicator.CRITICAL if critical else Indicator.WARNING,
                       signs=signs, critical_feature=critical, diagnosis=diagnosis)

    critical = _critical_feature(signs, knowledge)
    untreated_old_low = {s.id for s in signs} & set(rule.indicator.critical_without_risk_factor)
    # "never treated" is a claim only when the treatment records were all sent
    if not (risks and critical) and untreated_old_low and "therapy" not in facts.unchecked:
        critical = "untreated-low"  # a deficiency found and never treated (clinical reference: critical)
        indicator = Indicator.CRITICAL
    elif risks:
        indicator = Indicator.CRITICAL if critical else Indicator.WARNING
    else:
        indicator = Indicator.INFO
    downgrading = {c.id for c in rule.confounders if c.downgrade}
    if indicator == Indicator.WARNING and any(c.id in downgrading for c in confounders):
        indicator = Indicator.INFO
    variant: PatternVariant = ("test-mma" if mma_due else "test-mma-after-nitrous-oxide" if functional_due and unreliable
                               else "test-mma-after-normal-b12" if functional_due else "test-b12")
    if variant == "test-b12" and orders_active_b12(facts, knowledge, today):
        variant = "test-active-b12"
    return replace(base, outcome="card", variant=variant, indicator=indicator, signs=signs,
                   critical_feature=critical if indicator == Indicator.CRITICAL else None)


def _raised_follow_up(
    facts: PatientFacts, knowledge: Knowledge, today: date, mma: Evidence, base: Assessment,
    held: tuple[Evidence, ...], after_nitrous_oxide: bool,
) -> Assessment:
    """A raised MMA where serum B12 misleads (nitrous oxide; a normal B12 beside a strong picture):
    treatment review, critical as the indeterminate-B12 path is; lapsed treatment when B12 was given
    after it and has stopped."""
    taken = mma.facts[0].when
    if taken is not None and treated_since(facts, knowledge, taken, today):
        return _lapsed_treatment(facts, knowledge, today, (mma,), base)
    signs = _signs(facts, knowledge, today)
    if mma.id not in {e.id for e in signs}:
        signs = (*signs, mma)
    variant: PatternVariant = "untreated-raised-mma-after-nitrous-oxide" if after_nitrous_oxide else "untreated-raised-mma"
    indicator, listed = _follow_up_urgency(held, signs, facts, knowledge, mma.facts[0], today)
    return replace(base, outcome="card", variant=variant, indicator=indicator, signs=signs, confounders=listed)


def _follow_up_urgency(
    held: tuple[Evidence, ...], signs: tuple[Evidence, ...], facts: PatientFacts, knowledge: Knowledge, mma: Fact, today: date,
) -> tuple[Indicator, tuple[Evidence, ...]]:
    """A treatment review resting on a raised MMA: critical, as a low B12 is, unless a confounder
    beside which a raised MMA says less held when it was taken (kidney failure raises it whatever the
    B12) and no neurological sign or macrocytic anaemia asks for haste by itself. `held`: every
    confounder that holds, before any is superseded on the card. A lab confounder is read as it stood
    then, not now (kidney injury since does not explain an earlier MMA; one that has recovered since
    did), and the result that decided is listed in place of today's. Returns the urgency and the
    confounders the card lists."""
    doubts: list[Evidence] = []
    group = _group(facts, knowledge, today)
    for cf in knowledge.rule.confounders:
        if cf.id not in knowledge.rule.b12_result.follow_up_less_specific_with:
            continue
        if cf.kind != "lab" or mma.when is None:
            doubts += [c for c in held if c.id == cf.id]
            continue
        then = facts.result_near(cf.lab or "", mma.when, cf.lookback_days or 0)
        ev = _lab_confounder(cf, then, _group_when_taken(then, group, facts, knowledge))
        if ev is not None:
            doubts.append(ev)
    if _critical_feature(signs, knowledge) is not None or not doubts:
        return Indicator.CRITICAL, listed_once(held, knowledge)
    decided = {d.id: d for d in doubts}
    merged = [decided.pop(c.id, c) for c in held] + list(decided.values())
    return Indicator.WARNING, listed_once(merged, knowledge)


def deficiency_on_record(facts: PatientFacts, knowledge: Knowledge) -> Fact | None:
    """The latest diagnosis of B12 deficiency (pernicious anaemia, a B12-specific deficiency) on
    record, current and not only suspected (rule.json orders.establishedDeficiencyConcepts)."""
    orders = knowledge.rule.orders
    found = [f for c in orders.established_deficiency_concepts for f in facts.of(c)
             if f.verification not in knowledge.rule.record_status.condition_verification_suspected]
    return newest(found) or next(iter(found), None)  # of any date: an undated one too


def _lapsed_treatment(
    facts: PatientFacts, knowledge: Knowledge, today: date, evidence: tuple[Evidence, ...], base: Assessment
) -> Assessment:
    """Deficiency found, treated since, nothing current: a treatment review, critical with a
    neurological or cognitive sign or macrocytic anaemia (BSH: do not delay)."""
    signs = _signs(facts, knowledge, today)
    signs += tuple(e for e in evidence if e.id not in {s.id for s in signs})
    critical = _critical_feature(signs, knowledge)
    indicator = Indicator.CRITICAL if critical else Indicator.WARNING
    return replace(base, outcome="card", variant="lapsed-treatment", indicator=indicator, signs=signs, critical_feature=critical)


def _critical_feature(signs: tuple[Evidence, ...], knowledge: Knowledge) -> CriticalFeature | None:
    """A neurological or cognitive sign, and/or macrocytic anaemia (a recorded diagnosis, or every lab
    sign of it; a diagnosis stands for its lab sign (standsFor) unless that lab was measured since it)."""
    ind = knowledge.rule.indicator
    ids = {s.id for s in signs}
    for s in signs:
        target = ind.stands_for.get(s.id)
        if target is not None and s.measured_since is None:
            ids.add(target)
    neurological = bool(ids & set(ind.critical_neurological))
    anaemia = bool(ids & set(ind.critical_anaemia_diagnoses)) or set(ind.critical_lab_signs_all) <= ids
    if neurological and anaemia:
        return "both"
    return "neurological" if neurological else "macrocytic-anaemia" if anaemia else None


def _measured_since(facts: PatientFacts, knowledge: Knowledge, sign_id: str, evidence: Evidence) -> Fact | None:
    """The latest result of the lab behind a lab sign dated on or after the evidence standing in for it."""
    lab = knowledge.rule.lab_sign(sign_id).lab
    dated = [f.when for f in evidence.facts if f.when is not None]
    since = max(dated) if dated else None
    return newest([f for f in facts.of(lab) if f.value is not None and f.when is not None and (since is None or f.when >= since)])


def follow_up_answered(facts: PatientFacts, knowledge: Knowledge, b12: Fact, today: date) -> bool:
    """Whether the follow-up lab (MMA) answered a B12 result, however long ago: taken around it
    (follow_up_from), with a value that is clearly raised or clearly not (a censored one may be neither)."""
    sign = knowledge.rule.follow_up_sign
    group = _group(facts, knowledge, today)
    since = follow_up_from(b12, knowledge)
    return since is not None and any(
        f.when is not None and f.when >= since and _answer(f, sign, group) is not None for f in facts.of(sign.lab)
    )


def _signs(facts: PatientFacts, knowledge: Knowledge, today: date) -> tuple[Evidence, ...]:
    rule = knowledge.rule
    out: list[Evidence] = []
    group = _group(facts, knowledge, today)
    for concept in rule.symptoms.concepts:
        found = [f for f in facts.of(concept) if _current(f, rule.symptoms.lookback_days, today)]
        if found:
            found.sort(key=lambda f: f.when or date.min, reverse=True)
            ev = Evidence(concept, knowledge.concepts[concept].label, tuple(found))
            target = rule.indicator.stands_for.get(concept)
            if target is not None:
                ev = replace(ev, measured_since=_measured_since(facts, knowledge, target, ev))
            out.append(ev)
    for sign in rule.lab_signs:
        latest = _latest_result(facts, sign.lab, sign.lookback_days, today)
        lab_ev = _lab_crossing(latest, sign, _group_when_taken(latest, group, facts, knowledge))
        if lab_ev:
            out.append(lab_ev)
    # a dated diagnosis whose lab was measured since, inside that lab sign's look-back, and does not
    # cross (an anaemia, then a normal Hb) is disproved by it: no sign, not a line to discount
    present = {e.id for e in out}

    def disproved(e: Evidence) -> bool:
        target = rule.indicator.stands_for.get(e.id)
        return (e.measured_since is not None and target is not None and target not in present
                and all(f.when is not None for f in e.facts)
                and within(e.measured_since, rule.lab_sign(target).lookback_days, today))

    return tuple(e for e in out if not disproved(e))


def _risk_factors(facts: PatientFacts, knowledge: Knowledge, today: date, age: int | None) -> tuple[Evidence, ...]:
    out: list[Evidence] = []
    for rf in knowledge.rule.risk_factors:
        if rf.kind == "age":
            if age is not None and rf.min_age_years is not None and age >= rf.min_age_years:
                out.append(Evidence(rf.id, rf.label, (), knowledge.wording.phrases["age"].format(age=age)))
            continue
        found = facts.of(rf.concept or "")
        if rf.kind == "medication":
            # long-term use (a minimum duration) outlasts its last order by the grace window
            course = current_course(facts, rf.concept or "", knowledge, today, grace=rf.min_duration_days is not None)
            if course is not None and course.lasted(rf.min_duration_days, today):
                out.append(Evidence(rf.id, rf.label, course.facts, rf.advice, since=course.start, ended=course.ended))
            continue
        if rf.counts_resolved:
            found = [*found, *facts.ended.get(rf.concept or "", [])]
        suspected = knowledge.rule.record_status.condition_verification_suspected
        found = [f for f in found if f.verification not in suspected]  # a working diagnosis is no known risk
        if rf.kind == "condition":
            found = [f for f in found if _current(f, knowledge.rule.symptoms.lookback_days, today)]
        if found:
            out.append(Evidence(rf.id, rf.label, tuple(found), rf.advice))
    return tuple(out)


def _short_courses(facts: PatientFacts, knowledge: Knowledge, today: date) -> tuple[Evidence, ...]:
    """Risk-factor medicines taken now (not in a grace window after an end) that have not lasted their
    minDurationDays: no risk factor yet, and the card says so."""
    out: list[Evidence] = []
    for rf in knowledge.rule.risk_factors:
        if rf.kind != "medication" or rf.min_duration_days is None:
            continue
        course = current_course(facts, rf.concept or "", knowledge, today)
        if course is not None and course.ended is None and not course.lasted(rf.min_duration_days, today):
            note = knowledge.wording.phrases["notYetLongTerm"].format(days=rf.min_duration_days)
            out.append(Evidence(rf.id, rf.label, course.facts, note, since=course.start))
    return tuple(out)


def _confounders(
    facts: PatientFacts, knowledge: Knowledge, today: date, complaint: Fact, first_complaint: date | None
) -> tuple[Evidence, ...]:
    """What else may explain the aches, every one that holds (listed_once says which the card shows);
    `complaint` is the newest complaint, `first_complaint` the date of the earliest (aches recorded
    before an illness are not explained by it)."""
    out: list[Evidence] = []
    group = _group(facts, knowledge, today)
    labs: dict[str, Evidence] = {}
    for cf in knowledge.rule.confounders:
        if cf.kind == "lab":
            latest = _latest_result(facts, cf.lab or "", cf.lookback_days or 0, today)
            ev = _lab_confounder(cf, latest, _group_when_taken(latest, group, facts, knowledge))
            if ev:
                labs[cf.id] = ev
    listed_results = {id(f): ev.comparator for ev in labs.values() for f in ev.facts}  # and which way they crossed
    for cf in knowledge.rule.confounders:
        if cf.kind == "lab":
            if cf.id in labs:
                out.append(labs[cf.id])
            continue
        found = facts.of(cf.concept or "")
        course = None
        if cf.kind == "medication":  # in use now: a statin that ended explains no aches
            course = current_course(facts, cf.concept or "", knowledge, today)
            found = list(course.facts) if course is not None else []
        elif cf.kind == "condition":
            found = [f for f in found if _current(f, knowledge.rule.symptoms.lookback_days, today)]
        elif cf.kind == "pregnancy":
            found = _pregnancies(facts, knowledge, today)
        else:  # recent: an illness or injury that began, or ended, inside the window
            ended = facts.ended.get(cf.concept or "", [])
            found = [f for f in (*found, *ended) if _recent(f, cf.within_days or 0, today)]
            if cf.max_days_after_complaint is not None and first_complaint is not None:  # aches before it
                found = [f for f in found if f.when is None or _days(first_complaint, f.when) <= cf.max_days_after_complaint]
        if not found:
            continue
        raised = (dose_raised(course, facts.courses(cf.concept or ""), knowledge, cf.concept or "", today)
                  if course is not None and cf.recent_dose_raise else None)
        note, checked, pointer = cf.advice, None, ""
        if cf.checked_by is not None and (course is not None or cf.kind == "condition"):
            # a medicine is checked by a result since it began (or its dose was raised); a condition by any recent one
            checked = _checked_since(facts, cf.checked_by, (raised or course.start) if course is not None else None, today)
            if checked is not None and id(checked) in listed_results:  # listed below as a confounder: pointed to
                label = knowledge.concepts[checked.concept].label
                phrase = "checkedListedLow" if listed_results[id(checked)] == "<" else "checkedListed"
                note, checked = cf.checked_by.listed_advice, None
                pointer = " " + knowledge.wording.phrases[phrase].format(lab=label)
            elif checked is not None:
                note = cf.checked_by.advice
        if cf.recent_start_days is not None:
            # the earliest complaint on record: a statin begun after the aches did not start them
            anchor = first_complaint or complaint.when or today
            starts = [course.start] if course is not None else [f.when for f in found]
            recent = [d for d in starts if d is not None and 0 <= _days(d, anchor) <= cf.recent_start_days]
            verb = "started"
            if not recent and raised is not None:  # "starting or raising the dose"
                recent = [raised] if 0 <= _days(raised, anchor) <= cf.recent_start_days else []
                verb = "raised"
            if recent:
                days = _days(recent[0], anchor)  # never "Started 1 days" or "0 days before"
                key = f"{verb}SameDay" if days == 0 else f"{verb}DayBefore" if days == 1 else f"{verb}Before"
                note = f"{knowledge.wording.phrases[key].format(days=days)} {note}"
        out.append(Evidence(cf.id, cf.label, tuple(found), note + pointer, checked=checked))
    return tuple(out)


def _lab_confounder(cf: Confounder, latest: Fact | None, group: str) -> Evidence | None:
    """A lab confounder that holds (_lab_crossing: the lab's own upper limit, the typical threshold,
    or the lab's high flag), with its advice."""
    ev = _lab_crossing(latest, cf, group)
    return replace(ev, note=cf.advice) if ev else None


def listed_once(found: Iterable[Evidence], knowledge: Knowledge) -> tuple[Evidence, ...]:
    """Confounders as the card lists them: one superseded by another that holds is dropped (a higher
    tier of the same lab; the coded kidney disease beside its eGFR)."""
    found = tuple(found)
    holding = {e.id for e in found}
    superseded = {s for cf in knowledge.rule.confounders if cf.id in holding for s in cf.supersedes}
    return tuple(e for e in found if e.id not in superseded)


def _checked_since(facts: PatientFacts, check: ConfounderCheck, start: date | None, today: date) -> Fact | None:
    """The latest result of the checking lab inside its look-back and taken after the medicine's start
    when one is given (one from before it, or a baseline on its first day, says nothing of aches on it), or one being
    ordered now (a draft at order-select); a result the service cannot convert still counts."""
    return newest([f for f in facts.of(check.lab)
                   if (f.value is not None or f.reported_value is not None or f.status == ORDERED_NOW)
                   and within(f, check.lookback_days, today) and f.when is not None and (start is None or f.when > start)])
