"""Pregnancy as the rule reads it: current, ended, and whether a result was taken during it."""

from datetime import date, timedelta

from cds_service.facts import Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.lab_results import b12_band
from cds_service.windows import age_in_years, in_window, newest, within


def current_pregnancies(facts: PatientFacts, knowledge: Knowledge, today: date) -> list[Fact]:
    """Current pregnancies: a pregnancy Condition or a "Pregnant" status Observation dated in the window
    (no pregnancy outlasts it, whatever status an EHR left on it; an active Condition with no date still
    counts), unless a "Not pregnant" status or the recorded end of a resolved pregnancy Condition (a
    birth, a loss), in the window, is newer than it (pregnancy_known_from: the latest wins; on the same day the
    pregnancy stands). An undated Condition is not shown to be newer than a dated "Not pregnant": it
    ends too (a resolved Condition's end leaves it: it may be the next pregnancy, recorded undated)."""
    rule = knowledge.rule.pregnancy
    if not may_be_pregnant(facts, knowledge, today):
        return []
    evidence = [f for c in (rule.concept, *rule.pregnant_status_concepts) for f in facts.of(c)
                if within(f, rule.lookback_days, today) or (f.active and f.when is None)]
    status = newest([f for c in rule.not_pregnant_status_concepts for f in facts.of(c)
                     if within(f, rule.lookback_days, today)])
    resolved = [d for d in pregnancy_ends(facts, knowledge) if in_window(d, rule.lookback_days, today)]
    ends = [d for d in (status.when if status else None, *resolved) if d is not None]
    if not ends:
        return evidence
    latest = max(ends)
    return [f for f in evidence if ((known := pregnancy_known_from(f)) is not None and known >= latest)
            or (known is None and status is None)]


def pregnancy_ends(facts: PatientFacts, knowledge: Knowledge) -> list[date]:
    """The recorded ends (abatement) of resolved pregnancy Conditions: a pregnancy known to have ended
    then, which ends a "Pregnant" status answered before it as a "Not pregnant" would."""
    return [p.until for p in facts.ended.get(knowledge.rule.pregnancy.concept, []) if p.until is not None]


def pregnancy_known_from(pregnancy: Fact) -> date | None:
    """When a pregnancy was on record: its date, or its Condition's recordedDate when that is later.
    A pregnancy Condition is often dated from the last menstrual period and entered weeks later, when
    found: a "Not pregnant" answered in between is older evidence than it, and ends nothing."""
    dates = [d for d in (pregnancy.when, pregnancy.recorded) if d is not None]
    return max(dates) if dates else None


def may_be_pregnant(facts: PatientFacts, knowledge: Knowledge, day: date) -> bool:
    """Not past pregnancy.maxAgeYears on that day (a record of pregnancy at 80 is an error in the
    chart); with no birth date, as the record says."""
    limit = knowledge.rule.pregnancy.max_age_years
    age = age_in_years(facts.birth_date, day)
    return limit is None or age is None or age <= limit


def ended_pregnancies(facts: PatientFacts, knowledge: Knowledge) -> list[tuple[date, date]]:
    """Pregnancies since ended, as (from, to): a resolved pregnancy Condition, its onset to its recorded
    end; a pregnancy (Condition or "Pregnant" status) followed by a "Not pregnant" status or a resolved
    pregnancy Condition's end newer than it (pregnancy_known_from), its date to that end, and never longer than the
    pregnancy window (no pregnancy lasts longer)."""
    rule = knowledge.rule.pregnancy
    spans = [(p.when, p.until) for p in facts.ended.get(rule.concept, []) if p.when is not None and p.until is not None]
    ends = sorted([*(f.when for c in rule.not_pregnant_status_concepts for f in facts.of(c) if f.when is not None),
                   *pregnancy_ends(facts, knowledge)])
    for p in (f for c in (rule.concept, *rule.pregnant_status_concepts) for f in facts.of(c)):
        start, known = p.when, pregnancy_known_from(p)
        end = next((d for d in ends if known is not None and d > known), None)
        if start is not None and end is not None:
            spans.append((start, min(end, start + timedelta(days=rule.lookback_days))))
    return spans


def taken_in_pregnancy(result: Fact, facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """Whether a result was taken during a current pregnancy: on or after its date (an undated one:
    inside the pregnancy window). A low result from before the pregnancy is what it always was."""
    window = knowledge.rule.pregnancy.lookback_days
    return result.when is not None and within(result, window, today) and any(
        p.when is None or result.when >= p.when for p in current_pregnancies(facts, knowledge, today))


def sex_group(facts: PatientFacts, knowledge: Knowledge, today: date) -> str:
    return "pregnant" if current_pregnancies(facts, knowledge, today) else facts.sex


def sex_group_when_taken(result: Fact | None, group: str, facts: PatientFacts, knowledge: Knowledge) -> str:
    """The patient's group when a result was taken: pregnant too when it fell inside a pregnancy that
    has since ended (ended_pregnancies), whose thresholds (Hb 11.0) it must be read by."""
    if group == "pregnant" or result is None or result.when is None:
        return group
    taken = result.when
    inside = may_be_pregnant(facts, knowledge, taken) and any(
        start <= taken <= end for start, end in ended_pregnancies(facts, knowledge))
    return "pregnant" if inside else group


def orders_active_b12(facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """In a current pregnancy the first B12 test is active B12: total B12 falls in pregnancy (NG239)."""
    return knowledge.rule.pregnancy.order_active_b12 and sex_group(facts, knowledge, today) == "pregnant"


def low_in_current_pregnancy(result: Fact, facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """A low total B12 taken in the current pregnancy, when total B12 falls: no proof of deficiency,
    and no reason a test of active B12 would be redundant (NG239)."""
    preg = knowledge.rule.pregnancy
    return (result.concept in preg.low_unreliable_concepts
            and b12_band(result, knowledge.rule.b12_result.bands[result.concept]) == "deficient"
            and orders_active_b12(facts, knowledge, today) and taken_in_pregnancy(result, facts, knowledge, today))
