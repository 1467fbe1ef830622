"""PatientData gathers raw resources from prefetch: Bundles and single resources, each once, junk counted.

Null and absent keys add nothing; resources are de-duplicated by type and id; Medications are kept by
id for medicationReference; the first Patient is the patient; nested Bundles are unpacked; anything
that is not a resource object is counted as malformed and never stops the gathering.
"""

from typing import Any

import pytest

from cds_service.patient_data import RESOURCE_TYPES, PatientData, from_prefetch, patient_of, readable

PATIENT = {"resourceType": "Patient", "id": "pt-1", "birthDate": "1950-01-01"}


def resource(rtype: str, rid: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"resourceType": rtype, **({"id": rid} if rid is not None else {}), **fields}


def bundle(*resources: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)]}


def test_null_absent_and_empty_prefetch_add_nothing() -> None:
    for prefetch in [None, {}, {"patient": None, "conditions": None}, {"conditions": bundle()}]:
        data = from_prefetch(prefetch)
        assert data.patient is None
        assert data.resources == {}
        assert data.medications == {}
        assert data.malformed == 0
        assert data.count() == 0


def test_single_resources_and_bundles_are_gathered_by_type() -> None:
    condition = resource("Condition", "c-1")
    observations = [resource("Observation", "o-1"), resource("Observation", "o-2")]
    data = from_prefetch({
        "patient": PATIENT,
        "conditions": bundle(condition),
        "observations": bundle(*observations),
        "procedures": resource("Procedure", "p-1"),
    })
    assert data.patient is PATIENT
    assert data.of_type("Condition") == [condition]
    assert data.of_type("Observation") == observations
    assert [r["id"] for r in data.of_type("Procedure")] == ["p-1"]
    assert data.of_type("ServiceRequest") == []
    assert data.count() == 5  # four resources and the patient
    assert data.malformed == 0


def test_the_same_resource_in_two_keys_is_kept_once() -> None:
    first = resource("Observation", "o-1", status="final")
    again = resource("Observation", "o-1", status="amended")
    data = from_prefetch({"observations": bundle(first), "b12Results": bundle(again, first)})
    assert data.of_type("Observation") == [first]  # the first copy wins
    assert data.count() == 1


def test_de_duplication_is_by_type_and_id_together() -> None:
    data = from_prefetch({
        "conditions": bundle(resource("Condition", "x")),
        "observations": bundle(resource("Observation", "x")),
        "b12Orders": bundle(resource("ServiceRequest", "x"), resource("ServiceRequest", "y")),
    })
    assert [r["id"] for r in data.of_type("Condition")] == ["x"]
    assert [r["id"] for r in data.of_type("Observation")] == ["x"]
    assert [r["id"] for r in data.of_type("ServiceRequest")] == ["x", "y"]
    assert data.count() == 4


def test_resources_without_a_string_id_are_all_kept() -> None:
    no_id = resource("Condition", code={"text": "myalgia"})
    numeric_id = resource("Condition", None, id=7)
    data = from_prefetch({"conditions": bundle(no_id, no_id, numeric_id, numeric_id)})
    assert data.of_type("Condition") == [no_id, no_id, numeric_id, numeric_id]
    assert data.malformed == 0


def test_medications_are_kept_by_id_for_medication_reference() -> None:
    metformin = resource("Medication", "med-1", code={"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                 "code": "6809"}]})
    request = resource("MedicationRequest", "mr-1", medicationReference={"reference": "Medication/med-1"})
    included = bundle(request, metformin)
    included["entry"][1]["search"] = {"mode": "include"}
    data = from_prefetch({"medications": included, "b12Administrations": bundle(resource("Medication", "med-1"))})
    # the first copy, not a later one with the same id; by its entry's urn:uuid fullUrl too
    assert data.medications == {"med-1": metformin, "urn:uuid:1": metformin}
    assert data.of_type("MedicationRequest") == [request]
    assert data.of_type("Medication") == []  # not a record of its own
    assert data.count() == 1


def test_a_medication_is_also_kept_by_its_entry_full_url() -> None:
    """References in a Bundle resolve against its fullUrls: a transaction or document Bundle (Synthea's
    output) names a Medication by `urn:uuid:…`, which carries no id."""
    metformin = resource("Medication", code={"text": "metformin"})
    request = resource("MedicationRequest", "mr-1", medicationReference={"reference": "urn:uuid:5f1c0a4e"})
    sent = bundle(request, metformin)
    sent["entry"][1]["fullUrl"] = "urn:uuid:5f1c0a4e"
    data = from_prefetch({"medications": sent})
    assert data.medications == {"urn:uuid:5f1c0a4e": metformin}
    assert data.of_type("MedicationRequest") == [request]


def test_a_medication_with_neither_an_id_nor_a_urn_full_url_cannot_be_referenced_and_is_dropped() -> None:
    sent = bundle(resource("Medication", code={"text": "metformin"}))
    sent["entry"][0]["fullUrl"] = "https://ehr.example.org/fhir/Medication"  # no id in it either
    data = from_prefetch({"medications": sent})
    assert data.medications == {}
    assert data.resources == {}


def test_the_first_patient_is_the_patient() -> None:
    other = resource("Patient", "pt-2", birthDate="2015-01-01")
    data = from_prefetch({"patient": PATIENT, "conditions": bundle(other, resource("Condition", "c-1"))})
    assert data.patient is PATIENT
    assert data.of_type("Patient") == []
    assert data.count() == 2


def test_nested_bundles_are_unpacked() -> None:
    inner = bundle(resource("Condition", "c-2"), bundle(resource("Observation", "o-1")))
    data = from_prefetch({"conditions": bundle(resource("Condition", "c-1"), inner, resource("Condition", "c-1"))})
    assert [r["id"] for r in data.of_type("Condition")] == ["c-1", "c-2"]
    assert [r["id"] for r in data.of_type("Observation")] == ["o-1"]
    assert "Bundle" not in data.resources


def test_a_deeply_nested_bundle_is_refused_not_recursed() -> None:
    """A Bundle in a Bundle (a batch response) is read; nesting past any EHR's is counted as malformed
    (2,000 levels once overflowed the stack: a 500)."""
    shallow: dict[str, Any] = bundle(bundle(resource("Condition", "c-shallow")))
    deep: dict[str, Any] = bundle(resource("Condition", "c-deep"))
    for _ in range(2000):
        deep = bundle(deep)
    data = from_prefetch({"conditions": shallow, "deep": deep})
    assert [r["id"] for r in data.of_type("Condition")] == ["c-shallow"]
    assert data.malformed == 1


@pytest.mark.parametrize("bad", [
    {},  # no resourceType
    {"id": "c-1", "code": {}},
    {"resourceType": 5, "id": "c-1"},
    {"resourceType": None},
    None,
    "Condition/c-1",
    42,
    [resource("Condition", "c-1")],
])
def test_a_malformed_entry_is_counted_and_the_rest_still_gathered(bad: Any) -> None:
    good = resource("Condition", "c-2")
    conditions = bundle(good)
    conditions["entry"].insert(0, {"resource": bad})
    data = from_prefetch({"conditions": conditions, "patient": PATIENT})
    assert data.malformed == 1
    assert data.of_type("Condition") == [good]
    assert data.patient is PATIENT


def test_malformed_counts_add_up_across_keys_and_calls() -> None:
    conditions = bundle(resource("Condition", "c-1"))
    conditions["entry"] += [{"resource": {}}] * 3
    data = from_prefetch({"conditions": conditions, "observations": bundle(None, "x")})
    assert data.malformed == 5
    data.add(7)
    data.add(resource("Observation", "o-1"))
    assert data.malformed == 6
    assert data.count() == 2


def test_what_cannot_be_read_under_a_key_not_asked_for_is_not_counted() -> None:
    """The spec's own example sends `"user": "123"`: not a record the card could report as left out.
    Resources under such a key are still read; junk under an asked key is still counted."""
    asked = ("patient", "conditions")
    junk = {"user": "123", "hint": {"id": "x"}, "list": [1], "extra": bundle(None, resource("Condition", "c-9"))}
    data = from_prefetch({"patient": PATIENT, **junk}, asked=asked)
    assert data.malformed == 0 and [c["id"] for c in data.of_type("Condition")] == ["c-9"]
    assert from_prefetch({"conditions": "123", "user": "123"}, asked=asked).malformed == 1
    assert from_prefetch(junk).malformed == 4  # no template keys given: everything counts, as before


def test_a_bundle_without_usable_entries_adds_nothing() -> None:
    for odd in [{"resourceType": "Bundle"}, {"resourceType": "Bundle", "entry": None},
                {"resourceType": "Bundle", "entry": [{"fullUrl": "urn:uuid:1"}]}]:
        data = from_prefetch({"conditions": odd})
        assert data.resources == {}
        assert data.patient is None


@pytest.mark.parametrize("entry", [[42], ["Condition/c-1"], [None], "Condition/c-1"])
def test_a_bundle_entry_that_is_not_an_object_is_counted(entry: Any) -> None:
    data = from_prefetch({"conditions": {"resourceType": "Bundle", "type": "searchset", "entry": entry}})
    assert data.malformed == 1


@pytest.mark.parametrize("bent", [
    {"resourceType": "Bundle", "entry": {"resource": {"resourceType": "Condition", "id": "c-1"}}},  # entry as an object
    {"type": "searchset", "entry": [{"resource": {"resourceType": "Condition", "id": "c-1"}}]},  # no resourceType
])
def test_a_bundle_bent_as_real_clients_bend_it_is_read(bent: dict[str, Any]) -> None:
    data = from_prefetch({"conditions": bent})
    assert [r["id"] for r in data.of_type("Condition")] == ["c-1"] and data.malformed == 0
    assert readable(bent)


@pytest.mark.parametrize("value", ["Bundle", 42, [], {"type": "searchset"}, {"resourceType": 7}, {"id": "c-1"}])
def test_a_value_that_is_neither_a_resource_nor_a_bundle_is_not_readable(value: Any) -> None:
    assert not readable(value)


def test_the_input_is_not_modified() -> None:
    prefetch = {"patient": PATIENT, "conditions": bundle(resource("Condition", "c-1"), {}, resource("Condition", "c-1"))}
    before = repr(prefetch)
    from_prefetch(prefetch)
    assert repr(prefetch) == before


def test_other_resource_types_are_kept_but_the_rule_reads_only_its_own() -> None:
    outcome = resource("OperationOutcome", "oo-1", issue=[{"severity": "information", "code": "informational"}])
    data = PatientData()
    data.add(bundle(resource("Condition", "c-1"), outcome))
    assert data.of_type("OperationOutcome") == [outcome]
    assert "OperationOutcome" not in RESOURCE_TYPES
    assert set(RESOURCE_TYPES) >= {"Condition", "Observation", "MedicationRequest", "MedicationStatement",
                                   "MedicationAdministration", "Procedure", "ServiceRequest"}


@pytest.mark.parametrize(("reference", "named"), [
    ("Patient/p1", "p1"),
    ("https://ehr.example.org/fhir/Patient/p1", "p1"),
    ("Patient/p1/_history/4", "p1"),
    ("urn:uuid:6b8e6f4e-1f3c-4b7a-9a44-2f4c2d1f0a11", None),
    ("Group/g1", None),
    ("Patient/", None),
])
def test_patient_of_reads_the_patient_a_reference_names(reference: str, named: str | None) -> None:
    assert patient_of({"reference": reference}) == named


def test_a_record_naming_another_patient_by_identifier_only_is_left_out() -> None:
    """A subject that is only an identifier (no reference): another value in a system the Patient has
    is another patient (found in the clinical review: read as this patient's myalgia); the patient's own
    value, or a system the Patient does not carry, cannot be told apart and is read."""
    mrn = "urn:mrn"
    patient = resource("Patient", "p1", identifier=[{"system": mrn, "value": "1"}])
    mine = resource("Condition", "c1", subject={"identifier": {"system": mrn, "value": "1"}})
    theirs = resource("Condition", "c2", subject={"identifier": {"system": mrn, "value": "999"}})
    unknown = resource("Condition", "c3", subject={"identifier": {"system": "urn:other", "value": "999"}})
    referenced = resource("Condition", "c4", subject={"reference": "Patient/p1", "identifier": {"system": mrn, "value": "9"}})
    data = from_prefetch({"conditions": bundle(mine, theirs, unknown, referenced), "patient": patient}, "p1")
    assert [r["id"] for r in data.of_type("Condition")] == ["c1", "c3", "c4"] and data.other_patient == 1
    # spaces, case and leading zeros aside, a Group's identifier, a null reference (diff review)
    patient = resource("Patient", "p1", identifier=[{"system": mrn, "value": "ab0012"}])
    same = [resource("Condition", f"s{i}", subject={"identifier": {"system": mrn, "value": v}})
            for i, v in enumerate(["ab0012 ", "AB0012", "0ab0012"])]
    group = resource("Condition", "g", subject={"type": "Group", "identifier": {"system": mrn, "value": "9"}})
    null_ref = resource("Condition", "n", subject={"reference": None, "identifier": {"system": mrn, "value": "9"}})
    data = from_prefetch({"patient": patient, "conditions": bundle(*same, group, null_ref)}, "p1")
    assert [r["id"] for r in data.of_type("Condition")] == ["s0", "s1", "s2", "g"] and data.other_patient == 1


def test_resources_for_another_patient_are_left_out_and_counted() -> None:
    mine = resource("Condition", "c-1", subject={"reference": "Patient/p1"})
    theirs = resource("Condition", "c-2", subject={"reference": "https://ehr.example.org/fhir/Patient/p2"})
    unreadable = resource("Condition", "c-3", subject={"reference": "urn:uuid:1"})
    other_patient = {"resourceType": "Patient", "id": "p2", "birthDate": "1950-01-01"}
    data = from_prefetch({"patient": other_patient, "conditions": bundle(mine, theirs, unreadable)}, "p1")
    assert [r["id"] for r in data.of_type("Condition")] == ["c-1", "c-3"]
    assert data.patient is None and data.other_patient == 2
    assert from_prefetch({"conditions": bundle(mine, theirs)}).other_patient == 0  # no patient id: no check


def test_a_patient_with_another_id_is_left_out_even_when_it_claims_our_patient_as_subject() -> None:
    impostor = {"resourceType": "Patient", "id": "p2", "birthDate": "1950-01-01", "subject": {"reference": "Patient/p1"}}
    data = from_prefetch({"patient": impostor}, "p1")
    assert data.patient is None and data.other_patient == 1 and data.foreign_patient


@pytest.mark.parametrize(("first", "second", "kept"), [
    ({"versionId": "1"}, {"versionId": "2"}, "second"),
    ({"versionId": "2"}, {"versionId": "1"}, "first"),
    ({"lastUpdated": "2026-11-01T10:00:00Z"}, {"lastUpdated": "2026-11-01T12:00:00+01:00"}, "second"),
    ({"lastUpdated": "2026-11-01T12:00:00+01:00"}, {"lastUpdated": "2026-11-01T10:00:00Z"}, "first"),
    ({}, {"versionId": "2"}, "first"), ({"versionId": "a"}, {"versionId": "b"}, "first"),
    ({"lastUpdated": "yesterday"}, {"lastUpdated": "2026-11-01T10:00:00Z"}, "first"),
])
def test_a_record_sent_twice_keeps_its_newer_version(first: dict[str, Any], second: dict[str, Any], kept: str) -> None:
    """Found in review: a result under two prefetch keys, the later version entered in error, was read
    in whichever version came first."""
    data = PatientData(patient_id="p")
    for meta, state in ((first, "first"), (second, "second")):
        data.add({"resourceType": "Observation", "id": "o1", "status": state, "meta": meta, "subject": {"reference": "Patient/p"}})
    assert [r["status"] for r in data.of_type("Observation")] == [kept]


@pytest.mark.parametrize("rtype", ["observation", "OBSERVATION", "Observation ", " condition", "medicationrequest"])
def test_a_type_the_rule_reads_spelt_otherwise_is_counted_not_lost_in_silence(rtype: str) -> None:
    """FHIR spells types one way; a B12 result sent as "observation" was stored under a type nothing
    reads and counted nowhere, so the card said no result was on record (found by the attacker review).
    Other types (an Encounter, a Practitioner from an _include) are no concern of the rule."""
    data = from_prefetch({"observations": bundle(resource(rtype, "o-1"), resource("Encounter", "e-1"))})
    assert data.malformed == 1
    assert data.of_type("Observation") == [] and data.of_type("Condition") == []


@pytest.mark.parametrize("version", ["²", "1" * 5000, "-1", "", " 2"])
def test_a_version_id_that_is_no_plain_number_falls_back_to_last_updated(version: str) -> None:
    """"²" is a digit to str.isdigit but no number to int, and 5,000 digits exceed int()'s limit:
    both raised (a 500) when a record came twice (found by the attacker review)."""
    older = resource("Observation", "o-1", status="final", meta={"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"})
    newer = resource("Observation", "o-1", status="amended", meta={"versionId": version, "lastUpdated": "2026-02-01T00:00:00Z"})
    data = from_prefetch({"observations": bundle(older, newer)})
    assert data.of_type("Observation") == [newer]


def test_last_updated_at_the_ends_of_time_compares_without_overflow() -> None:
    older = resource("Observation", "o-1", meta={"lastUpdated": "0001-01-01T00:00:00+01:00"})
    newer = resource("Observation", "o-1", meta={"lastUpdated": "9999-12-31T23:59:59-14:00"})
    assert from_prefetch({"observations": bundle(older, newer)}).of_type("Observation") == [older]
