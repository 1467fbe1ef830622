"""Lenient R4 validation: repairs, and validation scoped to the elements the rule reads."""

from datetime import date
from typing import Any

import pytest

from cds_service import fhir_models
from cds_service.facts import ELEMENTS_READ

OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "787-2"}]},
    "effectiveDateTime": "2026-11-01", "valueQuantity": {"value": 104, "unit": "fL"},
}


def test_single_objects_where_lists_belong_are_wrapped() -> None:
    model = fhir_models.parse({**OBSERVATION, "category": {"text": "laboratory"}})
    assert model is not None and model.category[0].text == "laboratory"  # type: ignore[attr-defined]


@pytest.mark.parametrize("elements", [None, ELEMENTS_READ])
def test_a_condition_status_sent_as_a_bare_code_is_wrapped_into_its_r4_code_system(elements: frozenset[str] | None) -> None:
    """DSTU2 and STU3 wrote Condition statuses as codes (Cerner's DSTU2 sandbox: "clinicalStatus": "resolved",
    "verificationStatus": "confirmed"); R4's code systems hold every one of them."""
    raw = {"resourceType": "Condition", "id": "c1", "code": {"text": "Myalgia"}, "subject": {"reference": "Patient/p"},
           "clinicalStatus": "Resolved ", "verificationStatus": "confirmed"}
    model: Any = fhir_models.parse(raw, elements)
    assert model is not None
    assert (model.clinicalStatus.coding[0].system, model.clinicalStatus.coding[0].code) == (
        "http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved")
    assert model.verificationStatus.coding[0].code == "confirmed"
    assert raw["clinicalStatus"] == "Resolved "  # the raw resource is untouched
    assert fhir_models.parse({**raw, "clinicalStatus": " "}) is None  # nothing to wrap: still invalid
    assert fhir_models.parse({**OBSERVATION, "status": "final"}) is not None  # other types' codes stay codes


@pytest.mark.parametrize("elements", [None, ELEMENTS_READ])
@pytest.mark.parametrize("older", ["assertedDate", "dateRecorded"])
def test_a_condition_recorded_date_under_its_older_names_is_read(older: str, elements: frozenset[str] | None) -> None:
    """STU3 assertedDate, DSTU2 dateRecorded: R4's recordedDate, which dates a Condition with no onset."""
    raw = {"resourceType": "Condition", "id": "c1", "code": {"text": "Myalgia"}, "subject": {"reference": "Patient/p"},
           older: "2026-11-01"}
    model: Any = fhir_models.parse(raw, elements)
    assert model is not None and str(model.recordedDate)[:10] == "2026-11-01"
    both: Any = fhir_models.parse({**raw, "recordedDate": "2026-10-01"}, elements)  # R4's own name wins
    assert both is not None and str(both.recordedDate)[:10] == "2026-10-01"
    assert fhir_models.parse({**OBSERVATION, "dateRecorded": "2026-11-01"}) is not None  # other types: dropped as unknown


def test_malformed_unread_element_fails_full_validation_only() -> None:
    raw = {**OBSERVATION, "performer": "Dr Who", "referenceRange": [{"low": "eighty"}]}
    assert fhir_models.parse(raw) is None
    model = fhir_models.parse(raw, ELEMENTS_READ)
    assert model is not None
    assert float(model.valueQuantity.value) == 104  # type: ignore[attr-defined]


def test_read_elements_are_still_validated() -> None:
    assert fhir_models.parse({**OBSERVATION, "effectiveDateTime": "last week"}, ELEMENTS_READ) is None
    assert fhir_models.parse({**OBSERVATION, "valueQuantity": {"value": "lots"}}, ELEMENTS_READ) is None


def test_required_elements_are_kept_and_checked_even_when_not_read() -> None:
    no_code = {k: v for k, v in OBSERVATION.items() if k != "code"}
    assert fhir_models.parse(no_code, ELEMENTS_READ) is None
    no_medication = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                     "subject": {"reference": "Patient/p"}}
    assert fhir_models.parse(no_medication, ELEMENTS_READ) is None


def test_choice_elements_are_kept_under_every_type_name() -> None:
    raw = {**OBSERVATION, "valueQuantity": None, "valueBoolean": False,
           "effectiveDateTime": None, "effectivePeriod": {"start": "2026-10-01"}}
    model = fhir_models.parse(raw, ELEMENTS_READ)
    assert model is not None
    assert model.valueBoolean is False  # type: ignore[attr-defined]
    assert str(model.effectivePeriod.start) == "2026-10-01"  # type: ignore[attr-defined]


def test_modifier_extension_marks_a_record_unsafe() -> None:
    flagged = {**OBSERVATION, "modifierExtension": [{"url": "http://ehr.example.org/ruled-out", "valueBoolean": True}]}
    assert fhir_models.has_modifier_extension(flagged)
    assert not fhir_models.has_modifier_extension({**OBSERVATION, "extension": [{"url": "http://x", "valueString": "y"}]})
    assert not fhir_models.has_modifier_extension({**OBSERVATION, "modifierExtension": []})


@pytest.mark.parametrize(("written", "fhir"), [
    ("2026-11-20T10:00:00", "2026-11-20T10:00:00Z"),  # no zone: read as written
    ("2026-11-20T23:30:00.000+0000", "2026-11-20T23:30:00.000+00:00"),  # offset without its colon
    ("2026-10-17T10:00:00+05", "2026-10-17T10:00:00+05:00"),  # an offset in hours only (ISO 8601 allows it)
    ("2026-11-20T10:00-0530", "2026-11-20T10:00:00-05:30"),  # no seconds
    ("2026-11-20T10:00", "2026-11-20T10:00:00Z"),
    ("2026-11-20 10:00:00", "2026-11-20T10:00:00Z"),  # a space for the T
])
def test_a_date_time_as_converters_write_it_is_written_as_fhir_requires(written: str, fhir: str) -> None:
    assert fhir_models.normalise_date_time(written) == fhir


@pytest.mark.parametrize("value", ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00+01:00", "2026-11-20", "2026-11",
                                   "2026", "last week", "2026-11-20T10", "20261120T1000", "", 20261120, None])
def test_a_valid_or_unreadable_date_time_is_left_as_it_was(value: object) -> None:
    assert fhir_models.normalise_date_time(value) is value


def test_the_date_times_of_the_elements_read_are_normalised_before_validation() -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p"}, "code": {"text": "Myalgia"},
                 "onsetDateTime": "2026-11-20T23:30:00", "recordedDate": "2026-11-21T08:00+0100"}
    model: Any = fhir_models.parse(condition, ELEMENTS_READ)
    assert model is not None
    assert (model.onsetDateTime.date(), model.recordedDate.date()) == (date(2026, 11, 20), date(2026, 11, 21))
    observation = {**OBSERVATION, "effectiveDateTime": None, "effectivePeriod": {"start": "2026-11-01T09:15"},
                   "issued": "2026-11-02T10:00:00.000-0500"}
    model = fhir_models.parse(observation, ELEMENTS_READ)
    assert model is not None
    assert (model.effectivePeriod.start.date(), model.issued.date()) == (date(2026, 11, 1), date(2026, 11, 2))
    request = {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/p"},
               "medicationCodeableConcept": {"text": "omeprazole"}, "authoredOn": "2023-11-27T09:30:00.000+0000",
               "dispenseRequest": {"validityPeriod": {"start": "2023-11-26 09:00", "end": "2024-11-26T09:00:00"}}}
    model = fhir_models.parse(request, ELEMENTS_READ)
    assert model is not None and model.dispenseRequest.validityPeriod.start.date() == date(2023, 11, 26)
    assert request["authoredOn"] == "2023-11-27T09:30:00.000+0000"  # the raw resource is not altered
    assert request["dispenseRequest"] == {"validityPeriod": {"start": "2023-11-26 09:00", "end": "2024-11-26T09:00:00"}}


@pytest.mark.parametrize("when", ["2026-11-20T25:00:00", "2026-13-01T10:00:00", "2026-11-20T10:00:00+2500", "yesterday 10:00"])
def test_a_date_time_that_is_no_date_still_fails_validation(when: str) -> None:
    assert fhir_models.parse({**OBSERVATION, "effectiveDateTime": when}, ELEMENTS_READ) is None


def test_unknown_keys_inside_elements_are_dropped_and_the_raw_resource_is_untouched() -> None:
    raw: dict[str, Any] = {
        **OBSERVATION,
        "code": {"coding": [{"system": "http://loinc.org", "code": "787-2", "primary": True}]},
        "valueQuantity": {"value": 104, "unit": "fL", "vendorRange": "80-100"},
    }
    model = fhir_models.parse(raw, ELEMENTS_READ)
    assert model is not None and model.code.coding[0].code == "787-2"  # type: ignore[attr-defined]
    assert raw["code"]["coding"][0]["primary"] is True and raw["valueQuantity"]["vendorRange"] == "80-100"


def test_an_unknown_key_does_not_excuse_another_error() -> None:
    raw = {**OBSERVATION, "code": {"coding": [{"code": "787-2", "primary": True}]}, "effectiveDateTime": "last week"}
    assert fhir_models.parse(raw, ELEMENTS_READ) is None


@pytest.mark.parametrize("elements", [None, ELEMENTS_READ])
def test_single_objects_inside_elements_are_wrapped_and_the_raw_resource_is_untouched(elements: frozenset[str] | None) -> None:
    """Found in review: a one-item coding sent as an object dropped the whole record, so an active
    B12 prescription or a recent B12 result went unread and a card fired wrongly."""
    raw: dict[str, Any] = {
        **OBSERVATION,
        "code": {"coding": {"system": "http://loinc.org", "code": "787-2"}},
        "interpretation": {"coding": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}},
    }
    model = fhir_models.parse(raw, elements)
    assert model is not None
    assert model.code.coding[0].code == "787-2"  # type: ignore[attr-defined]
    if elements is None:  # the rule reads the flag from the raw record: validated only in full
        assert model.interpretation[0].coding[0].code == "H"  # type: ignore[attr-defined]
    assert isinstance(raw["code"]["coding"], dict)


def test_a_bare_reference_and_a_numeric_display_are_read_as_meant() -> None:
    raw = {**OBSERVATION, "subject": "Patient/p1", "code": {"coding": [{"system": "http://loinc.org", "code": "787-2", "display": 787}]}}
    model = fhir_models.parse(raw)
    assert model is not None and model.subject.reference == "Patient/p1"  # type: ignore[attr-defined]
    assert model.code.coding[0].display == "787"  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [
    {"code": {"coding": {"system": "http://loinc.org", "code": 787}}},  # a code that is a number: not mended
    {"subject": "the patient"},  # no reference
    {"code": {"coding": [[{"code": "787-2"}, {"code": "788-0"}]]}},  # a list of two inside a list
])
def test_what_cannot_be_mended_still_fails(bad: dict[str, Any]) -> None:
    assert fhir_models.parse({**OBSERVATION, **bad}) is None


def test_a_status_in_another_case_is_read_as_its_code() -> None:
    """Found in review: a recent B12 with status "Final" was ignored, and the card fired."""
    model = fhir_models.parse({**OBSERVATION, "status": " Final"}, ELEMENTS_READ)
    assert model is not None and model.status == "final"  # type: ignore[attr-defined]


def test_a_record_with_thousands_of_errors_is_refused_not_mended(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mending copies what holds it: a hostile record with an error in every one of thousands
    of codings is refused at once rather than mended in time proportional to their square."""
    mended: list[object] = []
    real = fhir_models._replaced
    monkeypatch.setattr(fhir_models, "_replaced", lambda *args: mended.append(args) or real(*args))
    raw = {**OBSERVATION, "code": {"coding": [{"system": "http://loinc.org", "code": "787-2", "x": 1} for _ in range(5000)]}}
    assert fhir_models.parse(raw) is None and mended == []
    few = {**OBSERVATION, "code": {"coding": [{"system": "http://loinc.org", "code": "787-2", "x": 1} for _ in range(3)]}}
    assert fhir_models.parse(few) is not None and mended


def test_an_empty_string_is_absent_and_a_list_of_one_is_its_element() -> None:
    """FHIR has no empty strings; found in the order review: an empty display or text, or a performer
    sent as a list, dropped the whole draft."""
    raw = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": {"reference": "Patient/p"},
           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5640", "display": ""}], "text": ""},
           "performer": [{"reference": "Practitioner/1"}], "reasonCode": [{"text": ""}]}
    model = fhir_models.parse(raw)
    assert model is not None
    assert model.medicationCodeableConcept.coding[0].display is None and model.medicationCodeableConcept.text is None  # type: ignore[attr-defined]
    assert model.performer.reference == "Practitioner/1"  # type: ignore[attr-defined]
