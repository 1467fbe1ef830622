"""The rule at ordering, alone: patient facts and draft orders in, an order assessment out, today fixed."""

from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.draft_orders import DraftOrders, draft_medications, draft_resources, read_drafts, selected_only
from cds_service.facts import Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.order_rules import OrderAssessment, assess_order_select, assess_order_sign
from cds_service.protocol import Indicator

TODAY = date(2026, 11, 25)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def fact(concept: str, days: int | None, rtype: str = "Condition", active: bool = False,
         value: float | None = None, unit: str | None = None, rid: str | None = None,
         status: str | None = None) -> Fact:
    when = ago(days) if days is not None else None
    return Fact(concept, rtype, rid or f"{concept}-1", concept, when, active, "code", value, unit, status)


def patient(age: int, *facts: Fact, sex: str = "female") -> PatientFacts:
    pf = PatientFacts(birth_date=date(TODAY.year - age, 1, 1), sex=sex)
    for f in facts:
        pf.by_concept[f.concept].append(f)
    return pf


ORDER_TYPES = {"analgesic": "MedicationRequest", "muscle-relaxant": "MedicationRequest",
               "b12-therapy": "MedicationRequest", "muscle-lab": "ServiceRequest",
               "muscle-referral": "ServiceRequest", "b12-order": "ServiceRequest",
               "b12-level-order": "ServiceRequest", "mma-order": "ServiceRequest",
               "holotc-order": "ServiceRequest"}


def ordered(concept: str, rid: str | None = None) -> Fact:
    """A draft order naming `concept`, as read_drafts records it (dated today, active)."""
    return Fact(concept, ORDER_TYPES[concept], rid or f"draft-{concept}", concept, TODAY, True, "code")


def drafts(*orders: Fact, reasons: tuple[Fact, ...] = ()) -> DraftOrders:
    d = DraftOrders(reasons=list(reasons))
    for f in orders:
        d.by_concept[f.concept].append(f)
        if f.reference:
            d.references.add(f.reference)
    return d


def select(facts: PatientFacts, selected: DraftOrders, k: Knowledge, others: tuple[Fact, ...] = ()) -> OrderAssessment:
    """order-select where `selected` is chosen from a draft that also holds `others`."""
    every = drafts(*(f for fs in selected.by_concept.values() for f in fs), *others, reasons=tuple(selected.reasons))
    return assess_order_select(facts, selected, every, k, TODAY)


MYALGIA = fact("myalgia", 5, active=True)
FATIGUE = fact("fatigue", 5, active=True)
PATTERN_40 = patient(40, MYALGIA, FATIGUE)  # the pattern, no risk factor: info
PATTERN_70 = patient(70, MYALGIA, FATIGUE)  # the pattern with a risk factor (age): warning
MUSCLE_ORDERS = ["analgesic", "muscle-relaxant", "muscle-lab", "muscle-referral"]


# order-select: an order for the muscle complaint


@pytest.mark.parametrize("concept", MUSCLE_ORDERS)
def test_muscle_order_for_a_patient_with_the_pattern_shows_the_card(knowledge: Knowledge, concept: str) -> None:
    order = ordered(concept)
    a = select(PATTERN_70, drafts(order), knowledge)
    assert a.outcome == "card" and a.card == "pattern" and a.fires
    assert a.indicator == Indicator.WARNING
    assert a.ordered == (order,)
    assert a.pattern is not None and a.variant == a.pattern.variant == "test-b12"


def test_pattern_card_carries_the_patient_view_indicator(knowledge: Knowledge) -> None:
    a = select(PATTERN_40, drafts(ordered("analgesic")), knowledge)
    assert a.card == "pattern" and a.indicator == Indicator.INFO
    assert a.criteria[:2] == ["outcome:card", "ordered:analgesic"]
    assert "trigger:myalgia" in a.criteria and "sign:fatigue" in a.criteria


@pytest.mark.parametrize("concept", MUSCLE_ORDERS)
def test_muscle_order_without_the_pattern_is_silent(knowledge: Knowledge, concept: str) -> None:
    no_sign = select(patient(70, MYALGIA), drafts(ordered(concept)), knowledge)
    assert no_sign.outcome == "pattern:no-sign" and not no_sign.fires
    no_complaint = select(patient(70, FATIGUE), drafts(ordered(concept)), knowledge)
    assert no_complaint.outcome == "pattern:no-trigger" and not no_complaint.fires
    assert no_complaint.pattern is not None and no_complaint.ordered[0].concept == concept


def test_pattern_suppressed_by_a_recent_result_stays_silent_at_ordering(knowledge: Knowledge) -> None:
    recent = fact("b12-result", 10, "Observation", value=600.0, unit="pg/mL")
    a = select(patient(70, MYALGIA, FATIGUE, recent), drafts(ordered("muscle-relaxant")), knowledge)
    assert a.outcome == "pattern:suppressed:recent-result" and not a.fires


@pytest.mark.parametrize(("offset", "outcome"), [
    (-1, "pattern:suppressed:recent-result"), (0, "pattern:suppressed:recent-result"), (1, "card"),
], ids=["day-before-boundary", "boundary-day", "day-after-boundary"])
def test_select_recent_result_window_boundary(knowledge: Knowledge, offset: int, outcome: str) -> None:
    window = knowledge.rule.suppressors.recent_result_days
    unbanded = fact("b12-result", window + offset, "Observation")  # a result with no readable value
    a = select(patient(70, MYALGIA, FATIGUE, unbanded), drafts(ordered("analgesic")), knowledge)
    assert a.outcome == outcome
    if a.fires:
        assert a.variant == "test-b12"


@pytest.mark.parametrize("days_ago", [1, 30, 200])
def test_select_indeterminate_result_asks_for_mma_inside_the_window_too(knowledge: Knowledge, days_ago: int) -> None:
    """The re-test window holds back a repeat B12, not the MMA NG239 advises after an indeterminate one."""
    indeterminate = fact("b12-result", days_ago, "Observation", value=250.0, unit="pg/mL")
    a = select(patient(70, MYALGIA, FATIGUE, indeterminate), drafts(ordered("analgesic")), knowledge)
    assert a.fires and a.variant == "test-mma"


def test_myalgia_named_as_the_orders_reason_counts_as_the_complaint(knowledge: Knowledge) -> None:
    facts = patient(70, FATIGUE)
    reason = Fact("myalgia", "MedicationRequest", "draft-analgesic", "Muscle aches", TODAY, True, "code")
    a = select(facts, drafts(ordered("analgesic"), reasons=(reason,)), knowledge)
    assert a.card == "pattern" and a.indicator == Indicator.WARNING
    assert facts.of("myalgia") == []  # the patient's own facts are not changed


def test_draft_already_holding_a_b12_test_is_silent(knowledge: Knowledge) -> None:
    in_selection = select(PATTERN_70, drafts(ordered("analgesic"), ordered("b12-order")), knowledge)
    elsewhere_in_draft = select(PATTERN_70, drafts(ordered("analgesic")), knowledge, others=(ordered("b12-order"),))
    assert in_selection.outcome == elsewhere_in_draft.outcome == "draft-has-b12-test"
    assert not in_selection.fires and not elsewhere_in_draft.fires


def test_unrelated_selection_is_silent(knowledge: Knowledge) -> None:
    statin = Fact("statin", "MedicationRequest", "draft-statin", "Atorvastatin", TODAY, True, "code")
    a = select(PATTERN_70, drafts(statin), knowledge)
    assert a.outcome == "unrelated-order" and not a.fires and a.pattern is None


def test_empty_draft_is_silent(knowledge: Knowledge) -> None:
    a = assess_order_select(PATTERN_70, DraftOrders(), DraftOrders(), knowledge, TODAY)
    assert a.outcome == "unrelated-order" and not a.fires


# order-select: a B12 product


def test_b12_product_with_no_level_on_file_says_measure_before_treating(knowledge: Knowledge) -> None:
    product = ordered("b12-therapy")
    a = select(patient(50), drafts(product), knowledge)
    assert a.outcome == "card" and a.card == "measure-before-treat" and a.variant == "measure-before-treat"
    assert a.indicator == Indicator.WARNING and a.ordered == (product,) and a.pattern is None


@pytest.mark.parametrize(("pregnancy", "card"), [
    (fact("pregnancy", 90, active=True), "measure-active-before-treat"),
    (fact("pregnancy", 400), "measure-before-treat"),  # ended long ago: no longer current
    (None, "measure-before-treat"),
], ids=["pregnant", "pregnancy-over", "not-pregnant"])
def test_b12_product_in_pregnancy_asks_for_an_active_b12_sample(
    knowledge: Knowledge, pregnancy: Fact | None, card: str
) -> None:
    a = select(patient(30, *([pregnancy] if pregnancy else [])), drafts(ordered("b12-therapy")), knowledge)
    assert a.card == card and a.indicator == Indicator.WARNING
    order = knowledge.wording.variants[card].order  # type: ignore[index]
    assert order is not None and order.code == ("72160-5" if card == "measure-active-before-treat" else "2132-9")


@pytest.mark.parametrize("level", [
    fact("b12-result", 30, "Observation", value=410.0, unit="pg/mL"),
    fact("holotc-result", 30, "Observation", value=70.0, unit="pmol/L"),
    fact("b12-result", 30, "Observation", value=None, unit="mg/dL"),
], ids=["b12-recent", "active-b12", "b12-unknown-unit"])
def test_b12_product_with_a_level_on_file_is_silent(knowledge: Knowledge, level: Fact) -> None:
    a = select(patient(50, level), drafts(ordered("b12-therapy")), knowledge)
    assert a.outcome == "b12-level-on-file" and not a.fires


@pytest.mark.parametrize(("days_ago", "fires"), [(-1, False), (0, False), (1, True)])
def test_b12_level_counts_as_on_file_only_inside_its_window(knowledge: Knowledge, days_ago: int, fires: bool) -> None:
    """A level older than orders.levelOnFileDays does not show the current state: measure again."""
    days = knowledge.rule.orders.level_on_file_days + days_ago
    level = fact("b12-result", days, "Observation", value=410.0, unit="pg/mL")
    a = select(patient(50, level), drafts(ordered("b12-therapy")), knowledge)
    assert a.fires is fires
    assert a.outcome == ("card" if fires else "b12-level-on-file")


@pytest.mark.parametrize("diagnosis", ["established-b12-deficiency"])
def test_b12_product_when_the_deficiency_is_already_diagnosed_is_silent(knowledge: Knowledge, diagnosis: str) -> None:
    """The product restarts or continues a treatment: a level taken now answers nothing the diagnosis has not."""
    diagnosed = fact(diagnosis, 2000, "Condition")
    a = select(patient(50, diagnosed), drafts(ordered("b12-therapy")), knowledge)
    assert a.outcome == "deficiency-on-record" and not a.fires
    for unrelated in ("malabsorption-autoimmune", "b12-deficiency-diagnosis"):  # coeliac disease; E53.8 (any B vitamin)
        assert select(patient(50, fact(unrelated, 2000, "Condition")), drafts(ordered("b12-therapy")), knowledge).fires


def test_b12_product_for_a_patient_already_on_b12_is_silent(knowledge: Knowledge) -> None:
    on_b12 = fact("b12-therapy", 200, "MedicationStatement", active=True)
    a = select(patient(50, on_b12), drafts(ordered("b12-therapy")), knowledge)
    assert a.outcome == "already-on-b12-therapy" and not a.fires


def test_b12_product_while_a_b12_test_is_pending_is_silent(knowledge: Knowledge) -> None:
    pending = fact("b12-order", 3, "ServiceRequest", active=True, rid="sr-1", status="active")
    a = select(patient(50, pending), drafts(ordered("b12-therapy")), knowledge)
    assert a.outcome == "b12-test-pending" and not a.fires


@pytest.mark.parametrize(("days", "outcome"), [(179, "b12-test-pending"), (181, "card"), (None, "b12-test-pending")],
                         ids=["inside-window", "lapsed", "undated"])
def test_b12_product_beside_an_old_open_b12_test(knowledge: Knowledge, days: int | None, outcome: str) -> None:
    """An open order counts as pending for pendingOrderDays (180); an undated one always does."""
    assert knowledge.rule.suppressors.pending_order_days == 180
    old = fact("b12-order", days, "ServiceRequest", active=True, rid="sr-1", status="active")
    assert select(patient(50, old), drafts(ordered("b12-therapy")), knowledge).outcome == outcome


def test_b12_product_with_a_b12_test_in_the_same_draft_is_silent(knowledge: Knowledge) -> None:
    a = select(patient(50), drafts(ordered("b12-therapy")), knowledge, others=(ordered("b12-order"),))
    assert a.outcome == "draft-has-b12-test" and not a.fires


def test_b12_product_after_a_recent_b12_injection_is_silent(knowledge: Knowledge) -> None:
    injected = fact("b12-therapy", 10, "MedicationAdministration", status="completed")
    a = select(patient(50, injected), drafts(ordered("b12-therapy")), knowledge)
    assert a.outcome == "already-on-b12-therapy" and not a.fires


@pytest.mark.parametrize(("doses", "outcome"), [
    ((100, 190, 280), "already-on-b12-therapy"),  # maintenance, next dose overdue
    ((100,), "card"),  # one dose 100 days ago: outside the 90-day window, no series
    ((200, 290), "card"),  # a series that stopped over 180 days ago
    ((150, 500), "card"),  # only one dose inside the 365-day window
    ((149, 150), "card"),  # two doses a day apart: one stay or a loading course, not a series
])
def test_b12_product_after_an_injection_series(knowledge: Knowledge, doses: tuple[int, ...], outcome: str) -> None:
    given = [fact("b12-therapy", d, "MedicationAdministration", rid=f"adm-{d}", status="completed") for d in doses]
    assert select(patient(50, *given), drafts(ordered("b12-therapy")), knowledge).outcome == outcome


# order-select with drafts read from real codes: the value sets reach the rule


def med_draft(rid: str, code: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p"}, "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]}}


def service_draft(rid: str, system: str, code: str) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/p"}, "code": {"coding": [{"system": system, "code": code}]}}


@pytest.mark.parametrize("raw", [
    med_draft("ibuprofen", "5640"),
    med_draft("naproxen", "198014"),
    med_draft("cyclobenzaprine", "21949"),
    service_draft("ck", LOINC, "2157-6"),
    service_draft("esr", LOINC, "4537-7"),
    service_draft("crp", LOINC, "1988-5"),
    service_draft("physio", SNOMED, "306170007"),
    service_draft("rheumatology", SNOMED, "306290009"),
], ids=lambda raw: raw["id"])
def test_coded_muscle_orders_show_the_card(knowledge: Knowledge, raw: dict[str, Any]) -> None:
    d = read_drafts([raw], knowledge, TODAY)
    a = assess_order_select(PATTERN_70, d, d, knowledge, TODAY)
    assert a.card == "pattern" and [f.resource_id for f in a.ordered] == [raw["id"]]


LOCAL_LAB = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.31"  # an EHR's own lab codes


def local_draft(rid: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": LOCAL_LAB, "code": "LAB123", "display": text}], "text": text}} | extra


@pytest.mark.parametrize(("text", "concepts"), [
    ("Vitamin B12 level", {"b12-order", "b12-level-order"}), ("VITAMIN B12 AND FOLATE", {"b12-order", "b12-level-order", "b12-combined-order"}),
    ("Cyanocobalamin (Vitamin B-12)", {"b12-order", "b12-level-order"}),
    ("Holotranscobalamin (active B12)", {"b12-order", "b12-level-order", "holotc-order"}),
    ("MMA, serum", {"b12-order", "mma-order"}), ("Vitamin B12 injection", {"b12-injection-order"}), ("CK total", {"muscle-lab"}),
    ("Sed Rate", {"muscle-lab"}), ("C reactive protein", {"muscle-lab"}),
    # a hyphen joins two names, not a prefix: 'pre-replacement' is no replacement (diff review)
    ("Vitamin B12 level (pre-replacement)", {"b12-order", "b12-level-order"}),
    ("Vitamin B12 level - post-injection", {"b12-order", "b12-level-order"}),
    ("PT EVAL AND TREAT - VESTIBULAR/BALANCE", set()), ("PHYSIOTHERAPY - VESTIBULAR", set()),
    # a dose or route names a treatment: an injection, not the test its name also reads as (diff review)
    ("Cyanocobalamin (Vitamin B12) 1,000 mcg/mL inj", {"b12-injection-order"}),
    ("Cyanocobalamin (Vitamin B12) 1000 mcg IM monthly", {"b12-injection-order"}),
    ("Vitamin B12 IM", {"b12-injection-order"}), ("Methylmalonic acid mg/L", {"b12-order", "mma-order"}),
])
def test_orders_under_an_ehrs_own_codes_are_read_by_their_name(knowledge: Knowledge, text: str, concepts: set[str]) -> None:
    """Found in review: a locally coded B12 test in the drafts was not seen, and the card added a second one."""
    d = read_drafts([local_draft("draft-1", text)], knowledge, TODAY)
    assert {c for c, fs in d.by_concept.items() if fs} == concepts


def test_a_locally_coded_b12_test_in_the_drafts_silences_the_pattern_card(knowledge: Knowledge) -> None:
    d = read_drafts([med_draft("ibuprofen", "5640"), local_draft("b12", "Vitamin B12 level")], knowledge, TODAY)
    assert assess_order_select(PATTERN_70, d, d, knowledge, TODAY).card is None


@pytest.mark.parametrize("change", [{"doNotPerform": True}, {"status": "entered-in-error"}, {"status": "cancelled"}])
def test_a_draft_not_to_be_done_orders_nothing(knowledge: Knowledge, change: dict[str, Any]) -> None:
    d = read_drafts([med_draft("ibuprofen", "5640") | change], knowledge, TODAY)
    assert assess_order_select(PATTERN_70, d, d, knowledge, TODAY).card is None


def test_a_draft_without_status_or_intent_is_still_read(knowledge: Knowledge) -> None:
    raw = {k: v for k, v in service_draft("b12", LOINC, "2132-9").items() if k not in ("status", "intent")}
    assert [f.resource_id for f in read_drafts([raw], knowledge, TODAY).of(["b12-level-order"])] == ["b12"]


def test_coded_b12_product_without_a_level_says_measure_first(knowledge: Knowledge) -> None:
    d = read_drafts([med_draft("b12", "309593")], knowledge, TODAY)
    assert assess_order_select(patient(50), d, d, knowledge, TODAY).card == "measure-before-treat"


# order-sign


B12_TEST = ordered("b12-level-order", "draft-b12")


def sign(facts: PatientFacts, d: DraftOrders, k: Knowledge) -> OrderAssessment:
    return assess_order_sign(facts, d, k, TODAY)


def test_sign_with_a_recent_result_warns_and_names_the_result(knowledge: Knowledge) -> None:
    result = fact("b12-result", 30, "Observation", value=410.0, unit="pg/mL", rid="obs-1")
    a = sign(patient(60, result), drafts(B12_TEST), knowledge)
    assert a.outcome == "card" and a.card == "duplicate-result" and a.indicator == Indicator.WARNING
    assert a.ordered == (B12_TEST,) and a.earlier == (result,)
    assert (a.earlier[0].value, a.earlier[0].when) == (410.0, ago(30))


@pytest.mark.parametrize(("offset", "warns"), [(-1, True), (0, True), (1, False)],
                         ids=["day-before-boundary", "boundary-day", "day-after-boundary"])
def test_sign_recent_result_window_boundary(knowledge: Knowledge, offset: int, warns: bool) -> None:
    window = knowledge.rule.suppressors.recent_result_days
    result = fact("b12-result", window + offset, "Observation", value=410.0, unit="pg/mL")
    a = sign(patient(60, result), drafts(B12_TEST), knowledge)
    assert a.fires is warns
    assert a.outcome == ("card" if warns else "not-a-duplicate")


def test_sign_active_b12_result_also_counts_newest_first(knowledge: Knowledge) -> None:
    total = fact("b12-result", 40, "Observation", value=410.0, unit="pg/mL")
    active = fact("holotc-result", 20, "Observation", value=70.0, unit="pmol/L")
    a = sign(patient(60, total, active), drafts(B12_TEST), knowledge)
    assert a.card == "duplicate-result" and a.earlier == (active, total)


def test_sign_ignores_an_undated_result(knowledge: Knowledge) -> None:
    undated = fact("b12-result", None, "Observation", value=410.0, unit="pg/mL")
    assert sign(patient(60, undated), drafts(B12_TEST), knowledge).outcome == "not-a-duplicate"


def test_sign_beside_another_pending_b12_order_warns(knowledge: Knowledge) -> None:
    pending = fact("b12-level-order", 5, "ServiceRequest", active=True, rid="sr-1", status="active")
    a = sign(patient(60, pending), drafts(B12_TEST), knowledge)
    assert a.outcome == "card" and a.card == "duplicate-order" and a.indicator == Indicator.WARNING
    assert a.earlier == (pending,) and a.ordered == (B12_TEST,)


@pytest.mark.parametrize(("days", "card"), [(179, "duplicate-order"), (181, None)], ids=["open", "lapsed"])
def test_sign_beside_an_old_open_b12_order(knowledge: Knowledge, days: int, card: str | None) -> None:
    old = fact("b12-level-order", days, "ServiceRequest", active=True, rid="sr-1", status="active")
    assert sign(patient(60, old), drafts(B12_TEST), knowledge).card == card


def test_sign_recent_result_wins_over_pending_order(knowledge: Knowledge) -> None:
    pending = fact("b12-level-order", 5, "ServiceRequest", active=True, rid="sr-1")
    result = fact("b12-result", 30, "Observation", value=410.0, unit="pg/mL")
    assert sign(patient(60, pending, result), drafts(B12_TEST), knowledge).card == "duplicate-result"


def test_sign_the_draft_itself_in_the_record_is_not_a_duplicate(knowledge: Knowledge) -> None:
    itself = fact("b12-level-order", 0, "ServiceRequest", active=True, rid="draft-b12", status="draft")
    a = sign(patient(60, itself), drafts(B12_TEST), knowledge)
    assert a.outcome == "not-a-duplicate" and not a.fires and a.ordered == (B12_TEST,)


def test_sign_b12_test_with_only_an_old_result_is_silent(knowledge: Knowledge) -> None:
    old = fact("b12-result", 730, "Observation", value=410.0, unit="pg/mL")
    assert sign(patient(60, old), drafts(B12_TEST), knowledge).outcome == "not-a-duplicate"


def test_sign_without_a_b12_test_is_silent(knowledge: Knowledge) -> None:
    result = fact("b12-result", 10, "Observation", value=410.0, unit="pg/mL")
    pending = fact("b12-level-order", 5, "ServiceRequest", active=True, rid="sr-1")
    a = sign(patient(60, result, pending), drafts(ordered("analgesic")), knowledge)
    assert a.outcome == "no-b12-test" and not a.fires
    assert sign(patient(60, result), DraftOrders(), knowledge).outcome == "no-b12-test"


def test_sign_mma_after_an_indeterminate_b12_is_not_a_duplicate(knowledge: Knowledge) -> None:
    indeterminate = fact("b12-result", 30, "Observation", value=250.0, unit="pg/mL")
    d = read_drafts([service_draft("draft-mma", LOINC, "13964-2")], knowledge, TODAY)
    assert not sign(patient(60, indeterminate), d, knowledge).fires


def test_sign_two_serum_b12_tests_in_one_draft_warns(knowledge: Knowledge) -> None:
    d = read_drafts([service_draft("b12-mass", LOINC, "2132-9"), service_draft("b12-molar", LOINC, "14685-2")],
                    knowledge, TODAY)
    a = sign(patient(60), d, knowledge)
    assert a.card == "duplicate-in-draft" and a.indicator == Indicator.WARNING
    assert [f.reference for f in a.earlier] == ["ServiceRequest/b12-mass"]
    assert [f.reference for f in a.ordered] == ["ServiceRequest/b12-molar"]  # the one offered for removal


def test_a_future_dated_open_order_is_pending_not_lapsed(knowledge: Knowledge) -> None:
    """An order authored 'tomorrow' (clock skew, or a date entered ahead) is still pending."""
    ahead = fact("b12-level-order", -3, "ServiceRequest", active=True, rid="sr-1", status="active")
    assert sign(patient(60, ahead), drafts(B12_TEST), knowledge).card == "duplicate-order"


def test_selections_pick_drafts_by_reference_and_never_an_unselected_draft_with_an_id() -> None:
    ibuprofen = {"resourceType": "MedicationRequest", "id": "rx-1"}
    no_id = {"resourceType": "MedicationRequest"}
    referral = {"resourceType": "ServiceRequest", "id": "sr-1"}
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in (ibuprofen, no_id, referral)]}
    assert selected_only(bundle, ["MedicationRequest/rx-1"]) == [ibuprofen]
    assert selected_only(bundle, ["MedicationRequest/nope"]) == [no_id]  # only a draft with no id can be it
    assert selected_only(bundle, ["ServiceRequest/nope"]) == []
    # as some clients write them: a full URL, a version, the entry's fullUrl
    assert selected_only(bundle, ["https://ehr.example.org/fhir/MedicationRequest/rx-1"]) == [ibuprofen]
    assert selected_only(bundle, ["MedicationRequest/rx-1/_history/3"]) == [ibuprofen]
    assert selected_only(bundle, ["https://ehr.example.org/fhir/MedicationRequest/new-9"]) == [no_id]
    with_urls = {"resourceType": "Bundle", "entry": [{"fullUrl": "urn:uuid:5b1f", "resource": referral}]}
    assert selected_only(with_urls, ["urn:uuid:5b1f"]) == [referral]
    # a Bundle bent as prefetch Bundles are: no resourceType, one entry as an object
    assert selected_only({"entry": {"resource": ibuprofen}}, ["MedicationRequest/rx-1"]) == [ibuprofen]
    # a bare id, against the hook's Type/id (found in the order review: it selected nothing)
    assert selected_only(bundle, ["rx-1"]) == [ibuprofen]
    assert selected_only(bundle, ["sr-1", "rx-9"]) == [referral]
    odd = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest", "id": ["x"]}},
                                              {"resource": {"resourceType": "MedicationRequest", "id": {"a": 1}}}, {"resource": ibuprofen}]}
    assert selected_only(odd, ["rx-1"]) == [ibuprofen]  # an id that is no string is skipped, not a 500 (diff review)


@pytest.mark.parametrize(("full_url", "reference"), [
    ("https://ehr.example.org/fhir/Medication/med-1", "Medication/med-1"),  # an entry with its id
    (None, "Medication/med-1"),
    ("urn:uuid:6f0c2b1e-9d3a-4c52-8a61-2f1e0b7d9c44", "urn:uuid:6f0c2b1e-9d3a-4c52-8a61-2f1e0b7d9c44"),  # not stored yet
], ids=["full-url", "id", "urn-uuid"])
def test_a_draft_names_its_medicine_by_reference_to_a_medication_in_the_drafts(
    knowledge: Knowledge, full_url: str | None, reference: str
) -> None:
    """Found in EHR-integration review: the reference was resolved only in prefetch, so a B12 product or an
    NSAID ordered from a formulary read as no medicine and the card never came."""
    rx = {k: v for k, v in med_draft("rx-b12", "309593").items() if k != "medicationCodeableConcept"}
    medication = {"resourceType": "Medication", "code": {"coding": [{"system": RXNORM, "code": "309593"}]}}
    if reference.startswith("Medication/"):
        medication["id"] = "med-1"
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": rx | {"medicationReference": {"reference": reference}}},
        {"resource": medication} | ({"fullUrl": full_url} if full_url else {}),
    ]}
    medications = draft_medications(bundle)
    selected = read_drafts(selected_only(bundle, ["MedicationRequest/rx-b12"]), knowledge, TODAY, medications=medications)
    every = read_drafts(draft_resources(bundle), knowledge, TODAY, medications=medications)
    assert assess_order_select(patient(50), selected, every, knowledge, TODAY).card == "measure-before-treat"
    assert read_drafts(selected_only(bundle, ["MedicationRequest/rx-b12"]), knowledge, TODAY).of(["b12-therapy"]) == []


EXTRA: dict[str, tuple[Fact, ...]] = {
    "nothing": (),
    "mma pending": (fact("mma-order", 5, "ServiceRequest", active=True, rid="sr-mma", status="active"),),
    "replacement under way": (fact("b12-therapy", 200, "MedicationRequest", active=True, rid="rx-b12", status="active"),),
}


@pytest.mark.parametrize(("value", "extra", "draft_mma", "next_step"), [
    (250.0, "nothing", False, "mma"),
    (250.0, "nothing", True, None),  # an MMA already in the order being signed
    (250.0, "mma pending", False, None),
    (250.0, "mma registered", False, None),  # a sample at the lab, no result yet
    (120.0, "nothing", False, "treat"),
    (120.0, "replacement under way", False, None),
    (420.0, "nothing", False, None),
])
def test_a_duplicate_says_what_the_earlier_result_calls_for(
    knowledge: Knowledge, value: float, extra: str, draft_mma: bool, next_step: str | None
) -> None:
    result = fact("b12-result", 30, "Observation", value=value, unit="pg/mL", rid="obs-b12")
    signed = drafts(ordered("b12-level-order", "draft-b12"), *([ordered("mma-order", "draft-mma")] if draft_mma else []))
    facts = patient(60, result, *EXTRA.get(extra, ()))
    if extra == "mma registered":
        facts.in_progress.append(fact("mma", 5, "Observation", active=True, rid="obs-mma", status="registered"))
    a = assess_order_sign(facts, signed, knowledge, TODAY)
    assert a.card == "duplicate-result" and a.next_step == next_step



HOLOTC_PENDING = fact("holotc-order", 3, "ServiceRequest", active=True, rid="sr-holo", status="active")
HOLOTC_NORMAL = fact("holotc-result", 25, "Observation", value=80.0, unit="pmol/L", rid="obs-holo")


@pytest.mark.parametrize(("signed", "pregnant_since", "low_taken", "extra", "card", "next_step"), [
    # a low total B12 taken in this pregnancy is no duplicate of the active B12 patient-view asks for
    ("active", 120, 20, (), None, None),
    # a repeat total B12 after it is: the advice is active B12, not treatment
    ("total", 120, 20, (), "duplicate-result", "active-b12"),
    ("total", 120, 20, (HOLOTC_PENDING,), "duplicate-result", None),  # active B12 already ordered
    # an active B12 already measured in this pregnancy decides: a plain duplicate, nothing to advise
    ("active", 120, 20, (HOLOTC_NORMAL,), "duplicate-result", None),
    ("total", 120, 20, (HOLOTC_NORMAL,), "duplicate-result", None),
    # a low total B12 from before the pregnancy is what it always was: a duplicate that calls for treatment
    ("active", 40, 50, (), "duplicate-result", "treat"),
])
def test_a_low_total_b12_taken_in_pregnancy_makes_no_active_b12_test_redundant(
    knowledge: Knowledge, signed: str, pregnant_since: int, low_taken: int, extra: tuple[Fact, ...],
    card: str | None, next_step: str | None,
) -> None:
    low = fact("b12-result", low_taken, "Observation", value=150.0, unit="pg/mL", rid="obs-b12")
    pregnancy = fact("pregnancy", pregnant_since, "Condition", active=True, rid="cond-preg")
    # a holotranscobalamin order matches the level-test concept too, as its codes are in both value sets
    tests = ["holotc-order", "b12-level-order"] if signed == "active" else ["b12-level-order"]
    a = assess_order_sign(patient(30, low, pregnancy, *extra), drafts(*(ordered(c, "draft-b12") for c in tests)),
                          knowledge, TODAY)
    assert (a.card, a.next_step) == (card, next_step)


@pytest.mark.parametrize(("status", "next_step"), [
    ((("pregnancy-status-pregnant", 70),), "active-b12"),
    # a "Not pregnant" status since ends that pregnancy: the low result then calls for treatment
    ((("pregnancy-status-pregnant", 70), ("pregnancy-status-not-pregnant", 5)), "treat"),
], ids=["pregnant-status", "not-pregnant-since"])
def test_order_sign_reads_a_pregnancy_recorded_as_a_status_observation(
    knowledge: Knowledge, status: tuple[tuple[str, int], ...], next_step: str
) -> None:
    low = fact("b12-result", 20, "Observation", value=150.0, unit="pg/mL", rid="obs-b12")
    statuses = [fact(concept, days, "Observation", rid=f"obs-{concept}") for concept, days in status]
    a = assess_order_sign(patient(30, low, *statuses), drafts(ordered("b12-level-order", "draft-b12")), knowledge, TODAY)
    assert (a.card, a.next_step) == ("duplicate-result", next_step)


@pytest.mark.parametrize(("raw", "concept"), [
    # found in the order review: drafts dropped for a missing subject or a harmless bad value
    ({"resourceType": "MedicationRequest", "id": "m1", "medicationCodeableConcept": {"text": "Ibuprofen 400 MG Oral Tablet"}}, "analgesic"),
    ({**service_draft("s1", "http://loinc.org", "2157-6"), "authoredOn": "20261126", "performer": {"reference": "x"}}, "muscle-lab"),
    ({"resourceType": "MedicationOrder", "id": "m2", "medicationCodeableConcept": {"text": "Naproxen 500 MG"}}, "analgesic"),
    # drafts older FHIR servers send (STU3, DSTU2), read as the ServiceRequest they stand for
    ({"resourceType": "ProcedureRequest", "id": "p1", "status": "draft", "intent": "order",
      "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]}}, "muscle-lab"),
    ({"resourceType": "ReferralRequest", "id": "r1", "status": "draft", "intent": "order",
      "serviceRequested": [{"text": "Physiotherapy referral"}]}, "muscle-referral"),
    # 'Patient referral' with the specialty beside it: both read (found in the order review)
    ({"resourceType": "ReferralRequest", "id": "r2", "status": "draft", "intent": "order",
      "serviceRequested": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}],
      "specialty": {"coding": [{"system": "http://snomed.info/sct", "code": "394810000", "display": "Rheumatology"}]}},
     "muscle-referral"),
    ({"resourceType": "DiagnosticOrder", "id": "d1", "status": "draft", "patient": {"reference": "Patient/p"},
      "item": [{"code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]}}]}, "b12-level-order"),
])
def test_drafts_as_clients_send_them_are_read(knowledge: Knowledge, raw: dict[str, Any], concept: str) -> None:
    raw = {k: v for k, v in raw.items() if k != "subject"}
    d = read_drafts([raw], knowledge, TODAY, patient_id="p")
    assert d.of([concept]) and d.skipped == 0


def test_another_patients_draft_is_skipped(knowledge: Knowledge) -> None:
    raw = {**med_draft("m1", "5640"), "subject": {"reference": "Patient/someone-else"}}
    d = read_drafts([raw], knowledge, TODAY, patient_id="p")
    assert not d.of(["analgesic"]) and d.skipped == 1
    assert read_drafts([raw], knowledge, TODAY).of(["analgesic"])  # with no patient in context, as before


def test_a_referral_coded_generically_names_its_service_by_performer_type(knowledge: Knowledge) -> None:
    """'Patient referral' with the specialty in performerType, as referral guides code it (found in the
    order review); a specific code keeps its own reading whatever the performer."""
    generic = {"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}
    rheumatologist = {"coding": [{"system": SNOMED, "code": "45440000", "display": "Rheumatologist"}]}
    raw = {**service_draft("r1", SNOMED, "3457005"), "code": generic, "performerType": rheumatologist}
    assert read_drafts([raw], knowledge, TODAY).of(["muscle-referral"])
    dermatologist = {"coding": [{"system": SNOMED, "code": "18803008", "display": "Dermatologist"}]}
    assert not read_drafts([{**raw, "performerType": dermatologist}], knowledge, TODAY).of(["muscle-referral"])
    ck = {**service_draft("s1", "http://loinc.org", "2157-6"), "performerType": rheumatologist}
    assert not read_drafts([ck], knowledge, TODAY).of(["muscle-referral"])


@pytest.mark.parametrize(("code", "text", "read"), [
    ("3457005", "Referral to rheumatology", True), ("306206005", "Physiotherapy referral", True),
    ("3457005", "Referral to dermatology", False),  # the text names what is referred: not a muscle referral
])
def test_a_referral_coded_generically_is_read_by_its_text(knowledge: Knowledge, code: str, text: str, read: bool) -> None:
    """Found in the order review: 'Patient referral' (a standard code, but naming no service) hid the text."""
    raw = {**service_draft("r1", SNOMED, code), "code": {"coding": [{"system": SNOMED, "code": code}], "text": text}}
    assert bool(read_drafts([raw], knowledge, TODAY).of(["muscle-referral"])) is read
