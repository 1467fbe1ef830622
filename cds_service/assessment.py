"""The rule engine: a pure function from PatientFacts, knowledge and today's date to an Assessment.

No I/O and no clock: `today` is an argument. Every outcome carries its reason, so the card
can explain itself and the audit can record which criteria fired.
"""

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date

from cds_service.contract import PatternVariant
from cds_service.courses import lapsed_orders, on_b12_therapy, open_orders, tests_in_progress, treated_since
from cds_service.evidence import Evidence
from cds_service.facts import Fact, PatientFacts
from cds_service.findings import (
    CriticalFeature,
    critical_feature_of,
    find_confounders,
    find_implausible_results,
    find_risk_factors,
    find_short_courses,
    find_signs,
    listed_once,
)
from cds_service.follow_up import (
    follow_up_answered,
    follow_up_from,
    follow_up_since,
    follow_up_urgency,
    indeterminate_sign,
    result_test_label,
)
from cds_service.knowledge import Knowledge
from cds_service.lab_results import Band, b12_band, deciding_b12
from cds_service.pregnancy import low_in_current_pregnancy, orders_active_b12, taken_in_pregnancy
from cds_service.protocol import Indicator
from cds_service.windows import age_in_years, is_current, newest, within


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


def out_of_population(facts: PatientFacts, knowledge: Knowledge, today: date) -> bool:
    """Under the rule's age (NG239 covers over-16s) or deceased (a chart reviewed after death)."""
    population = knowledge.rule.population
    age = age_in_years(facts.birth_date, today)
    return (age is not None and age < population.min_age_years) or (facts.deceased and population.exclude_deceased)


def assess(facts: PatientFacts, knowledge: Knowledge, today: date) -> Assessment:
    """Decide whether the B12 card fires, which variant, and how urgently."""
    rule = knowledge.rule
    if out_of_population(facts, knowledge, today):
        return Assessment("out-of-population")
    age = age_in_years(facts.birth_date, today)

    trigger = tuple(
        sorted(
            (f for c in rule.trigger.concepts for f in facts.of(c) if is_current(f, rule.trigger.lookback_days, today)),
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

    last = deciding_b12([f for c in b12.result_concepts for f in facts.of(c)], b12.same_day_precedence, b12.bands)
    band: Band | None = b12_band(last, b12.bands[last.concept]) if last is not None else None
    # total B12 falls in pregnancy: a low one taken then proves no deficiency. An active B12 taken in
    # the same pregnancy is the result that tells; without one, the card asks for it.
    preg = rule.pregnancy
    low_in_pregnancy = last is not None and low_in_current_pregnancy(last, facts, knowledge, today)
    if low_in_pregnancy:
        reliable = deciding_b12([f for c in b12.result_concepts if c not in preg.low_unreliable_concepts
                                 for f in facts.of(c) if taken_in_pregnancy(f, facts, knowledge, today)], b12.same_day_precedence,
                                b12.bands)
        if reliable is not None:
            last, band, low_in_pregnancy = reliable, b12_band(reliable, b12.bands[reliable.concept]), False

    risks = find_risk_factors(facts, knowledge, today, age)
    first = min((f.when for f in trigger if f.when is not None), default=None)
    confounders = find_confounders(facts, knowledge, today, trigger[0], first)  # all that hold: urgency reads them
    low = rule.untreated_low
    treated = treated_since(facts, knowledge, last.when, today) if last is not None and last.when is not None else ()
    # what every outcome from here on carries; each return below says only what it decides
    base = Assessment(
        "undecided", trigger=trigger, risk_factors=risks, confounders=listed_once(confounders, knowledge), last_b12=last,
        b12_band=band, recent_result_days=sup.recent_result_days,
        unchecked=frozenset(facts.unchecked | ({"age"} if age is None else set())), unreadable=facts.unreadable,
        lapsed_orders=lapsed_orders(facts, sup.pending_order_concepts, knowledge, today),
        implausible=find_implausible_results(facts, knowledge, today),
        short_courses=find_short_courses(facts, knowledge, today),
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
                       signs=find_signs(facts, knowledge, today))
    if band == "indeterminate" and last is not None and last.when is not None:
        answer = follow_up_since(facts, knowledge, follow_up_from(last, knowledge), today)
        if answer is not None:  # the follow-up NG239 advises was done: it answers the question
            raised, evidence = answer
            if not raised:
                return replace(base, outcome="suppressed:normal-follow-up")
        if answer is not None and treated:
            return _lapsed_treatment(facts, knowledge, today, (indeterminate_sign(last, knowledge), answer[1]), base)
        if answer is not None:
            signs = (*find_signs(facts, knowledge, today), indeterminate_sign(last, knowledge))
            if evidence.id not in {e.id for e in signs}:
                signs = (*signs, evidence)
            indicator, listed = follow_up_urgency(confounders, signs, facts, knowledge, evidence.facts[0], today)
            return replace(base, outcome="card", variant="untreated-mma", indicator=indicator, signs=signs, confounders=listed)
    # MMA is never suggested twice: once one answered the indeterminate B12 (follow_up_from), re-test B12
    # an indeterminate B12 over a year old (the untreated-low look-back) is evidence, not a current value:
    # as an old low one, it asks for a new B12, not for the MMA that would settle a current one
    mma_due = (band == "indeterminate" and last is not None and within(last, low.lookback_days, today)
               and not follow_up_answered(facts, knowledge, last, today))
    # BSH: a normal B12 does not rule deficiency out when the picture is strong (falsely normal results
    # with intrinsic-factor antibodies): neurological signs or macrocytic anaemia ask for MMA instead
    critical_now = (critical_feature_of(find_signs(facts, knowledge, today), knowledge)
                    if band == "normal" and last is not None and b12.discordant_normal_follow_up
                    and within(last, sup.normal_result_days, today) else None)  # older: no longer silences, test again
    strong_picture = critical_now is not None
    # nitrous oxide: a normal serum B12 says little, so MMA is asked for whatever B12 shows
    unreliable = {rf.id for rf in rule.risk_factors if rf.serum_b12_unreliable} & {e.id for e in risks}
    if (strong_picture or unreliable) and not mma_due:
        # the MMA asked for was taken (around that B12; with nitrous oxide, whenever B12 was) and is
        # raised: it answers the question, as after an indeterminate B12, so treatment is the next step
        after = follow_up_from(last, knowledge) if strong_picture and not unreliable and last is not None else None
        answer = follow_up_since(facts, knowledge, after, today)
        if answer is not None and answer[0]:
            return _raised_follow_up(facts, knowledge, today, answer[1], base, confounders, after_nitrous_oxide=bool(unreliable))
    # asked for only when the feature is new since that B12: one the record already showed when it was
    # taken was weighed by whoever ordered it, and the normal result stands as any other does (clinical review)
    discordant = (strong_picture and last is not None and last.when is not None
                  and bool(_features(critical_now)
                           - _features(critical_feature_of(find_signs(record_on(facts, last.when), knowledge, last.when), knowledge)))
                  and not follow_up_answered(facts, knowledge, last, today))
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
        # a record marked resolved (read as a lifelong risk factor) and dated only by its entry began
        # nothing then; one with an onset began when it says
        ended = {id(f) for found in facts.ended.values() for f in found if f.entered_only}
        if last.when is None or not any(e.started_after(last.when, ignoring=ended) for e in risks):
            return replace(base, outcome="suppressed:recent-normal-result")
        base = replace(base, new_risk_since_normal=True)
    signs = find_signs(facts, knowledge, today)
    if band == "indeterminate" and last is not None:
        signs += (indeterminate_sign(last, knowledge),)
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
        critical = critical_feature_of(signs, knowledge)
        # the diagnosis has its own section: not listed again as a risk factor
        if diagnosis.resource_id is not None:
            record = (diagnosis.resource_type, diagnosis.resource_id)
            base = replace(base, risk_factors=tuple(e for e in risks if {(f.resource_type, f.resource_id) for f in e.facts} != {record}))
        return replace(base, outcome="card", variant="diagnosed-deficiency",
                       indicator=Indicator.CRITICAL if critical else Indicator.WARNING,
                       signs=signs, critical_feature=critical, diagnosis=diagnosis)

    critical = critical_feature_of(signs, knowledge)
    untreated_old_low = {s.id for s in signs} & set(rule.indicator.critical_without_risk_factor)
    # "never treated" is a claim only when the treatment records were all sent
    if not (risks and critical) and untreated_old_low and "therapy" not in facts.unchecked:
        critical = "untreated-low"  # a deficiency found and never treated (clinical reference: critical)
        indicator = Indicator.CRITICAL
    elif risks:
        indicator = Indicator.CRITICAL if critical else Indicator.WARNING
    elif critical is not None and _warns_alone(critical, knowledge):
        indicator = Indicator.WARNING  # a feature worth testing for by itself: no flu or run explains it
    else:
        indicator = Indicator.INFO
    downgrading = {c.id for c in rule.confounders if c.downgrade}
    if indicator == Indicator.WARNING and risks and any(c.id in downgrading for c in confounders):
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
    signs = find_signs(facts, knowledge, today)
    if mma.id not in {e.id for e in signs}:
        signs = (*signs, mma)
    variant: PatternVariant = "untreated-raised-mma-after-nitrous-oxide" if after_nitrous_oxide else "untreated-raised-mma"
    indicator, listed = follow_up_urgency(held, signs, facts, knowledge, mma.facts[0], today)
    return replace(base, outcome="card", variant=variant, indicator=indicator, signs=signs, confounders=listed)


def _features(critical: str | None) -> set[str]:
    """The critical features a critical_feature_of answer names ("both": neurological and anaemia)."""
    return {"neurological", "macrocytic-anaemia"} if critical == "both" else {critical} if critical else set()


def record_on(facts: PatientFacts, day: date) -> PatientFacts:
    """The record as it stood on `day`: what is dated after it left out (undated records kept, as
    they may have been there), a lab kept with its history (Knowledge.lab_history) read by its latest
    result by then. A sign recorded again later, or a blood count repeated, is no new sign."""
    def before(found: list[Fact]) -> list[Fact]:  # on record by then: entered by then, whatever its onset
        return [f for f in found if (entered := f.recorded or f.when) is None or entered <= day]
    by_concept = defaultdict(list, {c: before(found) for c, found in facts.by_concept.items()})
    for lab in facts.history:
        by_concept[lab] = [r] if (r := facts.result_by(lab, day)) is not None else []
    return replace(facts, by_concept=by_concept, ended={c: before(found) for c, found in facts.ended.items()})


def _warns_alone(critical: str, knowledge: Knowledge) -> bool:
    """A critical feature that makes a card a warning with no risk factor (rule.json indicator)."""
    wanted = set(knowledge.rule.indicator.warning_without_risk_factor)
    return critical in wanted or (critical == "both" and "macrocytic-anaemia" in wanted)


def deficiency_on_record(facts: PatientFacts, knowledge: Knowledge) -> Fact | None:
    """The latest diagnosis of B12 deficiency (pernicious anaemia, a B12-specific deficiency) on
    record, current and not only suspected (rule.json orders.establishedDeficiencyConcepts)."""
    orders = knowledge.rule.orders
    lifelong = [f for c in orders.lifelong_deficiency_concepts for f in facts.ended.get(c, [])]  # resolved, still made
    found = [f for f in (*(f for c in orders.established_deficiency_concepts for f in facts.of(c)), *lifelong)
             if f.verification not in knowledge.rule.record_status.condition_verification_suspected]
    return newest(found) or next(iter(found), None)  # of any date: an undated one too


def _lapsed_treatment(
    facts: PatientFacts, knowledge: Knowledge, today: date, evidence: tuple[Evidence, ...], base: Assessment
) -> Assessment:
    """Deficiency found, treated since, nothing current: a treatment review, critical with a
    neurological or cognitive sign or macrocytic anaemia (BSH: do not delay)."""
    signs = find_signs(facts, knowledge, today)
    signs += tuple(e for e in evidence if e.id not in {s.id for s in signs})
    critical = critical_feature_of(signs, knowledge)
    indicator = Indicator.CRITICAL if critical else Indicator.WARNING
    return replace(base, outcome="card", variant="lapsed-treatment", indicator=indicator, signs=signs, critical_feature=critical)
