"""Lenient validation of R4 resources with the fhir.resources R4B models.

Real clients bend R4: single objects where arrays belong (the sandbox's reasonCode and
category), unknown fields, DSTU2 names. We repair the shapes we understand, drop unknown
top-level fields, and report anything else as invalid so the caller can skip it.

A caller may name the elements it reads: then only those and the ones FHIR requires are
validated. A malformed element the rule never reads (a performer, a reference range, the
narrative) does not cost the patient a finding, and validating less is faster.
"""

import re
import typing
from functools import cache
from importlib import import_module
from typing import Any

from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

_MODULES = {
    "Condition": "condition",
    "Observation": "observation",
    "MedicationRequest": "medicationrequest",
    "MedicationStatement": "medicationstatement",
    "MedicationAdministration": "medicationadministration",
    "Medication": "medication",
    "Procedure": "procedure",
    "ServiceRequest": "servicerequest",
    "Patient": "patient",
}


@cache
def model_class(resource_type: str) -> type[Resource] | None:
    module = _MODULES.get(resource_type)
    if module is None:
        return None
    cls: type[Resource] = getattr(import_module(f"fhir.resources.R4B.{module}"), resource_type)
    return cls


@cache
def _field_shapes(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all field aliases, aliases of list-valued fields) for a resource type."""
    cls = model_class(resource_type)
    if cls is None:
        return frozenset(), frozenset()
    names: set[str] = set()
    lists: set[str] = set()
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        names.add(alias)
        if "List[" in str(info.annotation) or typing.get_origin(info.annotation) is list:
            lists.add(alias)
    return frozenset(names), frozenset(lists)


@cache
def _kept_elements(resource_type: str, elements: frozenset[str]) -> frozenset[str]:
    """Aliases to validate when a caller reads `elements` (choice types written `value[x]`):
    those, plus every element the model requires, plus required choice groups."""
    cls = model_class(resource_type)
    if cls is None:
        return frozenset()
    kept: set[str] = set()
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choice = extra.get("one_of_many")
        if (
            alias in elements
            or info.is_required()
            or extra.get("element_required")
            or (isinstance(choice, str) and (f"{choice}[x]" in elements or extra.get("one_of_many_required")))
        ):
            kept.add(alias)
    return frozenset(kept)


# FHIR R4 id: some EHRs write ids outside it (an underscore); the record is still read, without an id
# to point at, so nothing this service sends carries an invalid reference
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def repair(raw: dict[str, Any], elements: frozenset[str] | None = None) -> dict[str, Any]:
    """A copy with single objects wrapped into lists, unknown top-level fields dropped (and, when
    `elements` is given, every element not read or required), and an id FHIR does not allow left out."""
    rtype = str(raw.get("resourceType"))
    names, lists = _field_shapes(rtype)
    if elements is not None:
        names = _kept_elements(rtype, elements)
    fixed: dict[str, Any] = {"resourceType": rtype}
    for key, value in raw.items():
        if key == "resourceType" or value is None:
            continue
        if key == "id" and isinstance(value, str) and not _FHIR_ID.fullmatch(value):
            continue
        if key not in names and (elements is not None or not key.startswith("_")):
            continue
        if key in lists and isinstance(value, dict):
            value = [value]
        fixed[key] = value
    return fixed


def parse(raw: dict[str, Any], elements: frozenset[str] | None = None) -> Resource | None:
    """The validated model (of `elements` only, when given), or None when the resource is
    invalid even after repair."""
    cls = model_class(str(raw.get("resourceType")))
    if cls is None:
        return None
    try:
        return cls.model_validate(repair(raw, elements))
    except (ValidationError, ValueError, TypeError):
        return None


def has_modifier_extension(raw: dict[str, Any]) -> bool:
    """FHIR R4 2.4.1: a modifier extension the reader does not understand may change the record's
    meaning (for example "not present"), so the record is treated as unsafe and not used."""
    return bool(raw.get("modifierExtension"))
