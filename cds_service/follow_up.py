"""The follow-up NG239 advises after an indeterminate B12 (methylmalonic acid): whether it was done, and what it says."""

from datetime import date, timedelta

from cds_service.evidence import Evidence
from cds_service.facts import Fact, PatientFacts
from cds_service.findings import critical_feature_of, lab_confounder_evidence, listed_once
from cds_service.knowledge import Knowledge
from cds_service.knowledge_models import LabThreshold
from cds_service.lab_results import crosses, lab_crossing_evidence, stays_within, threshold_in_force
from cds_service.pregnancy import sex_group, sex_group_when_taken
from cds_service.protocol import Indicator
from cds_service.windows import newest, within


def indeterminate_sign(last: Fact, knowledge: Knowledge) -> Evidence:
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


def follow_up_since(
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
    return follow_up_answer(latest, sign, sex_group(facts, knowledge, today))  # censored across the threshold: None


def follow_up_answer(result: Fact, sign: LabThreshold, group: str) -> tuple[bool, Evidence] | None:
    """Whether a result clearly crosses its sign's threshold (True; the lab's own limit or high flag
    decides as for the sign, lab_crossing_evidence), clearly does not (False), or, censored across it, says
    neither (None); with the evidence the card shows."""
    crossed = lab_crossing_evidence(result, sign, group)
    if crossed is not None:
        return True, crossed
    threshold = threshold_in_force(result, sign, group)
    if stays_within(result, sign.comparator, threshold):
        return False, Evidence(sign.id, sign.label, (result,), comparator=sign.comparator, threshold=threshold)
    return None


def follow_up_urgency(
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
    group = sex_group(facts, knowledge, today)
    for cf in knowledge.rule.confounders:
        if cf.id not in knowledge.rule.b12_result.follow_up_less_specific_with:
            continue
        if cf.kind != "lab" or mma.when is None:
            doubts += [c for c in held if c.id == cf.id]
            continue
        then = facts.result_near(cf.lab or "", mma.when, cf.lookback_days or 0)
        ev = lab_confounder_evidence(cf, then, sex_group_when_taken(then, group, facts, knowledge))
        if ev is not None:
            doubts.append(ev)
    if critical_feature_of(signs, knowledge) is not None or not doubts:
        return Indicator.CRITICAL, listed_once(held, knowledge)
    decided = {d.id: d for d in doubts}
    merged = [decided.pop(c.id, c) for c in held] + list(decided.values())
    return Indicator.WARNING, listed_once(merged, knowledge)


def follow_up_answered(facts: PatientFacts, knowledge: Knowledge, b12: Fact, today: date) -> bool:
    """Whether the follow-up lab (MMA) answered a B12 result, however long ago: taken around it
    (follow_up_from), with a value that is clearly raised or clearly not (a censored one may be neither)."""
    sign = knowledge.rule.follow_up_sign
    group = sex_group(facts, knowledge, today)
    since = follow_up_from(b12, knowledge)
    return since is not None and any(
        f.when is not None and f.when >= since and follow_up_answer(f, sign, group) is not None for f in facts.of(sign.lab)
    )
