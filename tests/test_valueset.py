"""Value sets compile to lookups; ICD-10-CM codes match with or without the dot; is-a by prefix."""

import json
import subprocess
import sys

import pytest

from cds_service.knowledge import Knowledge
from cds_service.valueset import (
    VERIFICATION_STATUSES,
    VERIFICATION_URL,
    ValueSetError,
    canonical_system,
    compile_valueset,
)


def named(k: Knowledge, system: str, code: str) -> tuple[str, ...]:
    """The concepts a Condition coded this way names, through the lookup the service uses."""
    return k.codings["Condition", system, code][0]


def test_icd10_dot_and_case_insensitive(knowledge: Knowledge) -> None:
    assert "myalgia" in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "M79.10")
    assert "myalgia" in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "m7910")
    assert "myalgia" in named(knowledge, "urn:oid:2.16.840.1.113883.6.90", "M79.1")
    assert "myalgia" not in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "M79.11")
    assert "myalgia" not in named(knowledge, "http://snomed.info/sct", "M79.10")


WHO_ICD10 = "http://hl7.org/fhir/sid/icd-10"


def test_who_icd10_and_its_national_editions_are_read_by_is_a_on_the_who_code(knowledge: Knowledge) -> None:
    assert "myalgia" in named(knowledge, WHO_ICD10, "M79.1")
    assert "myalgia" in named(knowledge, "urn:oid:2.16.840.1.113883.6.3", "m791")
    assert "myalgia" in named(knowledge, "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "M79.18")  # a GM subdivision
    assert "fatigue" in named(knowledge, WHO_ICD10, "R53")
    assert "malabsorption-autoimmune" in named(knowledge, WHO_ICD10, "K50.9")
    # since 2016 WHO subdivides R17: with jaundice a sign, without it not; R17 alone is the older 'jaundice'
    assert "jaundice" in named(knowledge, WHO_ICD10, "R17.0")
    assert "jaundice" in named(knowledge, WHO_ICD10, "R17")
    assert "jaundice" not in named(knowledge, WHO_ICD10, "R17.9")
    # an ICD-10-CM code is not read as WHO's, nor the other way round (their subdivisions differ)
    assert "fatigue" not in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "R53")
    assert named(knowledge, WHO_ICD10, "R53.83") == named(knowledge, WHO_ICD10, "R53")  # is-a: a national subdivision
    # WHO codes leave an unknown record's text to be read: not a standard system
    assert knowledge.codings["Condition", WHO_ICD10, "R52"] == ((), False)


def test_is_a_on_icd10_is_a_prefix(knowledge: Knowledge) -> None:
    assert "malabsorption-autoimmune" in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "K50.012")
    assert "malabsorption-autoimmune" in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "E10.9")
    assert "malabsorption-autoimmune" not in named(knowledge, "http://hl7.org/fhir/sid/icd-10-cm", "E11.9")


def test_is_a_on_snomed_is_refused() -> None:
    resource = {
        "resourceType": "ValueSet", "id": "x",
        "compose": {"include": [{"system": "http://snomed.info/sct",
                                 "filter": [{"property": "concept", "op": "is-a", "value": "68962001"}]}]},
    }
    with pytest.raises(ValueSetError, match="terminology server"):
        compile_valueset(resource)


def _one_code(extension: list[dict[str, object]] | None) -> dict[str, object]:
    concept: dict[str, object] = {"code": "68962001", "display": "Myalgia"}
    if extension is not None:
        concept["extension"] = extension
    return {"resourceType": "ValueSet", "id": "x",
            "compose": {"include": [{"system": "http://snomed.info/sct", "concept": [concept]}]}}


def _verification(status: str, source: str | None = None) -> list[dict[str, object]]:
    parts: list[dict[str, object]] = [{"url": "status", "valueCode": status}]
    if source is not None:
        parts.append({"url": "source", "valueString": source})
    return [{"url": VERIFICATION_URL, "extension": parts}]


def test_every_code_must_say_how_it_was_verified() -> None:
    with pytest.raises(ValueSetError, match=r"concept\[0\]\.extension: needs a code-verification"):
        compile_valueset(_one_code(None))
    with pytest.raises(ValueSetError, match="must be one of"):
        compile_valueset(_one_code(_verification("probably")))
    with pytest.raises(ValueSetError, match="say where it was verified"):
        compile_valueset(_one_code(_verification("vsac")))
    [review] = compile_valueset(_one_code(_verification("unverified"))).review
    assert (review.code, review.status, review.source) == ("68962001", "unverified", "")


def test_shipped_value_sets_record_verification_for_every_code(knowledge: Knowledge) -> None:
    reviews = [r for vs in knowledge.valuesets.values() for r in vs.review]
    listed = sum(len(vs.listed) for vs in knowledge.valuesets.values())
    filters = sum(len(vs.prefixes) for vs in knowledge.valuesets.values())
    assert len(reviews) == listed + filters
    assert {r.status for r in reviews} <= set(VERIFICATION_STATUSES)
    assert all(r.source for r in reviews if r.status != "unverified")
    # The order the card places must be a verified LOINC code.
    assert {r.status for r in reviews if r.code == "2132-9"} == {"loinc-table"}


def test_codes_command_lists_what_is_left_to_verify(knowledge: Knowledge) -> None:
    proc = subprocess.run([sys.executable, "-m", "cds_service", "codes", "--unverified", "--json"],
                          capture_output=True, check=True, timeout=60)
    rows = json.loads(proc.stdout)
    expected = [r for vs in knowledge.valuesets.values() for r in vs.review if r.status == "unverified"]
    assert len(rows) == len(expected)
    assert all(r["status"] == "unverified" for r in rows)
    table = subprocess.run([sys.executable, "-m", "cds_service", "codes"], capture_output=True, check=True,
                           timeout=60, text=True).stdout
    assert "2132-9" in table and "loinc-table" in table


@pytest.mark.parametrize(("given", "canonical"), [
    ("https://snomed.info/sct", "http://snomed.info/sct"), ("http://snomed.info/sct/", "http://snomed.info/sct"),
    ("https://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10-cm"), (" http://loinc.org ", "http://loinc.org"),
    ("urn:oid:2.16.840.1.113883.6.96", "http://snomed.info/sct"), ("https://ehr.example.org/codes/", "https://ehr.example.org/codes/"),
])
def test_hand_typed_spellings_of_a_known_system_are_that_system(given: str, canonical: str) -> None:
    assert canonical_system(given) == canonical
