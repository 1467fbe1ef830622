"""The findings a card lists: signs, risk factors, confounders, medicines not yet taken long enough, implausible results."""

from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from typing import Literal

from cds_service.courses import current_course, dose_raised
from cds_service.evidence import Evidence
from cds_service.facts import ORDERED_NOW, Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.knowledge_models import Confounder, ConfounderCheck
from cds_service.lab_results import lab_crossing_evidence, latest_result_in
from cds_service.pregnancy import current_pregnancies, sex_group, sex_group_when_taken
from cds_service.windows import days_between, is_current, is_recent, newest, within

CriticalFeature = Literal["neurological", "macrocytic-anaemia", "both", "untreated-low"]


def find_implausible_results(facts: PatientFacts, knowledge: Knowledge, today: date) -> tuple[Fact, ...]:
    """The latest result of each lab a sign or a confounder reads, inside its look-back, when it holds
    a value no lab reports: read as no value, it leaves that sign unread (a B12 is shown on its own line)."""
    windows = knowledge.rule.lab_lookbacks
    latest = ((lab, newest([f for f in facts.of(lab) if f.resource_type == "Observation"])) for lab in windows)
    return tuple(f for lab, f in latest if f is not None and f.implausible and within(f, windows[lab], today))


def critical_feature_of(signs: tuple[Evidence, ...], knowledge: Knowledge) -> CriticalFeature | None:
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


def lab_measured_since(facts: PatientFacts, knowledge: Knowledge, sign_id: str, evidence: Evidence) -> Fact | None:
    """The latest result of the lab behind a lab sign dated on or after the evidence standing in for it."""
    lab = knowledge.rule.lab_sign(sign_id).lab
    dated = [f.when for f in evidence.facts if f.when is not None]
    since = max(dated) if dated else None
    return newest([f for f in facts.of(lab) if f.value is not None and f.when is not None and (since is None or f.when >= since)])


def find_signs(facts: PatientFacts, knowledge: Knowledge, today: date) -> tuple[Evidence, ...]:
    rule = knowledge.rule
    out: list[Evidence] = []
    group = sex_group(facts, knowledge, today)
    for concept in rule.symptoms.concepts:
        found = [f for f in facts.of(concept) if is_current(f, rule.symptoms.lookback_days, today)]
        if found:
            found.sort(key=lambda f: f.when or date.min, reverse=True)
            ev = Evidence(concept, knowledge.concepts[concept].label, tuple(found))
            target = rule.indicator.stands_for.get(concept)
            if target is not None:
                ev = replace(ev, measured_since=lab_measured_since(facts, knowledge, target, ev))
            out.append(ev)
    for sign in rule.lab_signs:
        latest = latest_result_in(facts, sign.lab, sign.lookback_days, today)
        lab_ev = lab_crossing_evidence(latest, sign, sex_group_when_taken(latest, group, facts, knowledge))
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


def find_risk_factors(facts: PatientFacts, knowledge: Knowledge, today: date, age: int | None) -> tuple[Evidence, ...]:
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
            found = [f for f in found if is_current(f, knowledge.rule.symptoms.lookback_days, today)]
        if found:
            out.append(Evidence(rf.id, rf.label, tuple(found), rf.advice))
    return tuple(out)


def find_short_courses(facts: PatientFacts, knowledge: Knowledge, today: date) -> tuple[Evidence, ...]:
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


def find_confounders(
    facts: PatientFacts, knowledge: Knowledge, today: date, complaint: Fact, first_complaint: date | None
) -> tuple[Evidence, ...]:
    """What else may explain the aches, every one that holds (listed_once says which the card shows);
    `complaint` is the newest complaint, `first_complaint` the date of the earliest (aches recorded
    before an illness are not explained by it)."""
    out: list[Evidence] = []
    group = sex_group(facts, knowledge, today)
    labs: dict[str, Evidence] = {}
    for cf in knowledge.rule.confounders:
        if cf.kind == "lab":
            latest = latest_result_in(facts, cf.lab or "", cf.lookback_days or 0, today)
            ev = lab_confounder_evidence(cf, latest, sex_group_when_taken(latest, group, facts, knowledge))
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
            found = [f for f in found if is_current(f, knowledge.rule.symptoms.lookback_days, today)]
        elif cf.kind == "pregnancy":
            found = current_pregnancies(facts, knowledge, today)
        else:  # recent: an illness or injury that began, or ended, inside the window
            ended = facts.ended.get(cf.concept or "", [])
            found = [f for f in (*found, *ended) if is_recent(f, cf.within_days or 0, today)]
            if cf.max_days_after_complaint is not None and first_complaint is not None:  # aches before it
                found = [f for f in found if f.when is None or days_between(first_complaint, f.when) <= cf.max_days_after_complaint]
        if not found:
            continue
        raised = (dose_raised(course, facts.courses(cf.concept or ""), knowledge, cf.concept or "", today)
                  if course is not None and cf.recent_dose_raise else None)
        note, checked, pointer = cf.advice, None, ""
        if cf.checked_by is not None and (course is not None or cf.kind == "condition"):
            # a medicine is checked by a result since it began (or its dose was raised); a condition by any recent one
            checked = checked_since(facts, cf.checked_by, (raised or course.start) if course is not None else None, today)
            if checked is not None and id(checked) in listed_results:  # listed below as a confounder: pointed to
                label = knowledge.concepts[checked.concept].label
                phrase = "checkedListedLow" if listed_results[id(checked)] == "<" else "checkedListed"
                note, checked = cf.checked_by.listed_advice, None
                pointer = " " + knowledge.wording.phrases[phrase].format(lab=label)
            elif checked is not None:
                # a result reads against the advice; a test only ordered now has none to read yet
                note = cf.checked_by.listed_advice if checked.status == ORDERED_NOW else cf.checked_by.advice
        if cf.recent_start_days is not None:
            # the earliest complaint on record: a statin begun after the aches did not start them
            anchor = first_complaint or complaint.when or today
            starts = [course.start] if course is not None else [f.when for f in found]
            recent = [d for d in starts if d is not None and 0 <= days_between(d, anchor) <= cf.recent_start_days]
            verb = "started"
            if not recent and raised is not None:  # "starting or raising the dose"
                recent = [raised] if 0 <= days_between(raised, anchor) <= cf.recent_start_days else []
                verb = "raised"
            if recent:
                days = days_between(recent[0], anchor)  # never "Started 1 days" or "0 days before"
                key = f"{verb}SameDay" if days == 0 else f"{verb}DayBefore" if days == 1 else f"{verb}Before"
                note = f"{knowledge.wording.phrases[key].format(days=days)} {note}"
        out.append(Evidence(cf.id, cf.label, tuple(found), note + pointer, checked=checked))
    return tuple(out)


def lab_confounder_evidence(cf: Confounder, latest: Fact | None, group: str) -> Evidence | None:
    """A lab confounder that holds (lab_crossing_evidence: the lab's own upper limit, the typical threshold,
    or the lab's high flag), with its advice."""
    ev = lab_crossing_evidence(latest, cf, group)
    return replace(ev, note=cf.advice) if ev else None


def listed_once(found: Iterable[Evidence], knowledge: Knowledge) -> tuple[Evidence, ...]:
    """Confounders as the card lists them: one superseded by another that holds is dropped (a higher
    tier of the same lab; the coded kidney disease beside its eGFR)."""
    found = tuple(found)
    holding = {e.id for e in found}
    superseded = {s for cf in knowledge.rule.confounders if cf.id in holding for s in cf.supersedes}
    return tuple(e for e in found if e.id not in superseded)


def checked_since(facts: PatientFacts, check: ConfounderCheck, start: date | None, today: date) -> Fact | None:
    """The latest result of the checking lab inside its look-back and taken after the medicine's start
    when one is given (one from before it, or a baseline on its first day, says nothing of aches on it), or one being
    ordered now (a draft at order-select); a result the service cannot convert still counts."""
    return newest([f for f in facts.of(check.lab)
                   if (f.value is not None or f.reported_value is not None or f.status == ORDERED_NOW)
                   and within(f, check.lookback_days, today) and f.when is not None and (start is None or f.when > start)])
