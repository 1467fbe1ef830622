"""Facts from raw FHIR JSON: what is matched, what counts, which lab result is read, in which unit."""

import itertools
from datetime import date, timedelta
from typing import Any

import pytest

from cds_service.concept_screen import ConceptScreen
from cds_service.facts import PatientFacts, extract_facts
from cds_service.knowledge import Knowledge
from cds_service.lab_results import b12_band, low_flag_believed
from cds_service.patient_data import PatientData, from_prefetch

TODAY = date(2026, 11, 25)
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOCAL = "http://ehr.example.org/problem-list"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_ids = itertools.count(1)


def ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def code(system: str, value: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": value} | ({"display": display} if display else {})
    return {"coding": [coding]}


MYALGIA = code(SNOMED, "68962001", "Myalgia")
B12 = code(LOINC, "2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma")
HB = code(LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood")
MCV = code(LOINC, "787-2", "MCV [Entitic volume] by Automated count")
HOMOCYSTEINE = code(LOINC, "13965-9", "Homocysteine [Moles/volume] in Serum or Plasma")
METFORMIN = code(RXNORM, "861007", "Metformin hydrochloride 500 MG Oral Tablet")


def status(system: str, value: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": value}]}


def condition(concept: dict[str, Any], onset: str | None = None, clinical: str | None = "active",
              verification: str | None = "confirmed", **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"resourceType": "Condition", "id": f"cond-{next(_ids)}",
                           "subject": {"reference": "Patient/p"}, "code": concept, "onsetDateTime": onset or ago(5)}
    if clinical:
        raw["clinicalStatus"] = status(CLINICAL, clinical)
    if verification:
        raw["verificationStatus"] = status(VERIFICATION, verification)
    return raw | extra


def observation(concept: dict[str, Any], when: str | None = None, state: str = "final", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{next(_ids)}", "status": state, "code": concept,
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": when or ago(5)} | extra


def lab(concept: dict[str, Any], value: Any, unit: str, when: str, **extra: Any) -> dict[str, Any]:
    quantity = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return observation(concept, when, valueQuantity=quantity, **extra)


def med_request(state: str = "active", **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"resourceType": "MedicationRequest", "id": f"mr-{next(_ids)}", "status": state,
                           "intent": "order", "subject": {"reference": "Patient/p"}, "authoredOn": ago(400)}
    return raw | ({"medicationCodeableConcept": METFORMIN} if "medicationReference" not in extra else {}) | extra


def facts_of(k: Knowledge, *resources: dict[str, Any], patient: dict[str, Any] | None = None) -> PatientFacts:
    """The resources as one searchset Bundle in prefetch, as an EHR sends them."""
    records = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    return extract_facts(from_prefetch({"patient": patient, "records": records}), k)


def concepts(pf: PatientFacts) -> set[str]:
    return {c for c, fs in pf.by_concept.items() if fs}


# Demographics


def test_birth_date_and_sex_come_from_the_patient(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, patient={"resourceType": "Patient", "id": "p", "birthDate": "1960-04-02", "gender": "male"})
    assert (pf.birth_date, pf.sex) == (date(1960, 4, 2), "male")
    odd = facts_of(knowledge, patient={"resourceType": "Patient", "id": "p", "gender": "M"})
    assert (odd.birth_date, odd.sex) == (None, "unknown")
    assert facts_of(knowledge).sex == "unknown"


# Matching by code and by text


def test_snomed_coded_condition_is_matched_by_code(knowledge: Knowledge) -> None:
    raw = condition(MYALGIA, onset=ago(10))
    [f] = facts_of(knowledge, raw).of("myalgia")
    assert (f.resource_type, f.resource_id, f.matched_by) == ("Condition", raw["id"], "code")
    assert (f.when, f.active, f.status, f.text) == (TODAY - timedelta(days=10), True, "active", "Myalgia")


@pytest.mark.parametrize("icd", ["M79.10", "M7910", "M79.1", "M791", "m79.18", " M79.18 "])
def test_icd10cm_is_matched_with_and_without_the_dot(knowledge: Knowledge, icd: str) -> None:
    pf = facts_of(knowledge, condition(code(ICD10CM, icd)))
    assert [f.matched_by for f in pf.of("myalgia")] == ["code"]


def test_icd10cm_oid_system_is_the_same_system(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, condition(code("urn:oid:2.16.840.1.113883.6.90", "M79.10")))
    assert [f.matched_by for f in pf.of("myalgia")] == ["code"]


@pytest.mark.parametrize("text", ["Aching muscles in both legs", "Muscle pain after gardening", "MYALGIA"])
def test_text_only_record_is_matched_by_its_text(knowledge: Knowledge, text: str) -> None:
    [f] = facts_of(knowledge, condition({"text": text})).of("myalgia")
    assert f.matched_by == "text" and f.text == text


@pytest.mark.parametrize("text", ["Denies muscle aches", "No myalgia", "history of myalgia", "Aches", "Headache"])
def test_negated_or_vague_text_is_not_matched(knowledge: Knowledge, text: str) -> None:
    assert concepts(facts_of(knowledge, condition({"text": text}))) == set()


def test_standard_code_the_rule_does_not_know_is_not_matched_by_its_text(knowledge: Knowledge) -> None:
    unknown_snomed = {"coding": [{"system": SNOMED, "code": "22253000", "display": "Muscle pain"}], "text": "Muscle pain"}
    assert concepts(facts_of(knowledge, condition(unknown_snomed))) == set()
    local_only = {"coding": [{"system": LOCAL, "code": "MP1", "display": "Muscle pain"}], "text": "Muscle pain"}
    assert [f.matched_by for f in facts_of(knowledge, condition(local_only)).of("myalgia")] == ["text"]


@pytest.mark.parametrize(("text", "is_therapy"), [
    ("Hydroxocobalamin 1 MG/ML Injectable Solution", True), ("Cyanocobalamin 1000 MCG Oral Tablet", True),
    ("Multivitamin with cyanocobalamin 6 MCG Oral Tablet", False), ("Vitamin B complex with vitamin B12", False),
    ("Prenatal vitamin (contains cyanocobalamin)", False),
    ("Multivitamin with minerals, iron, zinc, folic acid and vitamin B12", False),
    ("Cyanocobalamin 1 MG / Folic Acid 2.5 MG / Pyridoxine 25 MG Oral Tablet", True),
    ("Vitamin B-12 1000 mcg injection", True), ("B12 injection monthly", True), ("Vit B12 1 mg tablet", True),
])
def test_a_multivitamin_listing_b12_is_not_b12_replacement(knowledge: Knowledge, text: str, is_therapy: bool) -> None:
    raw = med_request(medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "999999", "display": text}]})
    assert bool(facts_of(knowledge, raw).of("b12-therapy")) is is_therapy


MULTIVITAMIN_SCD = ("ascorbic acid 60 MG / biotin 0.03 MG / cyanocobalamin 0.006 MG / folic acid 0.4 MG / "
                    "niacinamide 20 MG / riboflavin 1.7 MG / thiamine 1.5 MG Oral Tablet")


@pytest.mark.parametrize("text", ["Multivitamin tablet daily", "Vitamin B Complex capsule", "Prenatal vitamin"])
def test_a_word_that_makes_a_product_a_multivitamin_in_any_of_its_names_holds_for_all(knowledge: Knowledge, text: str) -> None:
    """EHRs send their own name as the text and RxNorm's ingredient list as the coding's display; the
    word 'multivitamin' in either is the product's, and it is no B12 replacement."""
    product = {"coding": [{"system": RXNORM, "code": "999999", "display": MULTIVITAMIN_SCD}], "text": text}
    assert not facts_of(knowledge, med_request(medicationCodeableConcept=product)).of("b12-therapy")
    statement = {**med_request(medicationCodeableConcept=product), "resourceType": "MedicationStatement"}
    assert not facts_of(knowledge, statement).of("b12-therapy")
    named = {**product, "text": "Cyanocobalamin 1000 MCG Oral Tablet"}  # a B12 product's names still read as B12
    assert facts_of(knowledge, med_request(medicationCodeableConcept=named)).of("b12-therapy")


def test_unknown_medication_code_falls_back_to_the_ingredient_name(knowledge: Knowledge) -> None:
    product = {"coding": [{"system": RXNORM, "code": "999999", "display": "Metformin 1000 MG Oral Tablet"}]}
    [f] = facts_of(knowledge, med_request(medicationCodeableConcept=product)).of("metformin")
    assert f.matched_by == "text"


# Which records count


@pytest.mark.parametrize(("clinical", "verification"), [
    ("active", "entered-in-error"), ("active", "refuted"), ("resolved", "confirmed"),
    ("inactive", "confirmed"), ("remission", "confirmed"), (None, "entered-in-error"),
])
def test_conditions_that_do_not_count(knowledge: Knowledge, clinical: str | None, verification: str) -> None:
    pf = facts_of(knowledge, condition(MYALGIA, clinical=clinical, verification=verification))
    assert concepts(pf) == set() and pf.skipped_invalid == 0


@pytest.mark.parametrize(("clinical", "verification", "counts"), [
    ("Resolved", "Confirmed", False), (" ACTIVE ", "Entered in error", False), ("Active", "confirmed", True),
    ("Active", "Provisional", True), ("Chronic", "Confirmed", True),  # a text no status list names: as no status
])
def test_statuses_sent_as_text_only_are_read_as_their_codes(
    knowledge: Knowledge, clinical: str, verification: str, counts: bool
) -> None:
    """A status with no coding, only text (a local export): its text is the HL7 code when it is one."""
    raw = condition(MYALGIA) | {"clinicalStatus": {"text": clinical}, "verificationStatus": {"text": verification}}
    pf = facts_of(knowledge, raw)
    assert bool(pf.of("myalgia")) is counts and pf.skipped_invalid == 0


@pytest.mark.parametrize(("clinical", "active"), [("active", True), ("recurrence", True), ("relapse", True), (None, False)])
def test_conditions_that_count(knowledge: Knowledge, clinical: str | None, active: bool) -> None:
    [f] = facts_of(knowledge, condition(MYALGIA, clinical=clinical, verification="provisional")).of("myalgia")
    assert f.active is active


@pytest.mark.parametrize("abatement", [{"abatementDateTime": ago(20)}, {"abatementString": "settled"},
                                       {"abatementPeriod": {"start": ago(30), "end": ago(20)}},
                                       {"abatementBoolean": True}])  # DSTU2, STU3
def test_an_abated_condition_without_an_active_status_does_not_count(knowledge: Knowledge, abatement: dict[str, Any]) -> None:
    """FHIR con-4: abatement means inactive, resolved or remission, even when the EHR left the status out."""
    assert concepts(facts_of(knowledge, condition(MYALGIA, ago(30), clinical=None, **abatement))) == set()


@pytest.mark.parametrize(("clinical", "verification", "counted"), [
    ("active", "confirmed", True), ("resolved", "confirmed", False), ("active", "entered-in-error", False),
    ("Remission", None, False), ("relapse", "provisional", True),
])
def test_a_condition_status_written_as_a_bare_code_is_read(
        knowledge: Knowledge, clinical: str, verification: str | None, counted: bool) -> None:
    """Cerner's DSTU2 sandbox and relabelled STU3 exports write "clinicalStatus": "resolved"; before, the
    record failed validation and was skipped (a myalgia marked active lost, a resolved one unread)."""
    raw = condition(MYALGIA, ago(200), clinical=None, verification=None, clinicalStatus=clinical)
    raw |= {"verificationStatus": verification} if verification else {}
    pf = facts_of(knowledge, raw)
    assert bool(pf.of("myalgia")) is counted and pf.skipped_invalid == 0


@pytest.mark.parametrize("junk", [{"abatementDateTime": "unknown"}, {"abatementString": " "}, {"abatementAge": 7},
                                  {"abatementBoolean": False}, {"abatementBoolean": "true"},
                                  {"abatementAge": {"value": "x"}}, {"abatementRange": {"text": "?"}}])
def test_an_abatement_that_cannot_be_read_neither_ends_the_condition_nor_loses_it(knowledge: Knowledge, junk: dict[str, Any]) -> None:
    [f] = facts_of(knowledge, condition(MYALGIA, ago(30), clinical=None, **junk)).of("myalgia")
    assert f.when == TODAY - timedelta(days=30)


@pytest.mark.parametrize("junk", ["N", ["N"], [{"coding": "L"}], {"text": "see comment"}])
def test_a_malformed_interpretation_is_ignored_not_the_result(knowledge: Knowledge, junk: Any) -> None:
    [f] = facts_of(knowledge, lab(B12, 410, "pg/mL", ago(60), interpretation=junk)).of("b12-result")
    assert (f.value, f.flagged_low) == (410, False)


def test_an_abated_condition_marked_recurrence_still_counts(knowledge: Knowledge) -> None:
    [f] = facts_of(knowledge, condition(MYALGIA, ago(30), clinical="recurrence", abatementDateTime=ago(400))).of("myalgia")
    assert f.active


def test_symptom_observation_counts_and_is_not_active(knowledge: Knowledge) -> None:
    [f] = facts_of(knowledge, observation(MYALGIA, ago(3))).of("myalgia")
    assert (f.resource_type, f.when, f.active) == ("Observation", TODAY - timedelta(days=3), False)


@pytest.mark.parametrize("state", ["stopped", "cancelled", "entered-in-error", "draft"])
def test_stopped_cancelled_and_draft_medication_requests_do_not_count(knowledge: Knowledge, state: str) -> None:
    assert facts_of(knowledge, med_request(state)).of("metformin") == []


def test_a_completed_medication_request_is_a_past_course_with_its_end(knowledge: Knowledge) -> None:
    validity = {"validityPeriod": {"start": ago(400), "end": ago(300)}}
    [f] = facts_of(knowledge, med_request("completed", dispenseRequest=validity)).of("metformin")
    assert (f.active, f.status, f.when, f.until) == (False, "completed", TODAY - timedelta(days=400), TODAY - timedelta(days=300))


def bounded(*ends: str | None) -> list[dict[str, Any]]:
    """dosageInstruction as Epic writes it: the course's end in timing.repeat.boundsPeriod."""
    return [{"text": "Take 1 tablet daily", "timing": {"repeat": {"boundsPeriod": {"start": ago(400)} | ({"end": end} if end else {})}}}
            for end in ends]


@pytest.mark.parametrize(("dosages", "until"), [
    (bounded(ago(20) + "T04:59:00Z"), 20),  # Epic: validityPeriod has only its start
    (bounded(ago(60), ago(20)), 20),  # a taper: the last instruction's end
    (bounded(ago(60), None), None),  # one instruction runs on: no end
    ([{"text": "daily"}], None), ("junk", None), ([{"timing": {"repeat": {"boundsPeriod": "x"}}}], None),
])
def test_a_course_end_is_read_from_the_dosage_bounds_when_the_validity_has_none(
        knowledge: Knowledge, dosages: Any, until: int | None) -> None:
    raw = med_request("completed", dispenseRequest={"validityPeriod": {"start": ago(400)}}, dosageInstruction=dosages)
    [f] = facts_of(knowledge, raw).of("metformin")
    assert f.until == (None if until is None else TODAY - timedelta(days=until))


def test_the_validity_end_comes_before_the_dosage_bounds(knowledge: Knowledge) -> None:
    raw = med_request("completed", dispenseRequest={"validityPeriod": {"start": ago(400), "end": ago(100)}},
                      dosageInstruction=bounded(ago(20)))
    [f] = facts_of(knowledge, raw).of("metformin")
    assert f.until == TODAY - timedelta(days=100)


def test_active_and_on_hold_medication_requests_count(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, med_request("active"), med_request("on-hold"))
    assert [f.active for f in pf.of("metformin")] == [True, True]
    assert pf.of("metformin")[0].when == TODAY - timedelta(days=400)


def test_do_not_perform_medication_request_does_not_count(knowledge: Knowledge) -> None:
    assert facts_of(knowledge, med_request(doNotPerform=True)).of("metformin") == []


@pytest.mark.parametrize(("state", "active"), [("active", True), ("intended", None), ("stopped", False),
                                                ("completed", False), ("not-taken", None)])
def test_medication_statement_status(knowledge: Knowledge, state: str, active: bool | None) -> None:
    raw = {"resourceType": "MedicationStatement", "id": "ms-1", "status": state, "subject": {"reference": "Patient/p"},
           "medicationCodeableConcept": METFORMIN, "effectivePeriod": {"start": ago(300)}}
    assert [f.active for f in facts_of(knowledge, raw).of("metformin")] == ([] if active is None else [active])


@pytest.mark.parametrize(("extra", "counted"), [
    ({"taken": "y"}, True), ({"taken": "n"}, False), ({"taken": "unk"}, False), ({"taken": "na"}, False),  # STU3
    ({"wasNotTaken": True}, False), ({"wasNotTaken": False}, True),  # DSTU2
])
def test_a_statement_in_the_older_shape_that_says_the_medicine_is_not_taken_does_not_count(
        knowledge: Knowledge, extra: dict[str, Any], counted: bool) -> None:
    """STU3 MedicationStatement.taken (the HL7 STU3 example medrx002 statement: "taken": "n") and DSTU2's
    wasNotTaken say whether the patient takes it; R4 writes the same as status not-taken or unknown."""
    raw = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active", "subject": {"reference": "Patient/p"},
           "medicationCodeableConcept": METFORMIN, "effectiveDateTime": ago(300)} | extra
    assert bool(facts_of(knowledge, raw).of("metformin")) is counted


@pytest.mark.parametrize(("state", "counted"), [("active", True), ("draft", True), ("completed", False),
                                                 ("revoked", False), ("entered-in-error", False)])
def test_pending_b12_order_status(knowledge: Knowledge, state: str, counted: bool) -> None:
    raw = {"resourceType": "ServiceRequest", "id": "sr-1", "status": state, "intent": "order",
           "subject": {"reference": "Patient/p"}, "code": B12, "authoredOn": ago(3)}
    assert bool(facts_of(knowledge, raw).of("b12-order")) is counted


# Labs: the latest valid result, in the canonical unit


def test_only_the_latest_result_per_lab_is_used(knowledge: Knowledge) -> None:
    older, newer = lab(B12, 500, "pg/mL", ago(200)), lab(B12, 210, "pg/mL", ago(20))
    [f] = facts_of(knowledge, newer, older).of("b12-result")
    assert (f.resource_id, f.value, f.unit) == (newer["id"], 210.0, "pg/mL")
    [again] = facts_of(knowledge, older, newer).of("b12-result")
    assert again.resource_id == newer["id"]


def test_latest_is_chosen_per_lab(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, lab(B12, 500, "pg/mL", ago(200)), lab(HB, 11.0, "g/dL", ago(10)), lab(HB, 14.0, "g/dL", ago(300)))
    assert [f.value for f in pf.of("b12-result")] == [500.0]
    assert [f.value for f in pf.of("hemoglobin")] == [11.0]



def test_the_newest_result_is_chosen_by_instant_not_by_the_text_of_its_date(knowledge: Knowledge) -> None:
    """23:00 at -05:00 is 04:00 UTC the next day: after 02:00Z that day, though its text sorts first."""
    evening = lab(B12, 150, "pg/mL", f"{ago(30)}T23:00:00-05:00")
    night = lab(B12, 410, "pg/mL", f"{ago(29)}T02:00:00Z")
    for order in ((evening, night), (night, evening)):
        [f] = facts_of(knowledge, *order).of("b12-result")
        assert f.resource_id == evening["id"]


@pytest.mark.parametrize(("other_when", "date_only_wins"), [
    ("{d1}T22:00:00-05:00", True),    # the evening before, in the west: the 30th-ago in UTC
    ("{d1}T23:30:00-11:00", True),
    ("{d}T01:00:00+05:00", False),    # the next day, in the east: the day before in UTC
    ("{d}T10:00:00+14:00", False),
])
def test_a_result_sent_as_a_date_sorts_by_that_date_beside_times_in_any_zone(
    knowledge: Knowledge, other_when: str, date_only_wins: bool
) -> None:
    """A date alone is no instant: it is read as its midday in UTC, inside that date in every zone."""
    date_only = lab(B12, 120, "pg/mL", ago(30))
    other = lab(B12, 500, "pg/mL", other_when.format(d1=ago(31), d=ago(29)))
    for order in ((date_only, other), (other, date_only)):
        [f] = facts_of(knowledge, *order).of("b12-result")
        assert (f.resource_id == date_only["id"]) is date_only_wins


@pytest.mark.parametrize("first", [True, False])
def test_on_a_tie_in_time_a_final_result_wins_over_a_preliminary_one(knowledge: Knowledge, first: bool) -> None:
    when = f"{ago(30)}T09:00:00Z"
    interim = lab(B12, 150, "pg/mL", when, status="preliminary")
    final = lab(B12, 410, "pg/mL", f"{ago(30)}T04:00:00-05:00")  # the same instant, written in another zone
    [f] = facts_of(knowledge, *((interim, final) if first else (final, interim))).of("b12-result")
    assert f.resource_id == final["id"]


def test_on_a_tie_in_time_and_status_the_later_issued_result_wins(knowledge: Knowledge) -> None:
    when = f"{ago(30)}T09:00:00Z"
    first = lab(B12, 150, "pg/mL", when, issued=f"{ago(29)}T10:00:00Z")
    corrected = lab(B12, 410, "pg/mL", when, status="corrected", issued=f"{ago(28)}T08:00:00+02:00")
    for order in ((first, corrected), (corrected, first)):
        [f] = facts_of(knowledge, *order).of("b12-result")
        assert f.resource_id == corrected["id"]

@pytest.mark.parametrize(("newest", "skipped"), [
    ({"status": "entered-in-error"}, 0),
    ({"status": "cancelled"}, 0),
    ({"valueQuantity": {"value": "high", "unit": "pg/mL"}}, 1),
    ({"modifierExtension": [{"url": "http://ehr.example.org/not-done", "valueBoolean": True}]}, 1),
], ids=["entered-in-error", "cancelled", "malformed-value", "modifier-extension"])
def test_an_invalid_newest_result_falls_back_to_the_next(knowledge: Knowledge, newest: dict[str, Any], skipped: int) -> None:
    good = lab(B12, 410, "pg/mL", ago(100))
    bad = lab(B12, 150, "pg/mL", ago(5)) | newest
    pf = facts_of(knowledge, bad, good)
    assert [(f.resource_id, f.value) for f in pf.of("b12-result")] == [(good["id"], 410.0)]
    assert pf.skipped_invalid == skipped


def test_preliminary_result_counts(knowledge: Knowledge) -> None:
    [f] = facts_of(knowledge, lab(B12, 410, "pg/mL", ago(5), status="preliminary")).of("b12-result")
    assert f.status == "preliminary"


def test_b12_in_pmol_per_litre_is_converted_to_pg_per_ml(knowledge: Knowledge) -> None:
    units = knowledge.units["b12-result"]
    [f] = facts_of(knowledge, lab(B12, 200, "pmol/L", ago(5))).of("b12-result")
    assert f.unit == units.canonical_unit == "pg/mL"
    assert f.value == pytest.approx(200 * units.factors["pmol/L"])


def test_haemoglobin_in_grams_per_litre_is_converted_to_grams_per_decilitre(knowledge: Knowledge) -> None:
    units = knowledge.units["hemoglobin"]
    [f] = facts_of(knowledge, lab(HB, 118, "g/L", ago(5))).of("hemoglobin")
    assert f.unit == units.canonical_unit == "g/dL"
    assert f.value == pytest.approx(118 * units.factors["g/L"])


@pytest.mark.parametrize(("lab_code", "unit", "factor_of"), [
    (B12, "pg/ml", "pg/mL"), (B12, "PMOL/L", "pmol/L"), (HB, "g/l", "g/L"),
    # the unit names EHRs print (found in review: a critical anaemia read as no value in "gm/dL")
    (B12, "picogram per milliliter", "pg/mL"), (B12, "Picomoles per litre", "pmol/L"), (HB, "gm/dL", "g/dL"),
])
def test_units_are_matched_whatever_their_case(knowledge: Knowledge, lab_code: str, unit: str, factor_of: str) -> None:
    concept = "b12-result" if lab_code == B12 else "hemoglobin"
    value = 120 if factor_of == "g/L" else 12 if concept == "hemoglobin" else 100  # a value the lab can report
    raw = observation(lab_code, ago(5), valueQuantity={"value": value, "unit": unit})  # the unit as text only
    [f] = facts_of(knowledge, raw).of(concept)
    assert f.value == pytest.approx(value * knowledge.units[concept].factors[factor_of])



TSH = code(LOINC, "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma")
MMA = code(LOINC, "13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma")


@pytest.mark.parametrize(("lab_code", "concept", "unit", "value", "read"), [
    (MMA, "mma", "mcmol/L", 0.6, 0.6), (HOMOCYSTEINE, "homocysteine", "mcmol/l", 20, 20), (TSH, "tsh", "µU/mL", 6.1, 6.1),
    (TSH, "tsh", "uU/mL", 6.1, 6.1), (TSH, "tsh", "mcIU/mL", 6.1, 6.1), (HB, "hemoglobin", "g%", 11.5, 11.5),
    (MCV, "mcv", "fL/cell", 104, 104), (MCV, "mcv", "10*-15.L", 104, 104),
    (TSH, "tsh", "mIU/mL", 2.5, None),  # a mislabelled µIU/mL, or 1000 times more: shown, never compared
])
def test_unit_spellings_labs_print_are_read(
    knowledge: Knowledge, lab_code: dict[str, Any], concept: str, unit: str, value: float, read: float | None,
) -> None:
    """Found in review: a raised homocysteine in mcmol/L, an MCV in fL/cell, read as no value."""
    [f] = facts_of(knowledge, lab(lab_code, value, unit, ago(5))).of(concept)
    assert f.value == read

V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


@pytest.mark.parametrize(("system", "flag", "flagged"), [
    (V3_INTERPRETATION, "L", True), (V3_INTERPRETATION, "LL", True), ("http://terminology.hl7.org/CodeSystem/v2-0078", "<", True),
    (V3_INTERPRETATION, "N", False), (V3_INTERPRETATION, "H", False), ("urn:local-flags", "L", False),
])
def test_the_labs_low_flag_and_a_censored_value_are_read(knowledge: Knowledge, system: str, flag: str, flagged: bool) -> None:
    quantity = {"value": 148, "comparator": "<", "unit": "pmol/L", "system": "http://unitsofmeasure.org", "code": "pmol/L"}
    raw = observation(B12, ago(30), valueQuantity=quantity, interpretation=[code(system, flag)])
    [f] = facts_of(knowledge, raw).of("b12-result")
    assert (f.comparator, f.flagged_low) == ("<", flagged)
    assert f.value == pytest.approx(148 * knowledge.units["b12-result"].factors["pmol/L"])


def test_a_registered_b12_is_a_test_in_progress_and_an_older_result_is_still_read(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, observation(B12, ago(3), state="registered"), lab(B12, 410, "pg/mL", ago(400)))
    [pending] = pf.in_progress
    assert (pending.concept, pending.status, pending.when) == ("b12-result", "registered", TODAY - timedelta(days=3))
    [result] = pf.of("b12-result")
    assert result.value == 410



@pytest.mark.parametrize("reported", [{}, {"valueString": "To follow"}, {"valueString": "Pending"}], ids=["no-value", "to-follow", "pending"])
def test_a_preliminary_b12_that_reports_nothing_yet_is_a_test_in_progress(knowledge: Knowledge, reported: dict[str, Any]) -> None:
    """FHIR preliminary is an interim result, the final one to follow: as registered, not as a test that reported nothing."""
    pf = facts_of(knowledge, observation(B12, ago(3), state="preliminary", **reported), lab(B12, 410, "pg/mL", ago(400)))
    [pending] = pf.in_progress
    assert (pending.concept, pending.status, pending.when) == ("b12-result", "preliminary", TODAY - timedelta(days=3))
    assert pf.no_result == [] and [f.value for f in pf.of("b12-result")] == [410]


def test_a_preliminary_b12_with_a_reason_for_no_value_is_no_result(knowledge: Knowledge) -> None:
    absent = {"dataAbsentReason": code("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed")}
    pf = facts_of(knowledge, observation(B12, ago(3), state="preliminary", **absent))
    assert pf.in_progress == [] and [f.status for f in pf.no_result] == ["preliminary"]


def test_a_preliminary_b12_with_a_flag_is_a_result(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, observation(B12, ago(3), state="preliminary", interpretation=[code(V3_INTERPRETATION, "L")]))
    assert pf.in_progress == [] and [f.flagged_low for f in pf.of("b12-result")] == [True]


@pytest.mark.parametrize(("lab_code", "concept", "value"), [(MCV, "mcv", 104.0), (B12, "b12-result", None)])
def test_a_value_integer_is_read_as_a_quantity_without_a_unit(
    knowledge: Knowledge, lab_code: dict[str, Any], concept: str, value: float | None,
) -> None:
    """MCV is read in its one unit (unitWhenAbsent); a B12 of 410 could be pg/mL or pmol/L."""
    [f] = facts_of(knowledge, observation(lab_code, ago(5), valueInteger=104 if concept == "mcv" else 410)).of(concept)
    assert (f.value, f.reported_unit) == (value, None) and f.reported_value in (104, 410)


@pytest.mark.parametrize("reported", [{"valueQuantity": {"value": 120}}, {"valueString": "120"}, {"valueInteger": 120},
                                      {"valueString": "120 L"}], ids=["quantity", "text", "integer", "text-flagged"])
def test_a_b12_without_a_unit_keeps_its_value_in_each_unit_labs_report_it_in(knowledge: Knowledge, reported: dict[str, Any]) -> None:
    """Not converted (pg/mL and pmol/L differ by a third); kept in both, for a band they agree on."""
    [f] = facts_of(knowledge, observation(B12, ago(30), **reported)).of("b12-result")
    assert (f.value, f.reported_value, f.reported_unit) == (None, 120, None)
    assert f.unitless_values == pytest.approx((120, 120 * knowledge.units["b12-result"].factors["pmol/L"]))


def test_an_active_b12_without_a_unit_is_read_in_picomoles(knowledge: Knowledge) -> None:
    """Active B12 (holotranscobalamin) is reported in pmol/L only (units.json unitWhenAbsent)."""
    holotc = code(LOINC, "72160-5", "Holotranscobalamin")
    [f] = facts_of(knowledge, observation(holotc, ago(30), valueQuantity={"value": 20})).of("holotc-result")
    assert (f.value, f.unit, f.unitless_values) == (20, "pmol/L", ())


@pytest.mark.parametrize(("interpretation", "flagged"), [
    ({"text": "Abnormal low"}, True), ({"text": "Lo"}, True), ({"text": "Low*"}, True), ({"text": "L!"}, True),
    ({"coding": [{"code": "l"}]}, True), ({"coding": [{"system": V3_INTERPRETATION, "code": "ll"}]}, True),
    ({"text": "Abnormal"}, False), ({"text": "*"}, False), ({"text": "Normal*"}, False), ({"text": "Slow"}, False),
], ids=["abnormal-low", "lo", "low-star", "l-bang", "lowercase-l", "lowercase-ll", "abnormal", "star", "normal-star", "slow"])
def test_low_flags_as_labs_write_them_are_read(knowledge: Knowledge, interpretation: dict[str, Any], flagged: bool) -> None:
    """Found in review: 'Abnormal low', 'Lo', 'Low*' and a lower-case l left a low B12 unflagged."""
    [f] = facts_of(knowledge, lab(B12, 400, "pg/mL", ago(30), interpretation=[interpretation])).of("b12-result")
    assert f.flagged_low is flagged

def test_a_flag_with_no_value_is_kept(knowledge: Knowledge) -> None:
    [f] = facts_of(knowledge, observation(B12, ago(30), interpretation=[code(V3_INTERPRETATION, "L")])).of("b12-result")
    assert (f.value, f.flagged_low) == (None, True)


def test_unit_is_read_from_the_code_before_the_display_unit(knowledge: Knowledge) -> None:
    raw = observation(B12, ago(5), valueQuantity={"value": 200, "unit": "picomoles per litre", "code": "pmol/L"})
    [f] = facts_of(knowledge, raw).of("b12-result")
    assert f.value == pytest.approx(200 * knowledge.units["b12-result"].factors["pmol/L"])


def test_result_in_an_unknown_unit_keeps_the_unit_but_no_value(knowledge: Knowledge) -> None:
    [f] = facts_of(knowledge, lab(B12, 0.4, "mg/dL", ago(5))).of("b12-result")
    assert (f.value, f.unit, f.when) == (None, "mg/dL", TODAY - timedelta(days=5))


# Observations that record absence


def test_symptom_answered_false_is_not_a_finding(knowledge: Knowledge) -> None:
    assert concepts(facts_of(knowledge, observation(MYALGIA, valueBoolean=False))) == set()
    assert concepts(facts_of(knowledge, observation(MYALGIA, valueBoolean=True))) == {"myalgia"}


@pytest.mark.parametrize("answer", [
    code(SNOMED, "373067005", "No"), code(SNOMED, "2667000", "Absent"),
    code("http://terminology.hl7.org/CodeSystem/v2-0136", "N", "No"),
    # found in interop review: the LOINC and v2-0532 "No", the DSTU2 URL, a local code displayed "No"
    code(LOINC, "LA32-8", "No"), code("http://terminology.hl7.org/CodeSystem/v2-0532", "N", "No"),
    code("http://hl7.org/fhir/v2/0136", "N"), code("urn:oid:2.16.840.1.113883.12.136", "N"),
    code("http://ehr.example.org/answers", "2", "No"),
], ids=["snomed-no", "snomed-absent", "v2-no", "loinc-no", "v2-0532-no", "v2-dstu2-url", "v2-oid", "local-display-no"])
def test_symptom_answered_no_is_not_a_finding(knowledge: Knowledge, answer: dict[str, Any]) -> None:
    pf = facts_of(knowledge, observation(MYALGIA, valueCodeableConcept=answer))
    assert concepts(pf) == set() and pf.skipped_invalid == 0


@pytest.mark.parametrize("answer", [code(LOINC, "LA33-6", "Yes"), code("http://terminology.hl7.org/CodeSystem/v2-0532", "Y", "Yes"),
                                    code("http://ehr.example.org/answers", "1", "Yes")], ids=["loinc-yes", "v2-yes", "local-yes"])
def test_symptom_answered_yes_is_a_finding(knowledge: Knowledge, answer: dict[str, Any]) -> None:
    assert concepts(facts_of(knowledge, observation(MYALGIA, valueCodeableConcept=answer))) == {"myalgia"}


@pytest.mark.parametrize("answer", [{"valueString": "No"}, {"valueCodeableConcept": {"text": "No"}}],
                         ids=["valueString", "text-only-concept"])
def test_symptom_answered_no_in_text_is_not_a_finding(knowledge: Knowledge, answer: dict[str, Any]) -> None:
    assert concepts(facts_of(knowledge, observation(MYALGIA, **answer))) == set()


# Records the service cannot read safely, and those it can


def test_record_with_a_modifier_extension_is_not_used(knowledge: Knowledge) -> None:
    flagged = condition(MYALGIA, modifierExtension=[{"url": "http://ehr.example.org/negated", "valueBoolean": True}])
    pf = facts_of(knowledge, flagged)
    assert concepts(pf) == set() and pf.skipped_invalid == 1


def test_malformed_element_the_rule_never_reads_does_not_lose_the_record(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, lab(B12, 410, "pg/mL", ago(5), performer="x"), condition(MYALGIA, asserter="x"))
    assert [f.value for f in pf.of("b12-result")] == [410.0]
    assert len(pf.of("myalgia")) == 1 and pf.skipped_invalid == 0


def test_malformed_element_the_rule_reads_skips_the_record(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, condition(MYALGIA, onset="last week"), condition(code(SNOMED, "84229001", "Fatigue")))
    assert concepts(pf) == {"fatigue"} and pf.skipped_invalid == 1


def test_entered_in_error_in_a_second_coding_does_not_count(knowledge: Knowledge) -> None:
    both = {"coding": [{"system": "http://ehr.example.org/status", "code": "EIE"},
                       {"system": VERIFICATION, "code": "entered-in-error"}]}
    assert concepts(facts_of(knowledge, condition(MYALGIA, verificationStatus=both))) == set()


# Medications named by reference


def test_medication_reference_to_a_contained_medication(knowledge: Knowledge) -> None:
    contained = [{"resourceType": "Medication", "id": "med", "code": METFORMIN}]
    raw = med_request(medicationReference={"reference": "#med"}, contained=contained)
    [f] = facts_of(knowledge, raw).of("metformin")
    assert (f.matched_by, f.text, f.resource_id) == ("code", "Metformin hydrochloride 500 MG Oral Tablet", raw["id"])


@pytest.mark.parametrize("reference", [
    "Medication/med-42", "https://fhir.example.org/r4/Medication/med-42", "Medication/med-42/_history/3",
    "https://fhir.example.org/r4/Medication/med-42/_history/3",
])
def test_medication_reference_to_a_medication_in_the_bundle(knowledge: Knowledge, reference: str) -> None:
    """Relative, absolute or version-specific (FHIR R4 allows all three); a version was read as the id."""
    medication = {"resourceType": "Medication", "id": "med-42", "code": METFORMIN}
    raw = med_request(medicationReference={"reference": reference})
    assert [f.matched_by for f in facts_of(knowledge, raw, medication).of("metformin")] == ["code"]


def test_medication_reference_that_resolves_to_nothing_names_no_concept(knowledge: Knowledge) -> None:
    missing = med_request(medicationReference={"reference": "Medication/absent"})
    wrong_contained = med_request(medicationReference={"reference": "#other"},
                                  contained=[{"resourceType": "Medication", "id": "med", "code": METFORMIN}])
    assert concepts(facts_of(knowledge, missing, wrong_contained)) == set()


def test_a_reference_to_a_medication_not_sent_is_named_by_its_display(knowledge: Knowledge) -> None:
    """EHRs name the product in the reference's display when the Medication is not included."""
    raw = med_request(medicationReference={"reference": "Medication/absent", "display": "metFORMIN 500 mg tablet"})
    [f] = facts_of(knowledge, raw).of("metformin")
    assert (f.matched_by, f.text) == ("text", "metFORMIN 500 mg tablet")
    included = {"resourceType": "Medication", "id": "med-42", "code": METFORMIN}
    named = med_request(medicationReference={"reference": "Medication/med-42", "display": "something else"})
    assert [f.matched_by for f in facts_of(knowledge, named, included).of("metformin")] == ["code"]  # the code decides


@pytest.mark.parametrize(("written", "value", "comparator"), [
    ("<150 pg/mL", 150.0, "<"), ("129 pg/mL", 129.0, None), (" 95 pmol/L ", 95 * 1.355, None), (">= 400 ng/L", 400.0, ">="),
])
def test_a_result_sent_as_text_is_read_when_it_is_only_a_value_and_unit(
    knowledge: Knowledge, written: str, value: float, comparator: str | None
) -> None:
    [f] = facts_of(knowledge, observation(B12, ago(30), valueString=written)).of("b12-result")
    assert f.value == pytest.approx(value, rel=0.01) and f.comparator == comparator


@pytest.mark.parametrize(("written", "value", "comparator", "flagged"), [
    ("145 pg/mL L", 145, None, True), ("LOW 145 pg/mL", 145, None, True), ("145 pg/mL *", 145, None, False),
    ("145.0 pg/mL (L)", 145, None, True), ("(L) 145 pg/mL", 145, None, True), ("145 pg/mL [LL]", 145, None, True),
    ("145 pg/mL l", 145, None, True), ("145 pg/mL H", 145, None, False), ("145 pg/mL Low", 145, None, True),
    ("Less than 50 pg/mL", 50, "<", False), ("less  than 50 pg/mL L", 50, "<", True), ("Greater than 2000 pg/mL", 2000, ">", False),
    ("≥ 2000 pg/mL", 2000, ">=", False), ("at least 2000 pg/mL", 2000, ">=", False),
    ("145,0 pg/mL", 145, None, False), ("1,234 pg/mL", 1234, None, False), ("1,234.5 pg/mL", 1234.5, None, False),
    ("145pg/mL", 145, None, False), ("<50 PG/ML", 50, "<", False),
    # found in the clinical review: a flag between the number and the unit, written onto the number, or after a mark
    ("148 L pg/mL", 148, None, True), ("148L pg/mL", 148, None, True), ("148 *L pg/mL", 148, None, True),
    ("<148L pg/mL", 148, "<", True), ("148 H pg/mL", 148, None, False), ("148LL pg/mL", 148, None, True),
    # found in the clinical review: the lab's reference range after the result, a flag parted by punctuation
    ("120 pg/mL (180-914)", 120, None, False), ("120 pg/mL [ref 180 - 914 pg/mL]", 120, None, False),
    ("120 pg/mL RR: 180-914", 120, None, False), ("120 pg/mL (Reference range 180-914) L", 120, None, True),
    ("120 pg/mL - low", 120, None, True), ("Low: 120 pg/mL", 120, None, True), ("120 pg/mL, low", 120, None, True),
    ("120 pg/mL — LOW", 120, None, True),
    # a flag or a unit written inside the range's bracket (diff review): the flag kept, the unit dropped
    ("150 pg/mL (180-914 low)", 150, None, True), ("120 pg/mL (180-914 pgmL)", 120, None, False),
    ("120 pg/mL RR 180-914 pg", 120, None, False),
])
def test_a_result_sent_as_text_with_a_flag_words_or_a_decimal_comma_is_read(
    knowledge: Knowledge, written: str, value: float, comparator: str | None, flagged: bool,
) -> None:
    """Found in review: each was read as no result (a repeat asked for) or as a number never compared."""
    [f] = facts_of(knowledge, observation(B12, ago(30), valueString=written)).of("b12-result")
    assert (f.value, f.comparator, f.flagged_low) == (pytest.approx(value), comparator, flagged)
    assert f.reported_unit is not None and f.reported_unit.casefold() == "pg/ml"


@pytest.mark.parametrize(("written", "value"), [("0,45 umol/L", 0.45), ("0,450 umol/L", 0.45), ("1,5 umol/L", 1.5)])
def test_a_decimal_comma_is_not_read_as_thousands(knowledge: Knowledge, written: str, value: float) -> None:
    mma = code(LOINC, "13964-2", "Methylmalonate [Moles/volume] in Serum or Plasma")
    [f] = facts_of(knowledge, observation(mma, ago(30), valueString=written)).of("mma")
    assert f.value == pytest.approx(value)


def test_a_flag_word_alone_is_no_value(knowledge: Knowledge) -> None:
    """'Low' alone names no number: the result reports nothing (kept apart as no result, as before)."""
    pf = facts_of(knowledge, observation(B12, ago(30), valueString="Low"))
    assert pf.of("b12-result") == [] and len(pf.no_result) == 1

@pytest.mark.parametrize("written", ["150-200 pg/mL", "129", " > 2,000 pg/mL (repeated)", "12,34,5 pg/mL",
                                     # flags that disagree say nothing to compare (found in the diff review)
                                     "250 low normal", "148 H pg/mL L", "L 250 N pg/mL", "120 pg/mL (low normal)",
                                     "150 - 200 pg/mL", "120 pg/mL (180-914) (repeated)",
                                     " " * 20_000 + "150-200 pg/mL  "])  # spaces once cost quadratic time
def test_a_result_sent_as_other_text_has_no_value(knowledge: Knowledge, written: str) -> None:
    """A number this reader cannot convert is still a result: the test was done."""
    [f] = facts_of(knowledge, observation(B12, ago(30), valueString=written)).of("b12-result")
    assert f.value is None  # "129" without a unit: pg/mL and pmol/L differ by a third


@pytest.mark.parametrize("reported", [
    {"valueString": "Test not performed"}, {"valueString": "TNP"}, {"valueString": "QNS"},
    {"valueString": "Specimen hemolyzed, test cancelled"}, {"valueString": "See comment"}, {"valueString": "Low"}, {},
    {"valueString": "QNS, recollect x2"},  # a digit in the words is no number reported
    # found in review: a number that opens words is no result either
    {"valueString": "2nd specimen hemolyzed, test cancelled"}, {"valueString": "1 tube clotted - QNS"},
    {"valueString": " " * 20_000 + "a"},  # found by the attacker review: 20,000 spaces held the call 12 s
    {"valueCodeableConcept": {"text": "Test not performed"}}, {"valueQuantity": {"unit": "pg/mL"}},
    {"interpretation": [code("urn:local-flags", "N")]},  # not a flag from the lab-flag code systems
    {"dataAbsentReason": code("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed")},
], ids=["not-performed", "TNP", "QNS", "hemolyzed", "see-comment", "Low", "no-value", "recollect-x2", "2nd-specimen", "1-tube",
        "spaces", "coded-text", "unit-only",
        "local-flag", "data-absent-reason"])
def test_a_lab_test_that_reports_no_number_and_no_flag_is_no_result(knowledge: Knowledge, reported: dict[str, Any]) -> None:
    """It silences nothing, the result before it is read instead, and it is kept to be named on the card."""
    none = observation(B12, ago(10), **reported)
    pf = facts_of(knowledge, none, lab(B12, 410, "pg/mL", ago(200)))
    assert [f.when for f in pf.of("b12-result")] == [TODAY - timedelta(days=200)]
    assert [(f.concept, f.resource_id, f.when) for f in pf.no_result] == [("b12-result", none["id"], TODAY - timedelta(days=10))]
    assert pf.skipped_invalid == 0


@pytest.mark.parametrize("reported", [{"valueQuantity": {"value": 410, "unit": "pg/mL"}}, {"valueInteger": 410},
                                      {"valueString": "1,234 pg/mL"}, {"valueString": "Greater than 2000 pg/mL"},
                                      {"interpretation": [code(V3_INTERPRETATION, "N")]},
                                      {"interpretation": [code("http://terminology.hl7.org/CodeSystem/v2-0078", "H")]}])
def test_a_number_or_a_lab_flag_is_a_result(knowledge: Knowledge, reported: dict[str, Any]) -> None:
    pf = facts_of(knowledge, observation(B12, ago(10), **reported))
    assert [f.when for f in pf.of("b12-result")] == [TODAY - timedelta(days=10)] and pf.no_result == []


def test_no_result_applies_to_every_lab_and_never_to_a_symptom(knowledge: Knowledge) -> None:
    mcv = code(LOINC, "787-2", "MCV [Entitic volume] by Automated count")
    pf = facts_of(knowledge, observation(mcv, ago(5), valueString="QNS"), lab(mcv, 104, "fL", ago(60)),
                  observation(MYALGIA, ago(5)))
    assert [f.value for f in pf.of("mcv")] == [104] and [f.concept for f in pf.no_result] == ["mcv"]
    assert len(pf.of("myalgia")) == 1  # a symptom recorded with no value is recorded


@pytest.mark.parametrize(("when", "day"), [("2026-10", date(2026, 10, 1)), ("2026", date(2026, 1, 1)),
                                          ("2026-10-17T23:30:00+10:00", date(2026, 10, 17))])
def test_a_partial_date_reads_as_the_first_day_it_allows(knowledge: Knowledge, when: str, day: date) -> None:
    [f] = facts_of(knowledge, lab(B12, 410, "pg/mL", when)).of("b12-result")
    assert f.when == day


@pytest.mark.parametrize("when", ["2026-10-17T23:30:00", "2026-10-17T23:30:00.000+0000", "2026-10-17T23:30-0500",
                                  "2026-10-17T23:30", "2026-10-17 23:30:00"])
def test_a_date_time_as_converters_write_it_is_read_on_the_day_written(knowledge: Knowledge, when: str) -> None:
    """No zone, an offset without its colon, no seconds: FHIR rejects them, real converters send them."""
    ppi = code(RXNORM, "198051", "Omeprazole 20 MG Delayed Release Oral Capsule")
    pf = facts_of(knowledge, condition(MYALGIA, onset=when), lab(B12, 410, "pg/mL", when),
                  med_request(medicationCodeableConcept=ppi, authoredOn=when),
                  med_request(authoredOn=None, dispenseRequest={"validityPeriod": {"start": when}}))
    day = date(2026, 10, 17)
    assert pf.skipped_invalid == 0
    assert [f.when for c in ("myalgia", "b12-result", "acid-suppressant", "metformin") for f in pf.of(c)] == [day] * 4


def test_a_result_whose_period_has_only_an_end_is_dated_by_it_and_sorted_by_it(knowledge: Knowledge) -> None:
    """Only the latest result per lab is read: an end-only period sorted as undated hid a newer result."""
    end_only = lab(B12, 450, "pg/mL", ago(30)) | {"effectiveDateTime": None, "effectivePeriod": {"end": f"{ago(30)}T13:28:17Z"}}
    [f] = facts_of(knowledge, lab(B12, 150, "pg/mL", ago(400)), end_only).of("b12-result")
    assert (f.value, f.when) == (450, TODAY - timedelta(days=30))
    both = lab(B12, 300, "pg/mL", ago(30)) | {"effectiveDateTime": None, "effectivePeriod": {"start": ago(31), "end": ago(30)}}
    assert [f.when for f in facts_of(knowledge, both).of("b12-result")] == [TODAY - timedelta(days=31)]  # the start first


@pytest.mark.parametrize(("value", "counts"), [({"valueInteger": 0}, False), ({"valueInteger": 4}, True),
                                               ({"valueQuantity": {"value": 0, "unit": "{score}"}}, False),
                                               ({"valueQuantity": {"value": 0.0}}, False), ({"valueBoolean": True}, True),
                                               ({"valueString": "0"}, False), ({"valueString": "0/10"}, False), ({"valueString": "3/10"}, True)])
def test_a_symptom_scored_zero_is_absent(knowledge: Knowledge, value: dict[str, Any], counts: bool) -> None:
    assert bool(facts_of(knowledge, observation(MYALGIA, ago(3), **value)).of("myalgia")) is counts


def test_a_medication_request_begins_at_the_earlier_of_its_authoring_and_validity(knowledge: Knowledge) -> None:
    raw = med_request(authoredOn=ago(1000), dispenseRequest={"validityPeriod": {"start": ago(100)}})
    backdated = med_request(authoredOn=ago(10), dispenseRequest={"validityPeriod": {"start": ago(50)}})
    assert sorted(f.when for f in facts_of(knowledge, raw, backdated).of("metformin")) == [
        TODAY - timedelta(days=1000), TODAY - timedelta(days=50)]


@pytest.mark.parametrize(("deceased", "expected"), [({"deceasedBoolean": True}, True), ({"deceasedDateTime": ago(3)}, True),
                                                    ({"deceasedBoolean": False}, False), ({}, False)])
def test_a_deceased_patient_is_recorded(knowledge: Knowledge, deceased: dict[str, Any], expected: bool) -> None:
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1950-01-01"} | deceased
    assert facts_of(knowledge, patient=patient).deceased is expected


@pytest.mark.parametrize("answer", ["none.", "Not present", "No pain", "Denies", "NO", "-ve", "N/A"])
def test_free_text_answers_that_record_absence(knowledge: Knowledge, answer: str) -> None:
    assert concepts(facts_of(knowledge, observation(MYALGIA, valueString=answer))) == set()


@pytest.mark.parametrize("answer", ["Yes", "Sometimes, after the gym", "aching in both calves", "+ve"])
def test_free_text_answers_that_do_not_record_absence(knowledge: Knowledge, answer: str) -> None:
    # the answer may name more ("after the gym": exertion), the complaint stands
    assert "myalgia" in concepts(facts_of(knowledge, observation(MYALGIA, valueString=answer)))


def test_note_on_a_record_coded_as_something_else_is_not_read(knowledge: Knowledge) -> None:
    hypertension = code(SNOMED, "38341003", "Hypertensive disorder")
    noted = condition(hypertension, note=[{"text": "Mentions muscle aches in the legs."}])
    assert concepts(facts_of(knowledge, noted)) == set()


def test_note_on_a_record_the_rule_knows_is_read(knowledge: Knowledge) -> None:
    noted = condition(MYALGIA, note=[{"text": "Started after influenza last week."}])
    assert concepts(facts_of(knowledge, noted)) == {"myalgia", "viral-illness"}


@pytest.mark.parametrize("injury", ["T14.8XXA", "S39.012A", "S16.1XXA", "S76.311A", "S86.011A", "X50.0XXA", "T73.3XXA", "s39012a"])
def test_a_strain_or_overexertion_coded_with_its_seventh_character_is_an_injury(knowledge: Knowledge, injury: str) -> None:
    """Found in clinical review: only T14.8, which EHRs never send without a 7th character, was known."""
    assert concepts(facts_of(knowledge, condition(code(ICD10CM, injury)))) == {"exertion-or-injury"}


LAB_CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]


def test_a_lab_results_comment_is_the_laboratorys_words_not_symptoms(knowledge: Knowledge) -> None:
    """Found in interop review: an interpretive comment on a normal MCV raised a critical card."""
    comment = [{"text": "B12 deficiency can present with fatigue, paresthesia and peripheral neuropathy."}]
    mcv = code(LOINC, "787-2", "MCV [Entitic volume] by Automated count")
    assert concepts(facts_of(knowledge, lab(mcv, 92, "fL", ago(5), note=comment))) == {"mcv"}
    unknown_lab = code(LOCAL, "LABCMT", "Lab comment")
    assert concepts(facts_of(knowledge, observation(unknown_lab, category=LAB_CATEGORY, valueString=comment[0]["text"]))) == set()
    # a symptom question's answer is still the patient's own
    survey = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}]
    assert concepts(facts_of(knowledge, observation(unknown_lab, category=survey, valueString="Tired all the time"))) == {"fatigue"}


def test_answer_to_an_unknown_question_code_is_read(knowledge: Knowledge) -> None:
    chief_complaint = code(LOINC, "8661-1", "Chief complaint - Reported")
    assert concepts(facts_of(knowledge, observation(chief_complaint, valueString="Muscle aches for 3 weeks"))) == {"myalgia"}


def test_a_past_statement_is_dated_by_when_it_was_taken_never_by_when_it_was_asserted(knowledge: Knowledge) -> None:
    def statement(state: str, **dates: Any) -> dict[str, Any]:
        return {"resourceType": "MedicationStatement", "id": f"ms-{next(_ids)}", "status": state,
                "subject": {"reference": "Patient/p"}, "medicationCodeableConcept": METFORMIN, **dates}
    [past] = facts_of(knowledge, statement("completed", dateAsserted=ago(10))).of("metformin")
    assert past.when is None
    # a current one too: asserted at a medicines reconciliation today, it may have been taken for years
    [current] = facts_of(knowledge, statement("active", dateAsserted=ago(10))).of("metformin")
    assert (current.active, current.when) == (True, None)


@pytest.mark.parametrize(("extra", "when"), [
    ({}, 10),  # ordered: begun when written
    ({"reportedBoolean": True}, None),  # reported (US Core: a medicine the patient takes): written when recorded
    ({"reportedReference": {"reference": "Patient/p"}}, None),
    ({"reportedBoolean": True, "dispenseRequest": {"validityPeriod": {"start": ago(900)}}}, 900),
    ({"reportedBoolean": False}, 10),
])
def test_a_reported_medicine_is_not_dated_by_when_it_was_recorded(
        knowledge: Knowledge, extra: dict[str, Any], when: int | None) -> None:
    [f] = facts_of(knowledge, med_request(authoredOn=ago(10), **extra)).of("metformin")
    assert f.when == (None if when is None else TODAY - timedelta(days=when))


@pytest.mark.parametrize(("intent", "extra", "replacement"), [
    ("order", {}, True), ("plan", {}, False),  # a plan nobody reports taking: no replacement under way
    ("plan", {"reportedBoolean": True}, True),  # US Core: a patient-reported medicine
    ("plan", {"reportedReference": {"reference": "Patient/p"}}, True),
])
def test_a_planned_b12_is_replacement_only_when_reported_as_taken(
        knowledge: Knowledge, intent: str, extra: dict[str, Any], replacement: bool) -> None:
    b12 = {"text": "Cyanocobalamin 1000 MCG/ML Injectable Solution"}
    assert bool(facts_of(knowledge, med_request(intent=intent, medicationCodeableConcept=b12, **extra))
                .of("b12-therapy")) is replacement
    # a risk factor documented as a plan still counts: EHRs document home medicines so
    assert facts_of(knowledge, med_request(intent=intent, **extra)).of("metformin")


def test_the_dosing_start_is_kept_when_every_instruction_gives_one(knowledge: Knowledge) -> None:
    def starting(*starts: str | None) -> dict[str, Any]:
        return med_request(dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": {"start": s} if s else {}}}}
                                              for s in starts])
    [f] = facts_of(knowledge, starting(ago(-7))).of("metformin")
    assert (f.when, f.starts) == (TODAY - timedelta(days=400), TODAY + timedelta(days=7))
    [taper] = facts_of(knowledge, starting(ago(-7), ago(-30))).of("metformin")
    assert taper.starts == TODAY + timedelta(days=7)
    [open_] = facts_of(knowledge, starting(ago(-7), None)).of("metformin")
    assert open_.starts is None


@pytest.mark.parametrize("value", [-5, -1.7e308, 1.7e308, 1e13])
def test_an_impossible_lab_value_makes_the_result_unreadable(knowledge: Knowledge, value: float) -> None:
    """A negative or astronomically large concentration is corrupt: never a low or a normal B12."""
    pf = facts_of(knowledge, lab(B12, value, "pg/mL", ago(30)), lab(B12, 420, "pg/mL", ago(400)))
    assert [f.value for f in pf.of("b12-result")] == [420]
    assert pf.unreadable == 1


def test_minus_zero_reads_as_zero(knowledge: Knowledge) -> None:
    pf = facts_of(knowledge, lab(B12, -0.0, "pg/mL", ago(30)))
    assert [str(f.value) for f in pf.of("b12-result")] == ["0.0"]


def test_coding_sent_as_a_single_object_is_read_as_a_list_of_one(knowledge: Knowledge) -> None:
    """As real clients bend arrays (the sandbox's reasonCode): a pending order coded this way still silences."""
    order = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p"}, "authoredOn": ago(3),
             "code": {"coding": {"system": LOINC, "code": "2132-9"}}}
    assert concepts(facts_of(knowledge, order, condition({"coding": {"system": SNOMED, "code": "68962001"}}))) >= {
        "b12-order", "myalgia"}


@pytest.mark.parametrize("junk", [5, True, "x", ["x"], None])
def test_arrays_and_references_sent_as_the_wrong_json_type_are_read_as_absent(knowledge: Knowledge, junk: Any) -> None:
    """One bent field never costs the call (it once answered 500) nor the rest of the record."""
    records = [
        condition({"coding": junk, "text": "Myalgia"}),
        lab({"coding": [{"system": LOINC, "code": "2132-9"}], "text": "B12"}, 250, "pg/mL", ago(30), interpretation=[{"coding": junk}]),
        {"resourceType": "MedicationRequest", "id": "m-1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p"}, "medicationReference": junk, "contained": junk},
        {"resourceType": "MedicationRequest", "id": "m-2", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p"}, "medicationReference": {"reference": "#x"}, "contained": junk},
        condition({"text": "Fatigue"}, note=junk),
    ]
    pf = facts_of(knowledge, *records)
    assert {"myalgia", "b12-result", "fatigue"} <= concepts(pf)



@pytest.mark.parametrize(("birth", "latest"), [
    ("1961", date(1961, 12, 31)), ("1961-12", date(1961, 12, 31)), ("1961-02", date(1961, 2, 28)),
    ("2000-02", date(2000, 2, 29)), ("1961-12-05", date(1961, 12, 5)), ("1961-13", None), ("19x1", None), (1961, None),
])
def test_a_partial_birth_date_reads_as_its_last_possible_day(knowledge: Knowledge, birth: Any, latest: date | None) -> None:
    """Never older than the patient may be: born 'December 1961' is 64 on 2026-11-25, not 65."""
    pf = facts_of(knowledge, patient={"resourceType": "Patient", "id": "p", "birthDate": birth})
    assert pf.birth_date == latest


def test_reading_many_records_calls_the_time_check_every_few_records(knowledge: Knowledge) -> None:
    """The evaluation is CPU work no await can cancel: it checks the call's deadline as it goes."""
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1

    records = [dict(condition(code(SNOMED, "38341003", "Hypertension")), id=f"h{i}") for i in range(100)]
    labs = [dict(lab(HB, 13.5, "g/dL", ago(i)), status="bogus-status", id=f"hb{i}") for i in range(64)]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in records + labs]}
    facts = extract_facts(from_prefetch({"records": bundle}), knowledge, check)
    assert not facts.of("hemoglobin")
    assert calls == 100 // 32 + 64 // 32 + 64 // 32  # the records, the labs screened, the invalid labs validated


def test_a_record_with_an_id_fhir_does_not_allow_is_read_without_it(knowledge: Knowledge) -> None:
    """Some EHRs write ids outside FHIR's pattern (an underscore): the complaint still counts, but
    nothing sent back may point at an id that is not one."""
    [f] = facts_of(knowledge, condition(MYALGIA, id="a1b2c3_d4")).of("myalgia")
    assert (f.resource_id, f.reference) == (None, None)


@pytest.mark.parametrize(("name", "is_therapy"), [
    ("Vitamin A 3500 UNT / Ascorbic Acid 90 MG / Vitamin B 12 0.025 MG / Zinc 11 MG Oral Tablet", False),
    ("ascorbic acid 60 MG / cyanocobalamin 0.006 MG / folic acid 0.4 MG Oral Tablet", False),
    ("Vitamin B-12 25 mcg chewable", False),
    ("vitamin B-12 (CYANOCOBALAMIN) 25 mcg tablet", False),  # Epic's bracket before the strength (order review)
    ("vitamin B-12 (CYANOCOBALAMIN) 1,000 mcg tablet", True),
    ("Vitamin B12 50 micrograms", True),  # the floor itself is a replacement dose (BNF: 50-150 a day)
    ("Cyanocobalamin 1000 MCG Oral Tablet", True), ("cyanocobalamin 1,000 mcg", True),
    ("Cyanocobalamin 1 MG/ML Injectable Solution", True), ("Nascobal 500 MCG/ACTUAT Nasal Spray", True),
    ("Cyanocobalamin 1 MG / Folic Acid 2.5 MG / Pyridoxine 25 MG Oral Tablet", True),
    ("Vitamin B12 ER tablet", True),  # no strength stated: read by its name, as before
    # a comma read as lab values read it: 0,005 mg a decimal comma (a multivitamin's), 1,500 mcg thousands
    ("cyanocobalamin 0,005 mg", False), ("cyanocobalamin 1,500 mcg", True),
    ("Hydroxocobalamin 5000,5 mg", False),  # a decimal comma over the ceiling (5 g): the antidote
])
def test_a_product_named_with_a_few_micrograms_of_b12_is_no_replacement(knowledge: Knowledge, name: str,
                                                                         is_therapy: bool) -> None:
    product = {"coding": [{"system": "http://hospital.example.org/fhir/formulary", "code": "F-1", "display": name}]}
    for rtype in ("MedicationRequest", "MedicationStatement", "MedicationAdministration"):
        raw = {**med_request(medicationCodeableConcept=product), "resourceType": rtype, "effectiveDateTime": ago(10),
               "status": "completed" if rtype == "MedicationAdministration" else "active"}
        assert bool(facts_of(knowledge, raw).of("b12-therapy")) is is_therapy, rtype


# Pregnancy status Observations (US Core 82810-3, older 11449-6): the answer is read under its question


PREGNANCY_STATUS = code(LOINC, "82810-3", "Pregnancy status")
PREGNANCY_STATUS_REPORTED = code(LOINC, "11449-6", "Pregnancy status - Reported")
PREGNANCY_INTENTION = code(LOINC, "86645-9", "Pregnancy intention in the next year - Reported")
HCG_URINE = code(LOINC, "2106-3", "Choriogonadotropin (pregnancy test) [Presence] in Urine")
PREGNANT_ANSWER = code(LOINC, "LA15173-0", "Pregnant")
NOT_PREGNANT_ANSWER = code(LOINC, "LA26683-5", "Not pregnant")
STATUS_CONCEPTS = {"pregnancy-status", "pregnancy-status-pregnant", "pregnancy-status-not-pregnant"}


@pytest.mark.parametrize(("question", "answer", "found"), [
    (PREGNANCY_STATUS, PREGNANT_ANSWER, "pregnancy-status-pregnant"),
    (PREGNANCY_STATUS, code(SNOMED, "77386006", "Pregnant"), "pregnancy-status-pregnant"),
    (PREGNANCY_STATUS_REPORTED, PREGNANT_ANSWER, "pregnancy-status-pregnant"),
    # a coded answer is the finding: its display 'Not pregnant' is no 'No' that records nothing
    (PREGNANCY_STATUS, NOT_PREGNANT_ANSWER, "pregnancy-status-not-pregnant"),
    (PREGNANCY_STATUS_REPORTED, code(SNOMED, "60001007", "Not pregnant"), "pregnancy-status-not-pregnant"),
    (PREGNANCY_STATUS, code(LOINC, "LA4489-6", "Unknown"), None),  # says nothing either way
    (PREGNANCY_STATUS, code(SNOMED, "261665006", "Unknown"), None),
    (PREGNANCY_STATUS, {"text": "Pregnant"}, None),  # an answer is read by its code only
    # the same answers under another question are not a pregnancy status
    (PREGNANCY_INTENTION, PREGNANT_ANSWER, None),
    (PREGNANCY_INTENTION, NOT_PREGNANT_ANSWER, None),
    (PREGNANCY_INTENTION, code(LOINC, "LA26438-4", "Yes, I want to become pregnant"), None),
    (HCG_URINE, code(SNOMED, "10828004", "Positive"), None),
    (HCG_URINE, PREGNANT_ANSWER, None),
], ids=["loinc-pregnant", "snomed-pregnant", "11449-6", "loinc-not-pregnant", "snomed-not-pregnant",
        "loinc-unknown", "snomed-unknown", "text-only-answer", "intention-pregnant", "intention-not-pregnant",
        "intention-yes", "hcg-positive", "hcg-pregnant"])
def test_a_pregnancy_status_is_read_from_its_answer_under_its_question(
    knowledge: Knowledge, question: dict[str, Any], answer: dict[str, Any], found: str | None
) -> None:
    raw = observation(question, ago(30), valueCodeableConcept=answer)
    pf = facts_of(knowledge, raw)
    assert concepts(pf) & STATUS_CONCEPTS - {"pregnancy-status"} == ({found} if found else set())
    if found:
        [f] = pf.of(found)
        assert (f.resource_type, f.resource_id, f.when, f.active) == ("Observation", raw["id"], TODAY - timedelta(days=30), False)


def test_an_answer_code_is_no_code_of_its_own(knowledge: Knowledge) -> None:
    """'Pregnant' as an Observation's code, or a Condition coded 77386006 (the pregnancy value set's),
    is not a pregnancy status answer."""
    assert concepts(facts_of(knowledge, observation(PREGNANT_ANSWER, ago(30)))) == set()
    pf = facts_of(knowledge, condition(code(SNOMED, "77386006", "Pregnancy"), onset=ago(30)))
    assert concepts(pf) == {"pregnancy"}


@pytest.mark.parametrize("state", ["entered-in-error", "cancelled", "unknown"])
def test_a_pregnancy_status_entered_in_error_or_cancelled_is_not_read(knowledge: Knowledge, state: str) -> None:
    raw = observation(PREGNANCY_STATUS, ago(30), state=state, valueCodeableConcept=PREGNANT_ANSWER)
    assert concepts(facts_of(knowledge, raw)) == set()


def test_a_condition_dated_by_its_onset_keeps_when_it_was_recorded(knowledge: Knowledge) -> None:
    """A pregnancy Condition dated from the last period and entered weeks later: the recorded date is
    kept beside the onset, so a "Not pregnant" answered in between is not read as newer than it."""
    raw = condition(code(SNOMED, "77386006", "Pregnancy"), onset=ago(100), recordedDate=ago(60))
    [f] = facts_of(knowledge, raw).of("pregnancy")
    assert (f.when, f.recorded) == (TODAY - timedelta(days=100), TODAY - timedelta(days=60))
    [undated] = facts_of(knowledge, condition(code(SNOMED, "77386006", "Pregnancy"), recordedDate=ago(60),
                                              onsetDateTime=None)).of("pregnancy")
    assert undated.when == undated.recorded == TODAY - timedelta(days=60)


def test_a_lab_result_dated_after_tomorrow_is_unreadable_and_does_not_hide_the_latest(knowledge: Knowledge) -> None:
    """Found in review: a B12 dated a month ahead (a typing error) was taken as the latest and the
    real low result was never read."""
    today = date(2026, 11, 26)

    def b12(oid: str, when: str, value: float) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": oid, "status": "final", "effectiveDateTime": when,
                "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]},
                "valueQuantity": {"value": value, "unit": "pg/mL"}}

    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": b12("real", "2026-09-27", 120)}, {"resource": b12("typo", "2026-12-26", 500)},
        {"resource": b12("tomorrow-abroad", "2026-11-27T01:00:00+10:00", 400)},
    ]}
    facts = extract_facts(from_prefetch({"records": bundle}), knowledge, today=today)
    assert [f.value for f in facts.of("b12-result")] == [400]  # tomorrow is allowed: a time zone ahead
    facts = extract_facts(from_prefetch({"records": {**bundle, "entry": bundle["entry"][:2]}}), knowledge, today=today)
    assert [f.value for f in facts.of("b12-result")] == [120] and facts.skipped_invalid == 1


@pytest.mark.parametrize(("interpretation", "flagged"), [
    ([{"coding": [{"code": "L"}]}], True),  # a flag with no system: an interpretation holds nothing else
    ([{"coding": [{"system": "https://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation/", "code": "L"}]}], True),
    ([{"text": "Low"}], True), ([{"text": "Below low-normal"}], True), ([{"text": "LL"}], True),
    ([{"text": "Normal"}], False), ([{"text": "Abnormal"}], False), ([{"coding": [{"system": "urn:local-flags", "code": "L"}]}], False),
    ([{"coding": [{"system": "urn:local-flags", "code": "LO"}], "text": "Low"}], False),  # coded: its text is not read
])
def test_a_low_flag_as_labs_send_it_is_read(knowledge: Knowledge, interpretation: list[dict[str, Any]], flagged: bool) -> None:
    """Found in review: a 200 pg/mL flagged low without the exact HL7 system was read as borderline."""
    (f,) = facts_of(knowledge, lab(B12, 200, "pg/mL", ago(30), interpretation=interpretation)).of("b12-result")
    assert f.flagged_low is flagged


@pytest.mark.parametrize(("quantity", "unit"), [
    ({"value": 9.5, "unit": "g/dL", "system": "urn:oid:1.2.3.4", "code": "GDL"}, "g/dL"),  # a local unit code
    ({"value": 9.5, "unit": "grams per decilitre", "system": "http://unitsofmeasure.org", "code": "g/dL"}, "g/dL"),
    ({"value": 9.5, "unit": "g/dL"}, "g/dL"),
    ({"value": 9.5, "unit": "furlongs", "system": "urn:oid:1.2.3.4", "code": "FUR"}, "furlongs"),  # neither known: as given
])
def test_a_quantity_is_read_in_the_unit_a_lab_knows(knowledge: Knowledge, quantity: dict[str, Any], unit: str) -> None:
    (f,) = facts_of(knowledge, observation(HB, ago(30), valueQuantity=quantity)).of("hemoglobin")
    assert f.unit == unit and (f.value == 9.5) is (unit == "g/dL")  # a unit no lab knows gives no value to compare


@pytest.mark.parametrize(("ingredients", "found"), [
    ([{"itemCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11248", "display": "Cyanocobalamin"}]}}], True),
    ([{"itemCodeableConcept": {"text": "Hydroxocobalamin"}}], True),
    # several: read as a combination product's name, so a multivitamin's B12 is no replacement
    ([{"itemCodeableConcept": {"text": "Multivitamin"}}, {"itemCodeableConcept": {"text": "Cyanocobalamin"}}], False),
    ([{"itemReference": {"reference": "Substance/s1"}}], False),
])
def test_a_medication_defined_only_by_its_ingredients_is_read(knowledge: Knowledge, ingredients: list[dict[str, Any]], found: bool) -> None:
    """FHIR R4 Medication.code is optional; found in review: such a B12 prescription was not read."""
    raw = med_request(medicationReference={"reference": "#m1"}, authoredOn=ago(30),
                      contained=[{"resourceType": "Medication", "id": "m1", "ingredient": ingredients}])
    assert bool(facts_of(knowledge, raw).of("b12-therapy")) is found


@pytest.mark.parametrize(("concept", "quantity", "canonical"), [
    (MCV, {"value": 105}, True),  # MCV is reported in fL only: a result with no unit is read in fL
    (HB, {"value": 9.5}, False),  # haemoglobin has three units: with none it is never compared
    (HOMOCYSTEINE, {"value": 22, "unit": "µM"}, True),
])
def test_a_result_sent_without_a_unit_or_in_micromolar(knowledge: Knowledge, concept: dict[str, Any], quantity: dict[str, Any],
                                                       canonical: bool) -> None:
    pf = facts_of(knowledge, observation(concept, ago(30), valueQuantity=quantity))
    lab = knowledge.units[next(iter(concepts(pf)))]
    (f,) = pf.of(next(iter(concepts(pf))))
    assert (lab.factor(f.unit) is not None) is canonical


def test_the_results_of_a_panel_sent_as_components_are_read(knowledge: Knowledge) -> None:
    """Found in review: a blood count sent as one Observation with MCV and Hb as components was not read."""
    panel = observation(code(LOINC, "58410-2", "CBC panel"), ago(12), component=[
        {"code": MCV, "valueQuantity": {"value": 106, "unit": "fL"}},
        {"code": HB, "valueQuantity": {"value": 10.1, "unit": "g/dL"}, "interpretation": [{"text": "Low"}]},
        {"code": code(LOINC, "789-8", "RBC"), "valueQuantity": {"value": 3.1, "unit": "10*6/uL"}},
        {"code": MCV},  # no value: no result
        "junk",
    ])
    pf = facts_of(knowledge, panel)
    (mcv,) = pf.of("mcv")
    (hb,) = pf.of("hemoglobin")
    assert (mcv.value, hb.value, hb.flagged_low) == (106, 10.1, True)  # the component's own flag
    assert mcv.resource_id == hb.resource_id == panel["id"] and mcv.when == hb.when


def test_an_answer_in_words_is_read_as_a_value_string_is(knowledge: Knowledge) -> None:
    """A valueCodeableConcept with no standard code says its finding in words: read as a valueString
    (a chief complaint, the drug named in a drug-use history), unless the question is a lab's."""
    def observation(code: dict[str, Any], value: dict[str, Any], category: str = "survey") -> dict[str, Any]:
        return {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p"},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": category}]}],
                "code": code, "effectiveDateTime": "2026-11-20", "valueCodeableConcept": value}
    complaint = {"coding": [{"system": "http://loinc.org", "code": "8661-1", "display": "Chief complaint"}]}
    drug_use = {"coding": [{"system": "http://loinc.org", "code": "11343-1"}]}
    screen = ConceptScreen(knowledge, PatientData())
    assert screen.concepts(observation(complaint, {"text": "Muscle aches for three weeks"}), "Observation") == {"myalgia": "text"}
    assert screen.concepts(observation(complaint, {"text": "Denies muscle aches"}), "Observation") == {}
    assert screen.concepts(observation(drug_use, {"text": "Nitrous oxide, weekends"}, "social-history"), "Observation") \
        == {"nitrous-oxide": "text"}
    # a standard code speaks for the answer; a lab's answer in words is no complaint
    coded = {"coding": [{"system": "http://snomed.info/sct", "code": "25064002", "display": "Headache"}], "text": "Myalgia"}
    assert screen.concepts(observation(complaint, coded), "Observation") == {}
    assert screen.concepts(observation(complaint, {"text": "Myalgia"}, "laboratory"), "Observation") == {}


@pytest.mark.parametrize(("dosages", "until"), [
    ([{"text": "1 mg IM once", "timing": {"repeat": {"count": 1}}}], 1100),  # one dose: ends when written
    ([{"timing": {"repeat": {"count": 1, "boundsPeriod": {"start": ago(1000)}}}}], 1000),  # on its start
    ([{"timing": {"repeat": {"count": 6}}}], None), ([{"timing": {"repeat": {"count": 1}}}, {"text": "then monthly"}], None),
    ([{"timing": {"repeat": {"count": "1"}}}], None), ([], None),
])
def test_an_order_of_one_dose_ends_with_it(knowledge: Knowledge, dosages: Any, until: int | None) -> None:
    [f] = facts_of(knowledge, med_request(authoredOn=ago(1100), dosageInstruction=dosages)).of("metformin")
    assert f.until == (None if until is None else TODAY - timedelta(days=until))


@pytest.mark.parametrize(("clinical", "current"), [
    ({"coding": [{"system": "http://ehr.example.org/s", "code": "3", "display": "Resolved"},
                 {"system": "http://hl7.org/fhir/condition-clinical", "code": "resolved"}]}, False),  # STU3 URL, second
    ({"coding": [{"system": "http://ehr.example.org/s", "code": "1", "display": "Active"},
                 {"system": "http://hl7.org/fhir/condition-clinical", "code": "active"}]}, True),
    ({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "Resolved"}]}, False),
    ({"coding": [{"system": "http://ehr.example.org/s", "code": "R", "display": "Resolved"}]}, False),  # words only
    ({"text": "In remission"}, False),  # conditionStatusWords: remission
], ids=["stu3-url-second", "active-stu3", "capitals", "local-display", "words"])
def test_a_condition_status_is_read_wherever_and_however_it_is_written(
        knowledge: Knowledge, clinical: dict[str, Any], current: bool) -> None:
    raw = condition(MYALGIA, onset=ago(400)) | {"clinicalStatus": clinical}
    assert bool(facts_of(knowledge, raw).of("myalgia")) is current


def test_an_encounter_diagnosis_is_judged_by_its_date_not_its_status(knowledge: Knowledge) -> None:
    def category(*codes: str) -> list[dict[str, Any]]:
        return [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": c}]}
                for c in codes]
    [visit] = facts_of(knowledge, condition(MYALGIA, onset=ago(700), category=category("encounter-diagnosis"))).of("myalgia")
    assert not visit.active  # an old visit's diagnosis, left active
    [listed] = facts_of(knowledge, condition(MYALGIA, onset=ago(700),
                                             category=category("encounter-diagnosis", "problem-list-item"))).of("myalgia")
    assert listed.active  # also on the problem list: its status stands


def test_a_past_illness_with_an_onset_in_words_is_not_dated_by_its_entry(knowledge: Knowledge) -> None:
    flu = code(SNOMED, "6142004", "Influenza")
    raw = condition(flu, clinical="resolved") | {"recordedDate": ago(3), "onsetString": "March 2021"}
    raw.pop("onsetDateTime")
    [ended] = facts_of(knowledge, raw).ended["viral-illness"]
    assert ended.when is None  # not "3 days ago": entered then, begun years before
    # a current complaint keeps its entry date: its onset in words does not make it older
    current = condition(MYALGIA, clinical=None) | {"recordedDate": ago(3), "onsetString": "two weeks ago"}
    current.pop("onsetDateTime")
    [f] = facts_of(knowledge, current).of("myalgia")
    assert f.when == TODAY - timedelta(days=3)


def test_an_answer_to_a_history_question_is_no_current_finding(knowledge: Knowledge) -> None:
    """C-CDA history sections converted to Observations: the section's code, the condition as the answer."""
    flu = {"coding": [{"system": SNOMED, "code": "6142004", "display": "Influenza"}]}
    past = observation(code(LOINC, "11348-0", "History of Past illness"), valueCodeableConcept=flu)
    family = observation(code(LOINC, "10157-6", "History of family member diseases"),
                         valueCodeableConcept={"coding": [{"system": SNOMED, "code": "68962001"}]})
    assert concepts(facts_of(knowledge, past, family)) == set()
    symptom = observation(code(LOINC, "75325-1", "Symptom"), valueCodeableConcept=flu)  # a symptom question: read
    assert concepts(facts_of(knowledge, symptom)) == {"viral-illness", "symptom-report"}


# The lab's own upper limit (creatine kinase read against its referenceRange)

CK = code(LOINC, "2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma")


def _range(high: float, unit: str | None = "U/L", **extra: Any) -> dict[str, Any]:
    bound: dict[str, Any] = {"value": high} | ({"unit": unit, "code": unit} if unit else {})
    return {"low": {"value": 0}, "high": bound} | extra


@pytest.mark.parametrize(("ranges", "limit"), [
    ([_range(190)], 190.0),
    ([_range(190, unit=None)], 190.0),  # no unit on the range: the result's
    ([_range(3.2, unit="ukat/L")], 192.0),  # converted as the value is
    ([_range(190, type=code("http://terminology.hl7.org/CodeSystem/referencerange-meaning", "normal"))], 190.0),
    ([_range(190), _range(190)], 190.0),  # sent twice, agreeing
    ([_range(190), _range(167)], None),  # which is the patient's is not said
    ([_range(190, appliesTo=[{"text": "male"}])], None),  # a population's range
    ([_range(190, age={"low": {"value": 18}})], None),
    ([_range(190, type=code("http://terminology.hl7.org/CodeSystem/referencerange-meaning", "treatment"))], None),
    ([_range(190, unit="mg/dL")], None),  # a unit creatine kinase is not measured in
    ([{"high": {"value": 190, "unit": "U/L", "system": "http://lab.example.org/units", "code": "UPL"}}], 190.0),  # a local code
    ([{"text": "up to 190 U/L"}], None),
    ([{"high": {"value": "190"}}], None),  # junk is ignored, not fatal
    ([{"high": {"value": True}}], None),
    ("190", None),
], ids=["range", "range-without-unit", "microkatal", "typed-normal", "twice", "disagreeing", "applies-to", "age",
        "treatment", "other-unit", "local-code", "text-only", "string-value", "boolean-value", "not-a-list"])
def test_the_labs_upper_limit_is_read_from_one_normal_range(knowledge: Knowledge, ranges: Any, limit: float | None) -> None:
    pf = facts_of(knowledge, lab(CK, 260, "U/L", ago(3), referenceRange=ranges))
    (ck,) = pf.of("creatine-kinase")
    assert ck.value == 260 and ck.upper_limit == limit


@pytest.mark.parametrize(("concept", "value", "unit", "ranges", "limit"), [
    (MMA, 400, "nmol/L", [_range(318, unit="nmol/L")], 0.318),  # converted to µmol/L, as the value is
    (MMA, 400, "nmol/L", [_range(318, unit=None)], 0.318),  # no unit on the range: the result's
    (MMA, 0.4, "umol/L", [_range(318, unit="nmol/L")], 0.318),
    (MMA, 0.4, "umol/L", [_range(318, unit=None)], 318.0),  # a range in nmol/L sent unlabelled: kept, not believed (assessment)
    (HOMOCYSTEINE, 14, "umol/L", [_range(11.4, unit="umol/L")], 11.4),
    (HOMOCYSTEINE, 14, "umol/L", [_range(11.4, unit="mg/dL")], None),  # a unit homocysteine is not read in
], ids=["mma-nmol", "mma-range-without-unit", "mma-umol-range-nmol", "mma-unlabelled-other-unit", "homocysteine",
        "homocysteine-other-unit"])
def test_the_labs_upper_limit_on_an_mma_or_homocysteine_is_read_in_the_canonical_unit(
    knowledge: Knowledge, concept: dict[str, Any], value: float, unit: str, ranges: Any, limit: float | None
) -> None:
    [f] = [f for fs in facts_of(knowledge, lab(concept, value, unit, ago(3), referenceRange=ranges)).by_concept.values() for f in fs]
    assert f.upper_limit == limit


def test_the_labs_flags_are_kept_upper_case(knowledge: Knowledge) -> None:
    flag = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "h"}]}
    pf = facts_of(knowledge, lab(CK, 180, "U/L", ago(3), interpretation=[flag]))
    assert pf.of("creatine-kinase")[0].flags == frozenset({"H"})


@pytest.mark.parametrize(("lab_code", "value", "unit"), [
    (B12, 150, "ng/mL"),  # 150,000 pg/mL: 150 ng/L mistyped
    (HB, 130, "g/dL"),  # 130 g/L sent as g/dL
    (MCV, 1040, "fL"),
    (MCV, 1040, None),  # no unit: read in fL, the lab's one unit, and still not plausible
])
def test_a_value_no_lab_reports_is_kept_but_never_compared(knowledge: Knowledge, lab_code: dict[str, Any], value: float,
                                                           unit: str | None) -> None:
    quantity = {"value": value} | ({"unit": unit, "code": unit, "system": "http://unitsofmeasure.org"} if unit else {})
    [f] = [f for fs in facts_of(knowledge, observation(lab_code, ago(5), valueQuantity=quantity)).by_concept.values() for f in fs]
    assert f.value is None and f.implausible and f.reported_value == value


def test_a_unitless_b12_is_read_only_in_the_units_that_make_it_plausible(knowledge: Knowledge) -> None:
    raw = observation(B12, ago(5), valueQuantity={"value": 25000})  # pg/mL: plausible; pmol/L: 33,875 pg/mL, not
    [f] = facts_of(knowledge, raw).of("b12-result")
    assert f.unitless_values == (25000,)


@pytest.mark.parametrize(("extra", "counted"), [
    ({"medicationReference": {"reference": "Medication/not-sent"}}, 1),  # no _include, no display
    ({"medicationReference": {"reference": "Medication/not-sent", "display": "Omeprazole 20 mg"}}, 0),
    ({"medicationReference": {"reference": "Medication/not-sent"}, "status": "cancelled"}, 0),  # never B12 given
    ({"medicationReference": {"reference": "Medication/not-sent"}, "status": "completed"}, 1),  # may be B12 given
    ({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "000000"}]}}, 0),  # named, not known
])
def test_a_medicine_that_cannot_be_named_is_counted(knowledge: Knowledge, extra: dict[str, Any], counted: int) -> None:
    assert facts_of(knowledge, med_request(**extra)).unnamed_medications == counted


def test_a_low_flag_beside_a_value_no_lab_reports_is_not_read(knowledge: Knowledge) -> None:
    """900 'ng/mL' is no B12 any lab reports: its flag may belong to another value (found in the diff
    review: the flag was believed, and a critical 'treat, do not test' card came back)."""
    flag = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L"}]}
    bands = knowledge.rule.b12_result.bands["b12-result"]
    for raw in (lab(B12, 900, "ng/mL", ago(5), interpretation=[flag]),
                observation(B12, ago(5), valueQuantity={"value": 40000}, interpretation=[flag])):  # no unit: implausible in each
        [f] = facts_of(knowledge, raw).of("b12-result")
        assert f.implausible and f.flagged_low and not low_flag_believed(f, bands) and b12_band(f, bands) != "deficient"


# Dates at the ends of time (found by the attacker review: each raised OverflowError, a 500)


PREGNANCY = code(ICD10CM, "Z34.90", "Encounter for supervision of normal pregnancy, unspecified")


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001", "9999-12-20",
                                  "1799-12-31", "3000-01-01"])
def test_a_date_no_record_can_have_is_read_as_none_and_nothing_overflows(knowledge: Knowledge, when: str) -> None:
    """Year 1 moved across a zone, 90 days before year 1, a pregnancy's 300 days after 9999-12-20:
    dates outside 1800-2999 are corrupt, read as no date; the rest of the record is read and assessed."""
    from cds_service.assessment import assess

    records = [condition(MYALGIA, ago(10)), condition(PREGNANCY, when, clinical="active"),
               lab(B12, 250, "pg/mL", when, issued="0001-01-01T00:00:00+01:00"),  # indeterminate: 90 days back
               lab(HB, 10.5, "g/dL", ago(20), issued=when), lab(B12, 400, "pg/mL", ago(400))]
    pf = facts_of(knowledge, *records, patient={"resourceType": "Patient", "id": "p", "birthDate": when[:4]})
    assert all(f.when is None or date(1800, 1, 1) <= f.when <= date(2999, 12, 31) for fs in pf.by_concept.values() for f in fs)
    assert pf.birth_date is None
    assert pf.of("myalgia")  # the rest of the record is read (an issued instant FHIR refuses skips its result only)
    assert assess(pf, knowledge, TODAY).outcome != "undecided"  # and assessed to an outcome


def test_a_medicine_status_sent_as_a_list_is_no_status(knowledge: Knowledge) -> None:
    """An unnamed medicine with `status: ["active"]` was looked up in a set: TypeError, a 500."""
    odd = {"coding": [{"system": "http://ehr.example.org/formulary", "code": "F-9"}]}
    for state in ([], ["active"], {}):
        pf = facts_of(knowledge, condition(MYALGIA), med_request(medicationCodeableConcept=odd, status=state))
        assert pf.of("myalgia") and pf.unnamed_medications == 0


@pytest.mark.parametrize(("interpretation", "absent"), [
    ([code("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "NEG")], True),
    ([code("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "ND")], True),
    ([{"text": "Negative"}], True), ([{"text": "Absent"}], True),
    ([code("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS")], False),
    ([{"text": "Present"}], False),
])
def test_a_symptom_sent_with_no_value_and_a_negative_interpretation_is_absent(
    knowledge: Knowledge, interpretation: list[dict[str, Any]], absent: bool
) -> None:
    """Found in the clinical review: a flowsheet's myalgia flagged Negative was read as a complaint."""
    myalgia = code(SNOMED, "68962001", "Myalgia")
    found = facts_of(knowledge, observation(myalgia, ago(3), interpretation=interpretation)).of("myalgia")
    assert (found == []) is absent
    # a value decides, not the flag beside it
    valued = facts_of(knowledge, observation(myalgia, ago(3), interpretation=interpretation, valueBoolean=True)).of("myalgia")
    assert len(valued) == 1


@pytest.mark.parametrize("interpretation", [[{"text": "N"}], [{"text": "Negative"}],
                                            [code("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "NEG")]])
def test_a_lab_result_with_no_value_and_a_flag_is_still_a_result(knowledge: Knowledge, interpretation: list[dict[str, Any]]) -> None:
    """Found in the diff review: a symptom's negative flag is no lab's ('N' is the Normal flag): a B12
    sent with a flag and no value is a result reported, as before."""
    found = facts_of(knowledge, observation(B12, ago(30), interpretation=interpretation))
    assert len(found.of("b12-result")) + len(found.no_result) == 1
