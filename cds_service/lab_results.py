"""A lab result against a threshold, a lab's own upper limit, and the B12 bands."""

from dataclasses import replace
from datetime import date
from typing import Literal

from cds_service.evidence import Evidence
from cds_service.facts import Fact, PatientFacts
from cds_service.knowledge_models import Confounder, LabThreshold, LabUpperLimit, ResultBands
from cds_service.windows import newest, within

Band = Literal["deficient", "indeterminate", "normal", "unknown"]


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
    sent with no unit has the band every unit it may be in agrees on; where they disagree and none
    reads normal (150: deficient in pg/mL, indeterminate in pmol/L) it is indeterminate, as a
    censored value spanning those bands is; where one reads normal, none."""
    if low_flag_believed(fact, bands):
        return "deficient"
    if fact.value is None:
        agreed = unitless_bands(fact, bands)
        if len(agreed) == 1:
            return agreed.pop()
        return "indeterminate" if agreed and agreed <= {"deficient", "indeterminate"} else "unknown"
    if crosses(fact, "<", bands.deficient_below):
        return "deficient"
    if crosses(fact, ">", bands.normal_above):
        return "normal"
    return "indeterminate"


def unitless_bands(fact: Fact, bands: ResultBands) -> set[Band]:
    """The bands a value sent with no unit falls in, read in each unit it may be in."""
    return {b12_band(replace(fact, value=v, unitless_values=()), bands) for v in fact.unitless_values}


def deciding_b12(results: list[Fact], precedence: list[str], bands: dict[str, ResultBands]) -> Fact | None:
    """The newest B12 result; of several taken the newest day (a total and an active B12, often on one
    sample), one that can be read (a value against its bands, or the lab's flag) before one that cannot
    (a range, a value no lab reports), then the first of `precedence` (rule.json b12Result.sameDayPrecedence: the active B12,
    the more specific test, whichever way the two disagree)."""
    last = newest(results)
    if last is None:
        return None
    same_day = [f for f in results if f.when == last.when]
    if len(same_day) == 1:
        return last
    rank = {c: i for i, c in enumerate(precedence)}
    return min(same_day, key=lambda f: (not _readable(f, bands), rank.get(f.concept, len(rank))))


def _readable(fact: Fact, bands: dict[str, ResultBands]) -> bool:
    """A value read against its bands, or a flag the lab gave (a normal one too)."""
    return fact.concept in bands and (b12_band(fact, bands[fact.concept]) != "unknown" or bool(fact.flags))


def latest_result_in(facts: PatientFacts, lab: str, lookback: int, today: date) -> Fact | None:
    return newest([f for f in facts.of(lab) if f.value is not None and within(f, lookback, today)])


def crossing_evidence(latest: Fact | None, comparator: str, threshold: float, ev_id: str, label: str) -> Evidence | None:
    if latest is None or not crosses(latest, comparator, threshold):
        return None
    return Evidence(ev_id, label, (latest,), comparator=comparator, threshold=threshold)


def threshold_for(sign: LabThreshold | Confounder, group: str) -> float:
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


def threshold_in_force(result: Fact, ruled: LabThreshold | Confounder, group: str) -> float:
    """What a result is read against: its lab's own upper limit (times labUpperLimit.times) when
    believed, as the clinician reads it by the range printed beside it; else the rule's threshold."""
    limit = ruled.lab_upper_limit
    own = lab_limit_believed(limit, result)
    return limit.times * own if limit is not None and own is not None else threshold_for(ruled, group)


def lab_crossing_evidence(latest: Fact | None, ruled: LabThreshold | Confounder, group: str) -> Evidence | None:
    """A lab sign or lab confounder that holds: its result crosses the lab's own upper limit when
    one is believed (and then only it: a limit above the rule's threshold clears a value between
    them), else the rule's threshold, or, below it, is flagged high by the lab (labUpperLimit.flagCodes),
    which had a range of its own to read it by. The evidence says which, for the card to show. Only
    a value read is judged: a flag beside a value no lab reports, or in a unit not known, may be another's."""
    if latest is None or latest.value is None:
        return None
    limit = ruled.lab_upper_limit
    comparator = ruled.comparator or ">"
    ev = crossing_evidence(latest, comparator, threshold_in_force(latest, ruled, group), ruled.id, ruled.label)
    own = lab_limit_believed(limit, latest)
    if limit is not None and own is not None:
        return replace(ev, lab_limit=own, limit_times=limit.times) if ev else None
    if ev is None and limit is not None and not latest.flags.isdisjoint(limit.flag_code_set):
        return Evidence(ruled.id, ruled.label, (latest,), flagged_high=True)
    return ev
