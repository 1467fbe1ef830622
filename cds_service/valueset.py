"""FHIR ValueSet resources compiled into constant-time code lookups."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"  # WHO's international edition, which national editions extend

# Systems whose hierarchy is the code prefix, so `is-a` can be evaluated without a terminology server.
_PREFIX_HIERARCHY_SYSTEMS = frozenset({ICD10CM, ICD10})

# WHO ICD-10 (and its national editions) codes diagnoses, sent on Conditions, which are fetched whole;
# the code-filtered Observation and Procedure searches leave it out (they are long enough already).
NOT_SEARCHED_SYSTEMS = frozenset({ICD10})

# Terminologies whose codes speak for a record (its free text is then not read). Not WHO ICD-10: its
# value sets here are is-a filters on the few categories the rule needs, less complete than the
# ICD-10-CM lists, so a WHO code they do not name leaves the record's text to be read, as before.
STANDARD_SYSTEMS = frozenset({
    ICD10CM, "http://snomed.info/sct", "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm",
})

# Real clients spell systems in several ways; map them to one canonical URI.
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
SYSTEM_ALIASES = {
    "http://hl7.org/fhir/sid/icd-10-cm": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10": ICD10,
    "urn:oid:2.16.840.1.113883.6.3": ICD10,
    # the German modification (Medizininformatik-Initiative profiles), under its BfArM and former DIMDI
    # URLs: WHO's codes with national subdivisions, which an is-a on the WHO code includes
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm": ICD10,
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm": ICD10,
    "http://snomed.info/sct": "http://snomed.info/sct",
    "urn:oid:2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "http://loinc.org": "http://loinc.org",
    "urn:oid:2.16.840.1.113883.6.1": "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.6.285": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",  # HCPCS Level II
    # the yes/no tables of HL7 v2, under their DSTU2/STU3 URLs and OIDs (symptom questions answered No)
    "http://hl7.org/fhir/v2/0136": "http://terminology.hl7.org/CodeSystem/v2-0136",
    "urn:oid:2.16.840.1.113883.12.136": "http://terminology.hl7.org/CodeSystem/v2-0136",
    "http://hl7.org/fhir/v2/0532": "http://terminology.hl7.org/CodeSystem/v2-0532",
    "urn:oid:2.16.840.1.113883.12.532": "http://terminology.hl7.org/CodeSystem/v2-0532",
    # HL7 v3 interpretation (Negative, Not detected) and null flavors (No information, Unknown), as
    # DSTU2 and C-CDA conversions send them
    "http://hl7.org/fhir/v3/ObservationInterpretation": INTERPRETATION,
    "urn:oid:2.16.840.1.113883.5.83": INTERPRETATION,
    "http://hl7.org/fhir/v3/NullFlavor": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
    "urn:oid:2.16.840.1.113883.5.1008": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
}


# Each listed code (and each is-a filter) records how it was checked, so an informaticist can see
# which codes still need a terminology server before release (`cds-service codes --unverified`).
VERIFICATION_URL = "https://b12-cds.example.org/fhir/StructureDefinition/code-verification"
VERIFICATION_STATUSES = {
    "vsac": "in a VSAC value set expansion (eCQM content)",
    "loinc-table": "in the LOINC table, with the expected component",
    "public-listing": "same code and meaning in a public code listing",
    "unverified": "not verified: check in a terminology server before release",
}


@dataclass(frozen=True)
class CodeReview:
    """One listed code or is-a filter, with how it was verified."""

    valueset: str
    system: str
    code: str  # "is-a <code>" for a filter
    display: str
    status: str
    source: str


def canonical_system(system: str | None) -> str:
    """The canonical URI for a coding system ('' when absent)."""
    if not system:
        return ""
    given = system.strip()
    if given in SYSTEM_ALIASES:
        return SYSTEM_ALIASES[given]
    # hand-typed spellings of the same URI: https, a trailing slash ("https://snomed.info/sct/")
    return SYSTEM_ALIASES.get(loose_uri(given), given)


def loose_uri(uri: str) -> str:
    """A URI as hand-typed spellings of it agree: no https, no trailing slash."""
    loose = uri.strip().rstrip("/")
    return "http://" + loose.removeprefix("https://") if loose.startswith("https://") else loose


def canonical_code(system: str, code: str) -> str:
    """ICD-10 codes arrive with and without the dot and in either case; normalise them."""
    code = code.strip()
    if system in _PREFIX_HIERARCHY_SYSTEMS:
        return code.replace(".", "").upper()
    return code


class ValueSetError(ValueError):
    """A ValueSet resource that this service cannot compile."""


@dataclass(frozen=True)
class ValueSet:
    """A compiled value set: explicit codes plus code prefixes for `is-a` on ICD-10."""

    id: str
    title: str
    codes: frozenset[tuple[str, str]]
    prefixes: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    listed: tuple[tuple[str, str], ...] = ()
    review: tuple[CodeReview, ...] = ()


def compile_valueset(resource: dict[str, Any]) -> ValueSet:
    """Compile a ValueSet resource; raises ValueSetError naming the field at fault."""
    if resource.get("resourceType") != "ValueSet":
        raise ValueSetError("resourceType: must be 'ValueSet'")
    vs_id = resource.get("id")
    if not isinstance(vs_id, str) or not vs_id:
        raise ValueSetError("id: missing")
    includes = (resource.get("compose") or {}).get("include")
    if not isinstance(includes, list) or not includes:
        raise ValueSetError("compose.include: must be a non-empty list")
    codes: set[tuple[str, str]] = set()
    listed: list[tuple[str, str]] = []
    prefixes: set[tuple[str, str]] = set()
    review: list[CodeReview] = []
    for i, include in enumerate(includes):
        where = f"compose.include[{i}]"
        system = canonical_system(include.get("system"))
        if not system:
            raise ValueSetError(f"{where}.system: missing")
        for j, concept in enumerate(include.get("concept") or []):
            code = concept.get("code")
            if not isinstance(code, str) or not code.strip():
                raise ValueSetError(f"{where}.concept[{j}].code: missing")
            if not concept.get("display"):
                raise ValueSetError(f"{where}.concept[{j}].display: missing for code {code}")
            codes.add((system, canonical_code(system, code)))
            listed.append((system, code.strip()))
            status, source = _verification(concept, f"{where}.concept[{j}]")
            review.append(CodeReview(vs_id, system, code.strip(), str(concept["display"]), status, source))
        for j, flt in enumerate(include.get("filter") or []):
            if flt.get("op") != "is-a" or flt.get("property") != "concept":
                raise ValueSetError(f"{where}.filter[{j}]: only 'concept is-a' is supported")
            if system not in _PREFIX_HIERARCHY_SYSTEMS:
                raise ValueSetError(
                    f"{where}.filter[{j}]: is-a needs a terminology server for {system}; "
                    "list the codes instead"
                )
            prefixes.add((system, canonical_code(system, str(flt.get("value", "")))))
            status, source = _verification(flt, f"{where}.filter[{j}]")
            review.append(CodeReview(vs_id, system, f"is-a {flt.get('value', '')}", "", status, source))
        if not include.get("concept") and not include.get("filter"):
            raise ValueSetError(f"{where}: needs concept or filter")
    return ValueSet(
        id=vs_id,
        title=str(resource.get("title") or vs_id),
        codes=frozenset(codes),
        prefixes=frozenset(prefixes),
        listed=tuple(listed),
        review=tuple(review),
    )


def _verification(element: dict[str, Any], where: str) -> tuple[str, str]:
    """(status, source) from the element's code-verification extension; required on every code."""
    for ext in element.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == VERIFICATION_URL:
            parts = {p.get("url"): p for p in ext.get("extension") or [] if isinstance(p, dict)}
            status = (parts.get("status") or {}).get("valueCode")
            if status not in VERIFICATION_STATUSES:
                raise ValueSetError(
                    f"{where}.extension[code-verification].status: must be one of {', '.join(VERIFICATION_STATUSES)}"
                )
            source = (parts.get("source") or {}).get("valueString")
            if status != "unverified" and not source:
                raise ValueSetError(f"{where}.extension[code-verification].source: say where it was verified")
            return str(status), str(source or "")
    raise ValueSetError(f"{where}.extension: needs a code-verification extension ({VERIFICATION_URL})")


def codes_of(valuesets: Iterable[ValueSet]) -> list[tuple[str, str]]:
    """The codes listed in several value sets to search by, as written there, sorted and without
    duplicates (none of a system not searched by code)."""
    return sorted({c for vs in valuesets for c in vs.listed if c[0] not in NOT_SEARCHED_SYSTEMS})
