"""Lenient R4 validation: repairs, and validation scoped to the elements the rule reads."""

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
