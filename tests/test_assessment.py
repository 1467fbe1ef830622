"""The engine alone: facts in, assessment out, today fixed. Boundaries of each threshold."""

from dataclasses import replace
from datetime import date, timedelta

import pytest

from cds_service.assessment import assess, format_value
from cds_service.facts import Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.lab_results import b12_band, crosses, stays_within
from cds_service.protocol import Indicator

TODAY = date(2026, 11, 25)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def fact(concept: str, days: int | None, rtype: str = "Condition", active: bool = False,
         value: float | None = None, unit: str | None = None) -> Fact:
    when = ago(days) if days is not None else None
    return Fact(concept, rtype, f"{concept}-1", concept, when, active, "code", value, unit, None)


def patient(age: int, *facts: Fact, sex: str = "female") -> PatientFacts:
    pf = PatientFacts(birth_date=date(TODAY.year - age, 1, 1), sex=sex)
    for f in facts:
        pf.by_concept[f.concept].append(f)
    return pf


MYALGIA = fact("myalgia", 5)
FATIGUE = fact("fatigue", 5)


def test_myalgia_with_sign_and_no_risk_is_info(knowledge: Knowledge) -> None:
    a = assess(patient(40, MYALGIA, FATIGUE), knowledge, TODAY)
    assert a.variant == "test-b12" and a.indicator == Indicator.INFO


def test_trigger_window_boundary(knowledge: Knowledge) -> None:
    assert assess(patient(40, fact("myalgia", 90), FATIGUE), knowledge, TODAY).fires
    assert assess(patient(40, fact("myalgia", 91), FATIGUE), knowledge, TODAY).outcome == "no-trigger"
    old_but_active = fact("myalgia", 400, active=True)
    assert assess(patient(40, old_but_active, FATIGUE), knowledge, TODAY).fires


def test_mcv_threshold_is_strictly_above_100(knowledge: Knowledge) -> None:
    at = fact("mcv", 3, "Observation", value=100.0, unit="fL")
    above = fact("mcv", 3, "Observation", value=100.5, unit="fL")
    assert assess(patient(40, MYALGIA, at), knowledge, TODAY).outcome == "no-sign"
    assert assess(patient(40, MYALGIA, above), knowledge, TODAY).fires


def test_only_the_latest_lab_counts(knowledge: Knowledge) -> None:
    old_high = fact("mcv", 200, "Observation", value=108.0, unit="fL")
    new_normal = fact("mcv", 3, "Observation", value=92.0, unit="fL")
    assert assess(patient(40, MYALGIA, old_high, new_normal), knowledge, TODAY).outcome == "no-sign"


def test_anaemia_threshold_depends_on_sex(knowledge: Knowledge) -> None:
    hb = fact("hemoglobin", 3, "Observation", value=12.5, unit="g/dL")
    assert assess(patient(40, MYALGIA, hb, sex="male"), knowledge, TODAY).fires
    assert assess(patient(40, MYALGIA, hb, sex="female"), knowledge, TODAY).outcome == "no-sign"
    assert assess(patient(40, MYALGIA, hb, sex="unknown"), knowledge, TODAY).outcome == "no-sign"


def test_metformin_needs_six_months_when_start_is_known(knowledge: Knowledge) -> None:
    new = fact("metformin", 179, "MedicationRequest", active=True)
    long = fact("metformin", 180, "MedicationRequest", active=True)
    undated = fact("metformin", None, "MedicationRequest", active=True)
    assert assess(patient(40, MYALGIA, FATIGUE, new), knowledge, TODAY).indicator == Indicator.INFO
    assert assess(patient(40, MYALGIA, FATIGUE, long), knowledge, TODAY).indicator == Indicator.WARNING
    assert assess(patient(40, MYALGIA, FATIGUE, undated), knowledge, TODAY).indicator == Indicator.WARNING


def test_recent_result_window_boundary(knowledge: Knowledge) -> None:
    inside = fact("b12-result", 90, "Observation", value=600.0, unit="pg/mL")
    outside = fact("b12-result", 400, "Observation", value=600.0, unit="pg/mL")
    assert assess(patient(70, MYALGIA, FATIGUE, inside), knowledge, TODAY).outcome == "suppressed:recent-result"
    assert assess(patient(70, MYALGIA, FATIGUE, outside), knowledge, TODAY).fires


def test_holotc_result_also_counts_as_recent_testing(knowledge: Knowledge) -> None:
    holo = fact("holotc-result", 10, "Observation", value=80.0, unit="pmol/L")
    assert assess(patient(70, MYALGIA, FATIGUE, holo), knowledge, TODAY).outcome == "suppressed:recent-result"


def test_result_in_unknown_unit_still_suppresses_as_recent(knowledge: Knowledge) -> None:
    odd = fact("b12-result", 10, "Observation", value=None, unit="mg/dL")
    assert assess(patient(70, MYALGIA, FATIGUE, odd), knowledge, TODAY).outcome == "suppressed:recent-result"


def test_viral_confounder_never_lowers_critical(knowledge: Knowledge) -> None:
    flu = fact("viral-illness", 3)
    pares = fact("paresthesia", 3)
    a = assess(patient(70, MYALGIA, pares, flu), knowledge, TODAY)
    assert a.indicator == Indicator.CRITICAL
    assert [c.id for c in a.confounders] == ["viral-illness"]


def test_old_viral_illness_is_not_a_confounder(knowledge: Knowledge) -> None:
    a = assess(patient(70, MYALGIA, FATIGUE, fact("viral-illness", 15)), knowledge, TODAY)
    assert a.indicator == Indicator.WARNING and a.confounders == ()


def test_low_b12_without_therapy_is_untreated_low_even_if_recent(knowledge: Knowledge) -> None:
    low = fact("b12-result", 20, "Observation", value=150.0, unit="pg/mL")
    a = assess(patient(50, MYALGIA, low), knowledge, TODAY)
    assert a.variant == "untreated-low" and a.indicator == Indicator.CRITICAL


def test_low_b12_with_therapy_is_silent(knowledge: Knowledge) -> None:
    low = fact("b12-result", 20, "Observation", value=150.0, unit="pg/mL")
    therapy = fact("b12-therapy", 10, "MedicationRequest", active=True)
    assert assess(patient(50, MYALGIA, low, therapy), knowledge, TODAY).outcome == "suppressed:on-b12-therapy"


def test_recent_b12_administration_suppresses(knowledge: Knowledge) -> None:
    given = fact("b12-therapy", 60, "MedicationAdministration")
    long_ago = fact("b12-therapy", 200, "MedicationAdministration")
    assert assess(patient(70, MYALGIA, FATIGUE, given), knowledge, TODAY).outcome == "suppressed:on-b12-therapy"
    assert assess(patient(70, MYALGIA, FATIGUE, long_ago), knowledge, TODAY).fires


def test_criteria_name_what_fired_without_patient_data(knowledge: Knowledge) -> None:
    a = assess(patient(70, MYALGIA, FATIGUE), knowledge, TODAY)
    assert a.criteria == ["outcome:card", "trigger:myalgia", "sign:fatigue", "risk:older-age"]


def test_untreated_low_is_for_results_within_a_year(knowledge: Knowledge) -> None:
    within = fact("b12-result", 365, "Observation", value=150.0, unit="pg/mL")
    older = fact("b12-result", 366, "Observation", value=150.0, unit="pg/mL")
    assert assess(patient(50, MYALGIA, within), knowledge, TODAY).variant == "untreated-low"
    a = assess(patient(50, MYALGIA, older), knowledge, TODAY)
    assert a.variant == "test-b12" and [s.id for s in a.signs] == ["earlier-low-b12"]


def test_an_older_low_never_treated_is_critical_with_or_without_a_risk_factor(knowledge: Knowledge) -> None:
    """The clinical reference: critical when a prior B12 is below 180 pg/mL with no treatment recorded."""
    older = fact("b12-result", 700, "Observation", value=150.0, unit="pg/mL")
    for age in (50, 70):  # no risk factor; older age
        a = assess(patient(age, MYALGIA, older), knowledge, TODAY)
        assert a.indicator == Indicator.CRITICAL and a.critical_feature == "untreated-low"
    given = fact("b12-therapy", 600, "MedicationAdministration")
    a = assess(patient(50, MYALGIA, older, given), knowledge, TODAY)
    assert [s.id for s in a.signs] == ["earlier-treated-low-b12"] and a.indicator != Indicator.CRITICAL
    unsent = patient(70, MYALGIA, older)
    unsent.unchecked = frozenset({"therapy"})  # treatment records not all sent: "never treated" would be a guess
    assert assess(unsent, knowledge, TODAY).indicator == Indicator.WARNING
    with_neuro = assess(patient(70, MYALGIA, older, fact("paresthesia", 5)), knowledge, TODAY)
    assert with_neuro.indicator == Indicator.CRITICAL and with_neuro.critical_feature == "neurological"


@pytest.mark.parametrize(("value", "shown"), [(128.74, "128.7"), (10.6, "10.6"), (0.62, "0.62"), (0.456, "0.46"),
                                              (6.2, "6.2"), (12.0, "12"), (250.0, "250")])
def test_lab_values_keep_the_precision_their_thresholds_need(value: float, shown: str) -> None:
    assert format_value(value) == shown


@pytest.mark.parametrize(("b12_days", "mma_days", "mma", "outcome", "variant"), [
    (120, 90, 0.62, "card", "untreated-mma"),            # raised MMA since: treat, do not re-test
    (120, 90, 0.45, "suppressed:normal-follow-up", None),  # at the threshold is not raised: answered
    (120, 250, 0.62, "card", "test-mma"),                 # MMA long before the B12 does not answer it
    (30, 60, 0.62, "card", "untreated-mma"),              # ... in the 90 days before it: weeks apart, one state
    (30, 60, 0.3, "suppressed:normal-follow-up", None),
    (30, 120, 0.62, "card", "untreated-mma"),             # 90 days before it: the window's edge
    (30, 121, 0.62, "card", "test-mma"),                  # before the window: not its answer
    (450, 400, 0.62, "card", "test-b12"),                 # an answer older than a year is not current: re-test B12, never MMA twice
], ids=["raised-since", "normal-since", "before", "weeks-before-raised", "weeks-before-normal", "window-edge",
        "before-window", "over-a-year"])
def test_methylmalonic_acid_after_an_indeterminate_b12(
    knowledge: Knowledge, b12_days: int, mma_days: int, mma: float, outcome: str, variant: str | None
) -> None:
    b12 = fact("b12-result", b12_days, "Observation", value=250.0, unit="pg/mL")
    mma_result = fact("mma", mma_days, "Observation", value=mma, unit="umol/L")
    a = assess(patient(64, MYALGIA, FATIGUE, b12, mma_result), knowledge, TODAY)
    assert (a.outcome, a.variant) == (outcome, variant)
    if variant == "untreated-mma":
        assert a.indicator == Indicator.CRITICAL
        assert {"raised-mma", "indeterminate-b12"} <= {s.id for s in a.signs}


@pytest.mark.parametrize(("picture", "b12_days", "mma_days", "mma", "outcome", "variant"), [
    ("nitrous-oxide", 20, 30, 1.2, "card", "untreated-raised-mma-after-nitrous-oxide"),  # raised, taken before the normal B12: still counts
    ("nitrous-oxide", None, 30, 1.2, "card", "untreated-raised-mma-after-nitrous-oxide"),  # no B12 at all
    ("nitrous-oxide", 20, 30, 0.3, "suppressed:recent-result", None),     # not raised, inside the re-test window
    ("nitrous-oxide", 20, 400, 1.2, "card", "test-mma-after-nitrous-oxide"),  # raised but over a year old: test again
    ("paresthesia", 60, 40, 0.8, "card", "untreated-raised-mma"),         # discordant normal B12, raised MMA since
    ("paresthesia", 60, 70, 0.8, "card", "untreated-raised-mma"),         # weeks before it, inside the re-test window
    ("paresthesia", 60, 70, 0.2, "suppressed:recent-result", None),       # the same, not raised: silent
    ("paresthesia", 60, 160, 0.8, "card", "test-mma-after-normal-b12"),   # 100 days before that B12: outside the window
    ("paresthesia", 60, 40, 0.2, "suppressed:recent-result", None),       # answered no: silent as before
], ids=["n2o-before-b12", "n2o-no-b12", "n2o-normal", "n2o-old", "discordant-since", "discordant-weeks-before",
        "discordant-weeks-before-normal", "discordant-before", "discordant-normal"])
def test_a_raised_mma_where_serum_b12_misleads_asks_for_treatment_review(
    knowledge: Knowledge, picture: str, b12_days: int | None, mma_days: int, mma: float, outcome: str, variant: str | None
) -> None:
    results = [fact("mma", mma_days, "Observation", value=mma, unit="umol/L")]
    if b12_days is not None:
        results.append(fact("b12-result", b12_days, "Observation", value=420.0, unit="pg/mL"))
    context = fact(picture, 10, active=True)
    a = assess(patient(40, MYALGIA, FATIGUE, context, *results), knowledge, TODAY)
    assert (a.outcome, a.variant) == (outcome, variant)
    if variant is not None and variant.startswith("untreated-raised-mma"):
        assert a.indicator == Indicator.CRITICAL and "raised-mma" in {s.id for s in a.signs}


@pytest.mark.parametrize(("value", "variant"), [(18.0, "untreated-low"), (50.0, "test-mma"), (95.0, None)])
def test_active_b12_is_read_against_its_own_bands(knowledge: Knowledge, value: float, variant: str | None) -> None:
    holotc = fact("holotc-result", 120, "Observation", value=value, unit="pmol/L")
    a = assess(patient(64, MYALGIA, FATIGUE, holotc), knowledge, TODAY)
    assert a.variant == variant


def censored(concept: str, days: int, comparator: str | None, value: float | None, unit: str,
             flagged_low: bool = False) -> Fact:
    return replace(fact(concept, days, "Observation", value=value, unit=unit), comparator=comparator, flagged_low=flagged_low)


@pytest.mark.parametrize(("comparator", "value", "flagged_low", "band"), [
    (None, 179.9, False, "deficient"), (None, 180.0, False, "indeterminate"), (None, 350.0, False, "indeterminate"),
    (None, 350.1, False, "normal"),
    ("<", 180.0, False, "deficient"), ("<=", 180.0, False, "indeterminate"), ("<", 200.5, False, "indeterminate"),
    (">", 350.0, False, "normal"), (">=", 350.0, False, "indeterminate"), (">", 100.0, False, "indeterminate"),
    ("ad", 100.0, False, "indeterminate"),
    ("<", 200.5, True, "deficient"), (None, 250.0, True, "deficient"), (None, None, True, "deficient"),
    (None, None, False, "unknown"),
])
def test_b12_band_reads_censored_values_and_the_labs_low_flag(
    knowledge: Knowledge, comparator: str | None, value: float | None, flagged_low: bool, band: str
) -> None:
    result = censored("b12-result", 30, comparator, value, "pg/mL", flagged_low)
    assert b12_band(result, knowledge.rule.b12_result.bands["b12-result"]) == band


@pytest.mark.parametrize(("written", "comparator", "band"), [
    (132, None, "deficient"), (133, None, "indeterminate"), (150, None, "indeterminate"),  # deficient in pg/mL, indeterminate in pmol/L: never normal
    (200, None, "indeterminate"), (258, None, "indeterminate"), (259, None, "unknown"), (350, None, "unknown"),
    (351, None, "normal"), (50, "<", "deficient"), (2000, ">", "normal"), (300, "<", "indeterminate"),
])
def test_a_b12_without_a_unit_has_the_band_every_unit_it_may_be_in_agrees_on(
    knowledge: Knowledge, written: float, comparator: str | None, band: str
) -> None:
    units = knowledge.units["b12-result"]
    result = replace(censored("b12-result", 30, comparator, None, "", False), reported_value=written,
                     unitless_values=units.unitless_values(written))
    assert b12_band(result, knowledge.rule.b12_result.bands["b12-result"]) == band

@pytest.mark.parametrize(("comparator", "value", "above", "below"), [
    (None, 0.5, True, False), ("<", 0.5, False, False), ("<", 0.45, False, True), ("<=", 0.45, False, True),
    (">", 0.45, True, False), (">", 0.3, False, False), (">=", 0.45, False, False), ("ad", 0.9, False, False),
])
def test_a_censored_result_crosses_a_threshold_only_when_every_value_it_allows_does(
    comparator: str | None, value: float, above: bool, below: bool
) -> None:
    mma = censored("mma", 10, comparator, value, "umol/L")
    assert crosses(mma, ">", 0.45) is above
    assert stays_within(mma, ">", 0.45) is below


def test_a_censored_mma_that_spans_the_threshold_does_not_answer_an_indeterminate_b12(knowledge: Knowledge) -> None:
    b12 = fact("b12-result", 200, "Observation", value=250.0, unit="pg/mL")
    spans = censored("mma", 100, "<", 0.5, "umol/L")
    below = censored("mma", 100, "<", 0.2, "umol/L")
    assert assess(patient(64, MYALGIA, FATIGUE, b12, spans), knowledge, TODAY).variant == "test-mma"
    assert assess(patient(64, MYALGIA, FATIGUE, b12, below), knowledge, TODAY).outcome == "suppressed:normal-follow-up"


def test_a_b12_the_lab_flags_low_with_no_value_is_an_untreated_low_result(knowledge: Knowledge) -> None:
    flagged = censored("b12-result", 40, None, None, "pg/mL", flagged_low=True)
    a = assess(patient(64, MYALGIA, FATIGUE, flagged), knowledge, TODAY)
    assert (a.variant, a.indicator) == ("untreated-low", Indicator.CRITICAL)


def med(concept: str, days: int | None, status: str) -> Fact:
    return replace(fact(concept, days, "MedicationRequest", active=status in ("active", "on-hold")), status=status)


@pytest.mark.parametrize(("earlier", "counted"), [
    ((), False),
    ((3 * 365, 2 * 365, 365), True),  # yearly renewals: an unbroken chain
    ((3 * 365, 300), False),  # a gap of over two years breaks it: 300 days of use is short of 365
    ((10 * 365,), False),  # a course ten years ago is not today's prescription
])
def test_long_term_use_counts_from_the_first_course_of_an_unbroken_chain(
    knowledge: Knowledge, earlier: tuple[int, ...], counted: bool
) -> None:
    current = med("acid-suppressant", 60, "active")
    history = tuple(med("acid-suppressant", days, "completed") for days in earlier)
    a = assess(patient(50, MYALGIA, FATIGUE, current, *history), knowledge, TODAY)
    assert ("acid-suppression" in {e.id for e in a.risk_factors}) is counted
    if counted:
        (risk,) = a.risk_factors
        assert risk.since == ago(3 * 365)


def test_a_past_course_chains_by_its_recorded_end(knowledge: Knowledge) -> None:
    current = med("acid-suppressant", 60, "active")
    ended_long_ago = replace(med("acid-suppressant", 2 * 365, "completed"), until=ago(6 * 30 + 365))
    ended_recently = replace(med("acid-suppressant", 2 * 365, "completed"), until=ago(61))
    assert assess(patient(50, MYALGIA, FATIGUE, current, ended_long_ago), knowledge, TODAY).risk_factors == ()
    (risk,) = assess(patient(50, MYALGIA, FATIGUE, current, ended_recently), knowledge, TODAY).risk_factors
    assert risk.since == ago(2 * 365)


def test_a_past_course_alone_is_no_risk_factor(knowledge: Knowledge) -> None:
    a = assess(patient(50, MYALGIA, FATIGUE, med("metformin", 3 * 365, "completed")), knowledge, TODAY)
    assert a.risk_factors == ()


def test_a_renewal_is_not_a_new_risk_factor_since_a_normal_result(knowledge: Knowledge) -> None:
    normal = fact("b12-result", 180, "Observation", value=480.0, unit="pg/mL")
    renewed = (med("metformin", 90, "active"), med("metformin", 400, "completed"), med("metformin", 5 * 365, "completed"))
    assert assess(patient(50, MYALGIA, FATIGUE, normal, *renewed), knowledge, TODAY).outcome == "suppressed:recent-normal-result"
    new = med("metformin", 90, "active")
    a = assess(patient(50, MYALGIA, FATIGUE, normal, new, med("metformin", 5 * 365, "stopped")), knowledge, TODAY)
    assert a.fires is False  # 90 days of metformin is not yet a risk factor: the normal result still holds


def test_a_statin_renewed_recently_is_not_started_recently(knowledge: Knowledge) -> None:
    renewed = (med("statin", 20, "active"), med("statin", 300, "completed"))
    (statin,) = assess(patient(50, MYALGIA, FATIGUE, *renewed), knowledge, TODAY).confounders
    assert not statin.note.startswith("Started")
    (statin,) = assess(patient(50, MYALGIA, FATIGUE, med("statin", 20, "active")), knowledge, TODAY).confounders
    assert statin.note.startswith("Started")


@pytest.mark.parametrize(("low_days", "given", "variant"), [
    (200, None, "untreated-low"),
    (200, med("b12-therapy", 150, "completed"), "lapsed-treatment"),
    (200, med("b12-therapy", 400, "completed"), "untreated-low"),  # before the low result: it did not treat it
    (200, replace(fact("b12-therapy", 120, "MedicationAdministration"), status="completed"), "lapsed-treatment"),
    (200, med("b12-therapy", 60, "completed"), None),  # a course ending in the last 90 days is B12 given
    (500, med("b12-therapy", 450, "completed"), "test-b12"),  # over a year old: evidence, re-test
])
def test_a_low_result_treated_since_asks_for_a_treatment_review_not_a_test(
    knowledge: Knowledge, low_days: int, given: Fact | None, variant: str | None
) -> None:
    low = fact("b12-result", low_days, "Observation", value=120.0, unit="pg/mL")
    a = assess(patient(50, MYALGIA, FATIGUE, low, *((given,) if given else ())), knowledge, TODAY)
    assert a.variant == variant
    if variant == "lapsed-treatment":
        assert a.past_therapy == (given,) and a.indicator == Indicator.WARNING
    if variant == "test-b12":
        assert {s.label for s in a.signs} >= {"Low serum vitamin B12, replacement given since"}


def test_a_lapsed_treatment_review_is_critical_with_a_neurological_sign(knowledge: Knowledge) -> None:
    low = fact("b12-result", 200, "Observation", value=120.0, unit="pg/mL")
    a = assess(patient(50, MYALGIA, fact("paresthesia", 5), low, med("b12-therapy", 150, "completed")), knowledge, TODAY)
    assert (a.variant, a.indicator) == ("lapsed-treatment", Indicator.CRITICAL)


def test_a_raised_mma_treated_since_is_not_untreated(knowledge: Knowledge) -> None:
    b12 = fact("b12-result", 200, "Observation", value=250.0, unit="pg/mL")
    mma = fact("mma", 190, "Observation", value=0.8, unit="umol/L")
    assert assess(patient(64, MYALGIA, FATIGUE, b12, mma), knowledge, TODAY).variant == "untreated-mma"
    treated = med("b12-therapy", 150, "completed")
    a = assess(patient(64, MYALGIA, FATIGUE, b12, mma, treated), knowledge, TODAY)
    assert a.variant == "lapsed-treatment"  # never MMA again
    assert {"indeterminate-b12", "raised-mma"} <= {s.id for s in a.signs}


def registered(concept: str, days: int) -> Fact:
    return replace(fact(concept, days, "Observation", active=True), status="registered")


def test_a_test_in_progress_silences_the_card_until_a_result_overtakes_it(knowledge: Knowledge) -> None:
    pf = patient(50, MYALGIA, FATIGUE)
    pf.in_progress.append(registered("b12-result", 10))
    assert assess(pf, knowledge, TODAY).outcome == "suppressed:result-pending"
    low_active_b12 = fact("holotc-result", 3, "Observation", value=15.0, unit="pmol/L")
    pf.by_concept["holotc-result"].append(low_active_b12)  # a newer result of the other kind
    assert assess(pf, knowledge, TODAY).variant == "untreated-low"


def test_a_recorded_anaemia_with_macrocytosis_is_macrocytic_anaemia(knowledge: Knowledge) -> None:
    anaemia = fact("anaemia-diagnosis", 30, active=True)
    mcv = fact("mcv", 10, "Observation", value=104.0, unit="fL")
    metformin = fact("metformin", 400, "MedicationRequest", active=True)
    assert assess(patient(50, MYALGIA, anaemia, metformin), knowledge, TODAY).indicator == Indicator.WARNING
    assert assess(patient(50, MYALGIA, anaemia, mcv, metformin), knowledge, TODAY).indicator == Indicator.CRITICAL


def test_an_illness_that_ended_in_the_last_14_days_still_explains_the_aches(knowledge: Knowledge) -> None:
    metformin = fact("metformin", 400, "MedicationRequest", active=True)
    pf = patient(50, MYALGIA, FATIGUE, metformin)
    assert assess(pf, knowledge, TODAY).indicator == Indicator.WARNING
    pf.ended["viral-illness"] = [replace(fact("viral-illness", 20), until=ago(3))]
    a = assess(pf, knowledge, TODAY)
    assert a.indicator == Indicator.INFO and "viral-illness" in {c.id for c in a.confounders}


def test_a_completed_b12_course_whose_validity_runs_on_is_b12_given_now(knowledge: Knowledge) -> None:
    course = replace(med("b12-therapy", 30, "completed"), until=TODAY + timedelta(days=300))
    assert assess(patient(50, MYALGIA, FATIGUE, course), knowledge, TODAY).outcome == "suppressed:on-b12-therapy"
    long_ago = replace(med("b12-therapy", 3 * 365, "completed"), until=ago(2 * 365))
    assert assess(patient(50, MYALGIA, FATIGUE, long_ago), knowledge, TODAY).fires


def test_a_course_that_ended_months_before_the_next_began_is_not_renewed(knowledge: Knowledge) -> None:
    restarted = med("statin", 20, "active")
    break_of_ten_months = replace(med("statin", 700, "completed"), until=ago(330))
    (statin,) = assess(patient(50, MYALGIA, FATIGUE, restarted, break_of_ten_months), knowledge, TODAY).confounders
    assert statin.note.startswith("Started")


def test_a_lapsed_treatment_review_is_critical_with_macrocytic_anaemia(knowledge: Knowledge) -> None:
    low = fact("b12-result", 200, "Observation", value=120.0, unit="pg/mL")
    mcv = fact("mcv", 5, "Observation", value=104.0, unit="fL")
    hb = fact("hemoglobin", 5, "Observation", value=10.9, unit="g/dL")
    a = assess(patient(50, MYALGIA, low, mcv, hb, med("b12-therapy", 150, "completed")), knowledge, TODAY)
    assert (a.variant, a.indicator) == ("lapsed-treatment", Indicator.CRITICAL)


def test_a_normal_hb_measured_after_the_anaemia_diagnosis_decides(knowledge: Knowledge) -> None:
    anaemia = fact("anaemia-diagnosis", 30, active=True)
    mcv = fact("mcv", 10, "Observation", value=104.0, unit="fL")
    metformin = fact("metformin", 400, "MedicationRequest", active=True)
    normal_hb = fact("hemoglobin", 3, "Observation", value=14.2, unit="g/dL")
    assert assess(patient(50, MYALGIA, anaemia, mcv, metformin, normal_hb), knowledge, TODAY).indicator == Indicator.WARNING
    older_hb = fact("hemoglobin", 60, "Observation", value=14.2, unit="g/dL")
    assert assess(patient(50, MYALGIA, anaemia, mcv, metformin, older_hb), knowledge, TODAY).indicator == Indicator.CRITICAL


@pytest.mark.parametrize(("days", "variant"), [(365, "test-mma"), (366, "test-b12"), (3650, "test-b12")])
def test_an_indeterminate_b12_over_a_year_old_asks_for_a_new_b12(knowledge: Knowledge, days: int, variant: str) -> None:
    """Older than the untreated-low look-back, an indeterminate B12 is evidence, as an old low one is:
    the card asks for a new B12, never for the MMA that would settle a current one."""
    b12 = fact("b12-result", days, "Observation", value=250.0, unit="pg/mL")
    a = assess(patient(66, MYALGIA, FATIGUE, b12), knowledge, TODAY)
    assert (a.variant, a.indicator) == (variant, Indicator.WARNING)
    assert "indeterminate-b12" in {s.id for s in a.signs}


def test_a_recent_b12_test_that_reported_nothing_silences_nothing_and_is_named(knowledge: Knowledge) -> None:
    not_performed = fact("b12-result", 10, "Observation")
    pf = patient(64, MYALGIA, FATIGUE)
    pf.no_result.append(not_performed)
    a = assess(pf, knowledge, TODAY)
    assert (a.variant, a.last_b12, a.no_result_b12) == ("test-b12", None, not_performed)
    pf.no_result[0] = fact("b12-result", 91, "Observation")  # outside the recent-result window: not named
    assert assess(pf, knowledge, TODAY).no_result_b12 is None


def test_an_anaemia_diagnosis_is_disproved_only_by_a_current_hb_after_a_dated_diagnosis(knowledge: Knowledge) -> None:
    """Found in review: an undated diagnosis and a normal Hb from two years ago lost the only sign."""
    normal_hb = fact("hemoglobin", 3, "Observation", value=14.2, unit="g/dL")
    dated = fact("anaemia-diagnosis", 120, "Condition")
    assert assess(patient(70, MYALGIA, dated, normal_hb), knowledge, TODAY).outcome == "no-sign"
    undated = fact("anaemia-diagnosis", None, "Condition", active=True)
    assert assess(patient(70, MYALGIA, undated, normal_hb), knowledge, TODAY).outcome == "card"
    old_hb = fact("hemoglobin", 700, "Observation", value=14.2, unit="g/dL")
    old_dx = fact("anaemia-diagnosis", 800, "Condition", active=True)
    assert assess(patient(70, MYALGIA, old_dx, old_hb), knowledge, TODAY).outcome == "card"


# Pregnancy recorded as a pregnancy status Observation (US Core 82810-3): rule.json pregnancy


PREGNANT, NOT_PREGNANT = "pregnancy-status-pregnant", "pregnancy-status-not-pregnant"
HB_11_5 = fact("hemoglobin", 3, "Observation", value=11.5, unit="g/dL")  # anaemia unless pregnant (11.0)


def status(concept: str, days: int | None) -> Fact:
    return replace(fact(concept, days, "Observation"), resource_id=f"{concept}-{days}")


@pytest.mark.parametrize(("evidence", "pregnant"), [
    ((status(PREGNANT, 60),), True),
    ((status(PREGNANT, 300),), True),  # the window's last day
    ((status(PREGNANT, 301),), False),  # no pregnancy lasts 300 days
    ((status(PREGNANT, None),), False),  # an undated status says nothing of now
    # the latest status wins, Condition or Observation
    ((fact("pregnancy", 200, active=True), status(NOT_PREGNANT, 14)), False),
    ((status(PREGNANT, 200), status(NOT_PREGNANT, 14)), False),
    ((status(NOT_PREGNANT, 150), fact("pregnancy", 100, active=True)), True),  # pregnant after a negative answer
    ((status(NOT_PREGNANT, 150), status(PREGNANT, 100)), True),
    ((status(NOT_PREGNANT, 30), status(PREGNANT, 30)), True),  # the same day: the pregnancy stands
    # an undated active pregnancy Condition is not shown to be newer than a dated "Not pregnant"
    ((fact("pregnancy", None, active=True), status(NOT_PREGNANT, 14)), False),
    # a "Not pregnant" older than the window is no current evidence: it ends nothing
    ((fact("pregnancy", None, active=True), status(NOT_PREGNANT, 320)), True),
    ((status(NOT_PREGNANT, 14),), False),
], ids=["pregnant", "pregnant-300-days", "pregnant-301-days", "undated-status", "not-pregnant-after-condition",
        "not-pregnant-after-status", "not-pregnant-before-condition", "not-pregnant-before-status", "same-day",
        "undated-condition-then-not-pregnant", "undated-condition-old-not-pregnant", "not-pregnant-alone"])
def test_pregnancy_status_observations_decide_the_anaemia_threshold_and_the_test(
    knowledge: Knowledge, evidence: tuple[Fact, ...], pregnant: bool
) -> None:
    a = assess(patient(30, MYALGIA, HB_11_5, *evidence), knowledge, TODAY)
    assert a.outcome == ("no-sign" if pregnant else "card")
    b = assess(patient(30, MYALGIA, FATIGUE, *evidence), knowledge, TODAY)
    assert b.variant == ("test-active-b12" if pregnant else "test-b12")
    assert any(c.id == "pregnancy" for c in b.confounders) == pregnant


@pytest.mark.parametrize(("not_pregnant_days", "pregnant"), [
    (90, True),  # answered between the onset and the record: older than the pregnancy's record
    (60, True),  # the day it was entered: the pregnancy stands
    (30, False),  # answered after it was entered: the latest status wins
])
def test_a_not_pregnant_status_is_weighed_against_when_a_pregnancy_condition_was_recorded(
    knowledge: Knowledge, not_pregnant_days: int, pregnant: bool
) -> None:
    # a pregnancy Condition dated from the last period (onset 100 days ago), entered when found (60 days ago)
    entered_later = replace(fact("pregnancy", 100, active=True), recorded=ago(60))
    evidence = (entered_later, status(NOT_PREGNANT, not_pregnant_days))
    assert assess(patient(30, MYALGIA, HB_11_5, *evidence), knowledge, TODAY).outcome == ("no-sign" if pregnant else "card")
    assert assess(patient(30, MYALGIA, FATIGUE, *evidence), knowledge, TODAY).variant == (
        "test-active-b12" if pregnant else "test-b12")
    # once a later answer ends it, a Hb taken in the pregnancy is still read by the pregnancy threshold
    if not pregnant:
        taken_in_it = fact("hemoglobin", 45, "Observation", value=11.5, unit="g/dL")
        assert assess(patient(30, MYALGIA, taken_in_it, *evidence), knowledge, TODAY).outcome == "no-sign"


@pytest.mark.parametrize(("evidence", "ended_days", "pregnant"), [
    ((status(PREGNANT, 230),), 20, False),  # the birth since the status: the pregnancy ended
    ((status(PREGNANT, 30),), 120, True),  # a status after an earlier pregnancy ended: a new one
    ((status(PREGNANT, 30),), 30, True),  # the same day: the pregnancy stands
    ((fact("pregnancy", 230, active=True),), 20, False),  # a duplicate left open ends with it
    ((fact("pregnancy", None, active=True),), 20, True),  # undated: may be the next pregnancy
    ((status(PREGNANT, 230),), 320, True),  # an end older than the window is no current evidence
], ids=["status-then-birth", "loss-then-status", "same-day", "open-duplicate", "undated-open", "old-end"])
def test_a_resolved_pregnancy_condition_ends_a_pregnant_status_answered_before_it(
    knowledge: Knowledge, evidence: tuple[Fact, ...], ended_days: int, pregnant: bool
) -> None:
    resolved = replace(fact("pregnancy", 260), resource_id="pregnancy-resolved", until=ago(ended_days))
    for facts, outcome in ((patient(30, MYALGIA, HB_11_5, *evidence), "no-sign" if pregnant else "card"),
                           (patient(30, MYALGIA, FATIGUE, *evidence), None)):
        facts.ended["pregnancy"] = [resolved]
        a = assess(facts, knowledge, TODAY)
        if outcome is None:
            assert a.variant == ("test-active-b12" if pregnant else "test-b12")
        else:
            assert a.outcome == outcome


def test_a_hb_taken_in_a_pregnancy_a_not_pregnant_status_ended_is_read_by_the_pregnancy_threshold(
    knowledge: Knowledge
) -> None:
    taken_in_it = fact("hemoglobin", 60, "Observation", value=11.5, unit="g/dL")
    for pregnancy in (status(PREGNANT, 200), fact("pregnancy", 200, active=True)):
        ended = (pregnancy, status(NOT_PREGNANT, 20))
        assert assess(patient(30, MYALGIA, taken_in_it, *ended), knowledge, TODAY).outcome == "no-sign"
        assert assess(patient(30, MYALGIA, HB_11_5, *ended), knowledge, TODAY).fires  # taken after it ended
    # a pregnancy Condition nobody closed is not stretched to a "Not pregnant" years later: 300 days at most
    stale = (fact("pregnancy", 700, active=True), status(NOT_PREGNANT, 20))
    assert assess(patient(30, MYALGIA, taken_in_it, *stale), knowledge, TODAY).fires


def test_a_low_total_b12_taken_after_a_pregnant_status_asks_for_active_b12(knowledge: Knowledge) -> None:
    low = fact("b12-result", 20, "Observation", value=150.0, unit="pg/mL")
    a = assess(patient(30, MYALGIA, FATIGUE, low, status(PREGNANT, 90)), knowledge, TODAY)
    assert (a.variant, a.low_in_pregnancy) == ("test-active-b12", True)
    # a "Not pregnant" since: no current pregnancy, so the low result reads as an untreated deficiency,
    # as it does after a pregnancy Condition resolved since (only a current pregnancy discounts it)
    ended = assess(patient(30, MYALGIA, FATIGUE, low, status(PREGNANT, 90), status(NOT_PREGNANT, 10)), knowledge, TODAY)
    assert (ended.variant, ended.low_in_pregnancy) == ("untreated-low", False)


def test_b12_replacement_not_yet_begun_is_no_therapy(knowledge: Knowledge) -> None:
    """An order whose dosing starts next week: a baseline level is what it needs (a day's slack)."""
    next_week = replace(med("b12-therapy", 3, "active"), starts=TODAY + timedelta(days=7))
    a = assess(patient(50, MYALGIA, FATIGUE, next_week), knowledge, TODAY)
    assert a.fires and not a.past_therapy and a.earlier_therapy is None
    tomorrow = replace(next_week, starts=TODAY + timedelta(days=1))
    assert assess(patient(50, MYALGIA, FATIGUE, tomorrow), knowledge, TODAY).outcome == "suppressed:on-b12-therapy"
    begun = replace(next_week, starts=ago(3))
    assert assess(patient(50, MYALGIA, FATIGUE, begun), knowledge, TODAY).outcome == "suppressed:on-b12-therapy"


@pytest.mark.parametrize(("ended", "counted"), [(None, True), (-30, True), (2 * 365, False), (300, False), (1, False)])
def test_an_active_medicine_past_its_recorded_end_is_no_current_use(
        knowledge: Knowledge, ended: int | None, counted: bool) -> None:
    """An "active" metformin whose recorded end passed is a past course: counted only inside the
    grace window, and then only after six months' use (a course that lasted a day is not long-term)."""
    started = 3 * 365 if ended != 1 else 2
    metformin = replace(med("metformin", started, "active"), until=None if ended is None else ago(ended))
    a = assess(patient(50, MYALGIA, FATIGUE, metformin), knowledge, TODAY)
    assert ("metformin" in {e.id for e in a.risk_factors}) is counted


def test_a_long_course_that_ended_inside_the_grace_window_is_current_use(knowledge: Knowledge) -> None:
    """Twenty 90-day metformin orders, all completed, the last ten days ago: still a metformin user."""
    fills = [replace(med("metformin", 100 + 90 * i, "completed"), until=ago(10 + 90 * i)) for i in range(20)]
    a = assess(patient(50, MYALGIA, FATIGUE, *fills), knowledge, TODAY)
    (metformin,) = a.risk_factors
    assert (metformin.since, metformin.ended, a.indicator) == (ago(100 + 90 * 19), ago(10), Indicator.WARNING)
    grace = knowledge.rule.record_status.current_use_grace_days
    lapsed = [replace(f, until=f.until - timedelta(days=grace)) for f in fills if f.until is not None]
    assert not assess(patient(50, MYALGIA, FATIGUE, *lapsed), knowledge, TODAY).risk_factors
    short = replace(med("metformin", 40, "completed"), until=ago(10))  # a month's trial is not long-term use
    assert not assess(patient(50, MYALGIA, FATIGUE, short), knowledge, TODAY).risk_factors


def test_a_statin_that_ended_is_no_confounder(knowledge: Knowledge) -> None:
    ended = replace(med("statin", 4 * 365, "active"), until=ago(2 * 365))
    assert not assess(patient(50, MYALGIA, FATIGUE, ended), knowledge, TODAY).confounders
    later = replace(ended, starts=TODAY + timedelta(days=14), until=None)  # not begun: no aches from it yet
    assert not assess(patient(50, MYALGIA, FATIGUE, later), knowledge, TODAY).confounders


@pytest.mark.parametrize(("old", "new", "note"), [
    ("atorvastatin 10 MG Oral Tablet", "atorvastatin 40 MG Oral Tablet [Lipitor]", "Dose raised 16 days before"),
    ("Atorvastatin 40 mg tablet", "Atorvastatin 20 mg tablet", None),  # lowered
    ("Atorvastatin 10 mg tablet", "Atorvastatin 10 mg tablet", None),  # renewed
    ("Simvastatin 20 mg tablet", "Rosuvastatin 40 mg tablet", None),  # a switch: no raise of one statin
    ("Atorvastatin tablet", "Atorvastatin 40 mg tablet", None),  # no strength to compare
])
def test_a_statin_dose_raised_recently_is_a_recent_start(knowledge: Knowledge, old: str, new: str, note: str | None) -> None:
    """A dose change stops the old order and starts a new one: the course runs on, the raise is news."""
    raised = replace(med("statin", 21, "active"), text=new)
    before = replace(med("statin", 3 * 365, "stopped"), text=old, until=ago(21))
    pf = patient(50, replace(MYALGIA, when=ago(5)), FATIGUE, raised)
    pf.renewals["statin"] = [before]
    (statin,) = assess(pf, knowledge, TODAY).confounders
    assert statin.note.startswith(note) if note else not statin.note.startswith(("Dose", "Started"))


def _pernicious(verification: str | None = None) -> Fact:
    """Pernicious anaemia on record, as the concepts read it: an established deficiency and a risk factor."""
    return replace(fact("established-b12-deficiency", 2000, active=True), verification=verification)


def test_a_deficiency_diagnosed_and_untreated_asks_for_treatment_review(knowledge: Knowledge) -> None:
    a = assess(patient(50, MYALGIA, FATIGUE, _pernicious()), knowledge, TODAY)
    assert (a.outcome, a.variant, a.indicator) == ("card", "diagnosed-deficiency", Indicator.WARNING)
    assert a.diagnosis is not None and a.diagnosis.concept == "established-b12-deficiency"
    assert a.earlier_therapy is None
    stopped = med("b12-therapy", 400, "completed")
    lapsed = assess(patient(50, MYALGIA, FATIGUE, _pernicious(), stopped), knowledge, TODAY)
    assert (lapsed.variant, lapsed.earlier_therapy) == ("diagnosed-deficiency", stopped)
    numb = fact("paresthesia", 5)
    assert assess(patient(50, MYALGIA, numb, _pernicious()), knowledge, TODAY).indicator == Indicator.CRITICAL


@pytest.mark.parametrize("why", ["suspected", "therapy not sent", "no sign", "on replacement"])
def test_a_diagnosis_asks_for_no_treatment_review_when(knowledge: Knowledge, why: str) -> None:
    """Only suspected: a level confirms it. Replacement not sent: 'none current' cannot be claimed, so a
    test is asked for as before. No sign: no card, as for any risk factor. On replacement: silent."""
    facts = patient(50, MYALGIA, FATIGUE, _pernicious("provisional" if why == "suspected" else None))
    if why == "therapy not sent":
        facts.unchecked = frozenset({"therapy"})
    if why == "no sign":
        facts.by_concept.pop("fatigue")
    if why == "on replacement":
        facts.by_concept["b12-therapy"].append(med("b12-therapy", 30, "active"))
    a = assess(facts, knowledge, TODAY)
    expected = {"suspected": ("card", "test-b12"), "therapy not sent": ("card", "test-b12"), "no sign": ("no-sign", None),
                "on replacement": ("suppressed:on-b12-therapy", None)}[why]
    assert (a.outcome, a.variant) == expected


def test_an_undated_diagnosis_of_deficiency_counts_as_one_of_any_date(knowledge: Knowledge) -> None:
    undated = replace(fact("established-b12-deficiency", None, active=True), verification=None)
    a = assess(patient(50, MYALGIA, FATIGUE, undated), knowledge, TODAY)
    assert (a.variant, a.diagnosis) == ("diagnosed-deficiency", undated)


@pytest.mark.parametrize(("sign", "indicator"), [(FATIGUE, Indicator.WARNING), (fact("paresthesia", 5), Indicator.CRITICAL)])
def test_kidney_failure_lowers_a_raised_mma_review_unless_a_sign_asks_for_haste(
    knowledge: Knowledge, sign: Fact, indicator: Indicator
) -> None:
    """Kidney failure raises MMA whatever the B12, so the review it rests on is a warning; a
    neurological sign still makes it critical, as it does before the MMA is back."""
    ckd = fact("advanced-kidney-disease", 700, active=True)
    b12 = fact("b12-result", 120, "Observation", value=250.0, unit="pg/mL")
    mma = fact("mma", 90, "Observation", value=0.62, unit="umol/L")
    a = assess(patient(64, MYALGIA, sign, ckd, b12, mma), knowledge, TODAY)
    assert (a.variant, a.indicator) == ("untreated-mma", indicator)
    assert "advanced-kidney-disease" in {c.id for c in a.confounders}


def _mma(value: float, limit: float | None, flags: frozenset[str] = frozenset(), comparator: str | None = None) -> Fact:
    return replace(fact("mma", 20, "Observation", value=value, unit="umol/L"), upper_limit=limit, flags=flags,
                   comparator=comparator)


@pytest.mark.parametrize(("mma", "outcome", "shown"), [
    (_mma(0.40, 0.318), "card", "limit"),                            # above the lab's own limit: raised
    (_mma(0.40, 0.318, frozenset({"N"})), "card", "limit"),          # the range decides, not the flag
    (_mma(0.318, 0.318), "suppressed:normal-follow-up", None),       # at the limit is not above it
    (_mma(0.40, 0.45, frozenset({"H"})), "suppressed:normal-follow-up", None),  # inside a usable range: the flag does not decide
    (_mma(0.48, 0.55), "suppressed:normal-follow-up", None),         # a plausible limit above 0.45 decides too
    (_mma(0.40, None, frozenset({"H"})), "card", "flag"),            # flagged high, no range
    (_mma(0.40, None, frozenset({"HH"})), "card", "flag"),
    (_mma(0.40, None, frozenset({"N"})), "suppressed:normal-follow-up", None),
    (_mma(0.40, None, frozenset({"L"})), "suppressed:normal-follow-up", None),
    (_mma(0.40, None), "suppressed:normal-follow-up", None),         # neither: 0.45 stands
    (_mma(0.30, 0.05), "suppressed:normal-follow-up", None),         # a limit no MMA has: not believed
    (_mma(0.30, 318.0), "suppressed:normal-follow-up", None),        # a range in nmol/L sent unlabelled
    (_mma(0.50, 0.8), "card", "threshold"),                          # too high to believe: 0.45 stands
    (_mma(0.30, 0.05, frozenset({"H"})), "card", "flag"),            # no usable range: the lab's flag
    (_mma(0.5, 0.318, comparator="<"), "card", "test-mma"),          # censored across the lab's limit: no answer
], ids=["above-limit", "above-limit-flagged-normal", "at-limit", "inside-range-flagged-high", "limit-above-0.45",
        "flagged-high", "flagged-critically-high", "flagged-normal", "flagged-low", "neither", "limit-too-low",
        "limit-in-another-unit", "limit-too-high", "implausible-limit-flagged-high", "censored-across-limit"])
def test_an_mma_is_raised_by_the_labs_own_limit_or_flag_wherever_it_is_judged(
    knowledge: Knowledge, mma: Fact, outcome: str, shown: str | None
) -> None:
    """The reviewer's case: 0.40 µmol/L against a lab's 0.318 read as not raised (the rule's 0.45),
    and the card went silent on a deficiency. The follow-up to an indeterminate B12 and the lab sign
    read it alike."""
    b12 = fact("b12-result", 40, "Observation", value=250.0, unit="pg/mL")
    a = assess(patient(64, MYALGIA, fact("paresthesia", 5), b12, mma), knowledge, TODAY)
    assert a.outcome == outcome
    if shown == "test-mma":
        assert a.variant == "test-mma"
        return
    if outcome == "card":
        assert (a.variant, a.indicator) == ("untreated-mma", Indicator.CRITICAL)
        [ev] = [s for s in a.signs if s.id == "raised-mma"]
        assert (ev.lab_limit is not None, ev.flagged_high, ev.threshold) == {
            "limit": (True, False, mma.upper_limit), "flag": (False, True, None), "threshold": (False, False, 0.45)}[shown or ""]


@pytest.mark.parametrize(("picture", "mma", "variant"), [
    ("nitrous-oxide", _mma(0.40, 0.318), "untreated-raised-mma-after-nitrous-oxide"),
    ("nitrous-oxide", _mma(0.40, None, frozenset({"H"})), "untreated-raised-mma-after-nitrous-oxide"),
    ("nitrous-oxide", _mma(0.40, 0.45), None),
    ("paresthesia", _mma(0.40, 0.318), "untreated-raised-mma"),
    ("paresthesia", _mma(0.40, None, frozenset({"HU"})), "untreated-raised-mma"),
    ("paresthesia", _mma(0.40, 0.45), None),
], ids=["n2o-above-limit", "n2o-flagged", "n2o-inside-range", "discordant-above-limit", "discordant-flagged",
        "discordant-inside-range"])
def test_an_mma_read_by_the_labs_own_limit_answers_a_normal_b12_that_misleads(
    knowledge: Knowledge, picture: str, mma: Fact, variant: str | None
) -> None:
    b12 = fact("b12-result", 30, "Observation", value=420.0, unit="pg/mL")
    a = assess(patient(40, MYALGIA, FATIGUE, fact(picture, 10, active=True), b12, mma), knowledge, TODAY)
    assert a.variant == variant
    if variant is None:
        assert a.outcome == "suppressed:recent-result"


@pytest.mark.parametrize(("value", "limit", "flags", "sign"), [
    (14.0, 11.4, frozenset({"H"}), True),   # above the lab's limit, under the rule's 15
    (14.0, 15.0, frozenset(), False),
    (11.4, 11.4, frozenset(), False),       # at the limit is not above it
    (16.0, 20.0, frozenset(), False),       # a plausible limit above 15 decides too
    (13.0, None, frozenset({"H"}), True),   # flagged high, no range
    (13.0, None, frozenset(), False),       # neither: 15 stands
    (9.0, 5.0, frozenset(), False),         # a limit no adult range has: not believed
    (16.0, 25.0, frozenset(), True),        # nor one past any normal range: 15 stands
], ids=["above-limit", "inside-range", "at-limit", "limit-above-15", "flagged-high", "neither", "limit-too-low",
        "limit-too-high"])
def test_homocysteine_is_a_sign_by_the_labs_own_limit_or_flag(
    knowledge: Knowledge, value: float, limit: float | None, flags: frozenset[str], sign: bool
) -> None:
    homocysteine = replace(fact("homocysteine", 30, "Observation", value=value, unit="umol/L"), upper_limit=limit, flags=flags)
    a = assess(patient(50, MYALGIA, homocysteine), knowledge, TODAY)
    assert ("raised-homocysteine" in {s.id for s in a.signs}) is sign
    assert a.outcome == ("card" if sign else "no-sign")


# --------------------------------------------------------------------------- dates a rule reads, unit by unit


def test_record_on_keeps_what_was_dated_by_that_day_and_what_is_undated() -> None:
    from cds_service.assessment import record_on

    early, late, undated = fact("paresthesia", 100), fact("paresthesia", 10), fact("fatigue", None)
    then = record_on(patient(70, early, late, undated), ago(60))
    assert then.of("paresthesia") == [early] and then.of("fatigue") == [undated]


def test_started_after_ignores_the_records_it_is_told_to() -> None:
    from cds_service.evidence import Evidence

    entered = fact("known-b12-deficiency", 10)
    old = fact("known-b12-deficiency", 400)
    evidence = Evidence("known-b12-deficiency", "Earlier diagnosis of B12 deficiency", (entered, old))
    assert evidence.started_after(ago(150))
    assert not evidence.started_after(ago(150), ignoring={id(entered)})


@pytest.mark.parametrize(("written", "due", "lapsed"), [
    (200, -7, False),     # written long ago, due next week: pending
    (200, -700, True),    # due two years ahead: too far to count
    (None, -700, True),   # dated only by a due day two years ahead
    (200, 10, False),     # due inside the window
    (400, 300, True),     # written and due long ago
    (10, None, False),    # written recently, no due day
    (10, -200, True),     # written last week for next year: nothing pending now
    (None, None, False),  # undated: never lapses
])
def test_an_order_is_pending_when_written_or_due_near_today(knowledge: Knowledge, written: int | None, due: int | None,
                                                             lapsed: bool) -> None:
    from cds_service.courses import is_lapsed

    order = replace(fact("b12-order", written, "ServiceRequest"), starts=ago(due) if due is not None else None)
    assert is_lapsed(order, knowledge, TODAY) is lapsed
