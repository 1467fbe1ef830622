"""Lenient validation of R4 resources with the fhir.resources R4B models.

Real clients bend R4: single objects where arrays belong (the sandbox's reasonCode and
category), unknown fields, DSTU2 names. We repair the shapes we understand, drop unknown
top-level fields, and report anything else as invalid so the caller can skip it.
"""

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


def repair(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy with single objects wrapped into lists and unknown top-level fields dropped."""
    rtype = str(raw.get("resourceType"))
    names, lists = _field_shapes(rtype)
    fixed: dict[str, Any] = {"resourceType": rtype}
    for key, value in raw.items():
        if key == "resourceType" or value is None:
            continue
        if key not in names and not key.startswith("_"):
            continue
        if key in lists and isinstance(value, dict):
            value = [value]
        fixed[key] = value
    return fixed


def parse(raw: dict[str, Any]) -> Resource | None:
    """The validated model, or None when the resource is invalid even after repair."""
    cls = model_class(str(raw.get("resourceType")))
    if cls is None:
        return None
    try:
        return cls.model_validate(repair(raw))
    except (ValidationError, ValueError, TypeError):
        return None
