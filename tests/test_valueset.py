"""Value sets compile to lookups; ICD-10-CM codes match with or without the dot; is-a by prefix."""

import pytest

from cds_service.knowledge import Knowledge
from cds_service.valueset import ValueSetError, compile_valueset


def test_icd10_dot_and_case_insensitive(knowledge: Knowledge) -> None:
    vs = knowledge.valuesets["myalgia"]
    assert vs.contains("http://hl7.org/fhir/sid/icd-10-cm", "M79.10")
    assert vs.contains("http://hl7.org/fhir/sid/icd-10-cm", "m7910")
    assert vs.contains("urn:oid:2.16.840.1.113883.6.90", "M79.1")
    assert not vs.contains("http://hl7.org/fhir/sid/icd-10-cm", "M79.11")
    assert not vs.contains("http://snomed.info/sct", "M79.10")


def test_is_a_on_icd10_is_a_prefix(knowledge: Knowledge) -> None:
    vs = knowledge.valuesets["malabsorption-autoimmune"]
    assert vs.contains("http://hl7.org/fhir/sid/icd-10-cm", "K50.012")
    assert vs.contains("http://hl7.org/fhir/sid/icd-10-cm", "E10.9")
    assert not vs.contains("http://hl7.org/fhir/sid/icd-10-cm", "E11.9")


def test_is_a_on_snomed_is_refused() -> None:
    resource = {
        "resourceType": "ValueSet", "id": "x",
        "compose": {"include": [{"system": "http://snomed.info/sct",
                                 "filter": [{"property": "concept", "op": "is-a", "value": "68962001"}]}]},
    }
    with pytest.raises(ValueSetError, match="terminology server"):
        compile_valueset(resource)
