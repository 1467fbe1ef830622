"""Medicine and order courses: replacement under way or given, long-term use and its start, open orders."""

from dataclasses import dataclass, replace
from datetime import date

from cds_service.facts import Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.windows import days_between, has_come, in_window, newest


def is_lapsed(order: Fact, knowledge: Knowledge, today: date) -> bool:
    """An open order no longer pending: due (or, with no due day, written) longer ago than the
    pending-order window, or due further ahead than the re-test window (a test due next year answers
    nothing now); undated ones never lapse."""
    sup = knowledge.rule.suppressors
    # an order written for a day of its own is judged by that day (written last week for next year:
    # nothing pending now; written last year for next week: pending), else by when it was written
    day = order.starts if order.starts is not None else order.when
    if day is None:
        return False
    return days_between(today, day) > sup.recent_result_days or days_between(day, today) > sup.pending_order_days


def open_orders(facts: PatientFacts, concepts: list[str], knowledge: Knowledge, today: date) -> list[Fact]:
    """Orders of `concepts` still pending: authored inside the pending-order window, or undated, with
    no result of the tests they order dated on or after them (suppressors.orderResults: EHRs often
    leave a resulted order active)."""
    return [f for c in concepts for f in facts.of(c)
            if not is_lapsed(f, knowledge, today) and not _resulted(f, facts, knowledge)]


def _resulted(order: Fact, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """Whether a result of the tests the order names is dated on or after it: the results every one
    of its order concepts accepts (an MMA order, also read as a B12 work-up order, waits for an MMA,
    not for the B12 result that prompted it the same day)."""
    if order.when is None:
        return False
    results = knowledge.rule.suppressors.order_results
    carried = [set(results[c]) for c in results if c == order.concept or any(
        g.resource_type == order.resource_type and g.resource_id == order.resource_id for g in facts.of(c))]
    wanted = set.intersection(*carried) if carried else set()
    return any(r.when is not None and r.when >= order.when for c in wanted for r in facts.of(c))


def tests_in_progress(facts: PatientFacts, concepts: list[str], knowledge: Knowledge, today: date) -> list[Fact]:
    """Lab tests of `concepts` registered with no result yet, inside the pending-order window, and
    not overtaken by a result of any of those kinds dated on or after them."""
    latest = newest([f for c in concepts for f in facts.of(c)])
    return [
        f for f in facts.in_progress
        if f.concept in concepts and not is_lapsed(f, knowledge, today)
        and (latest is None or latest.when is None or f.when is None or f.when > latest.when)
    ]


def lapsed_orders(facts: PatientFacts, concepts: list[str], knowledge: Knowledge, today: date) -> tuple[Fact, ...]:
    return tuple(f for c in concepts for f in facts.of(c) if is_lapsed(f, knowledge, today))


def course_end(course: Fact, today: date) -> date | None:
    """When a past course ended: its recorded end, else (unknown) its start. An end still to come
    on a completed course is a validity period's, not when it ended: the start is used then (an end
    tomorrow is today's somewhere: a day ahead is allowed, as for every date read)."""
    return course.until if course.until is not None and has_come(course.until, today) else course.when


def as_given(course: Fact, today: date) -> Fact:
    """A course as the card names it: an end still to come is no end ("ended" next month would mislead)."""
    return replace(course, until=None) if course.until is not None and not has_come(course.until, today) else course


def begun(fact: Fact, today: date) -> bool:
    """Whether a medicine's dosing has begun: an order whose start is still to come (a day ahead
    allowed, as EHR and service clocks differ by time zone) is neither use nor replacement yet."""
    return fact.starts is None or has_come(fact.starts, today)


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
    if current or any((ended := course_end(f, today)) is not None and in_window(ended, window, today) for f in given):
        return True
    return on_maintenance(given, knowledge, today)


DOSE_RECORDS = ("MedicationAdministration", "Procedure")  # a dose given: administered, or billed as an injection


def on_maintenance(given: list[Fact], knowledge: Knowledge, today: date) -> bool:
    """An established series of B12 injections (pernicious anaemia maintenance, every 2-3 months):
    a patient a little overdue for the next dose is still on replacement, not one to re-test."""
    sup = knowledge.rule.suppressors
    doses = sorted((f.when for f in given if f.resource_type in DOSE_RECORDS and f.when is not None
                    and in_window(f.when, sup.maintenance_window_days, today)), reverse=True)
    return (len(doses) >= sup.maintenance_doses and days_between(doses[0], today) <= sup.maintenance_latest_days
            and days_between(doses[-1], doses[0]) >= sup.maintenance_min_span_days)  # a series, not one stay's doses


def treated_since(facts: PatientFacts, knowledge: Knowledge, day: date, today: date) -> tuple[Fact, ...]:
    """B12 replacement given on or after `day` (administered, or a course begun or ended since),
    newest first: a low result it followed is no longer untreated."""
    given = [as_given(f, today) for c in knowledge.rule.suppressors.therapy_concepts for f in facts.of(c)
             if begun(f, today) and (ended := course_end(f, today)) is not None and ended >= day]
    return tuple(sorted(given, key=lambda f: course_end(f, today) or date.min, reverse=True))


@dataclass(frozen=True)
class Course:
    """Current use of a medicine: the records that show it, when the use began (None: unknown), and
    when it ended if it has (a long course still inside the grace window)."""

    facts: tuple[Fact, ...]
    start: date | None
    ended: date | None = None

    def lasted(self, minimum_days: int | None, today: date) -> bool:
        """Whether the use lasted `minimum_days` up to today or its end (an unknown start counts)."""
        return self.start is None or minimum_days is None or days_between(self.start, self.ended or today) >= minimum_days


def current_course(facts: PatientFacts, concept: str, knowledge: Knowledge, today: date, grace: bool = False) -> Course | None:
    """Current use of a medicine: its records in use now; or, with `grace` (long-term use), when none
    is, the courses that ended at most currentUseGraceDays ago (the renewal not yet written, the B12
    stores it depleted not refilled). None when it is not in use."""
    records = facts.of(concept)
    using = [f for f in records if in_use(f, today)]
    ended = None
    if not using and grace:
        window = knowledge.rule.record_status.current_use_grace_days
        recent = [(end, f) for f in records if begun(f, today) and (end := course_end(f, today)) is not None
                  and in_window(end, window, today)]
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
        gap = days_between(ended, start) <= status.renewal_gap_days if ended else days_between(course.when, start) <= status.renewal_start_gap_days
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
