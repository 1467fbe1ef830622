"""Lenient validation of R4 resources with the fhir.resources R4B models.

Real clients bend R4: single objects where arrays belong (the sandbox's reasonCode and
category), unknown fields, DSTU2 names, date-times without a time zone or seconds. We repair
the shapes we understand, drop unknown fields (top-level ones before validation, nested ones
when validation names them), and report anything else as invalid so the caller can skip it.

A caller may name the elements it reads: then only those and the ones FHIR requires are
validated. A malformed element the rule never reads (a performer, a reference range, the
narrative) does not cost the patient a finding, and validating less is faster.
"""

import re
import typing
from functools import cache
from importlib import import_module
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ValidationError

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


# A dateTime or instant as converters write it: a space for the T, no seconds, no time zone, an
# offset without its colon or its minutes ("2026-11-20 10:00", "2026-11-20T10:00:00", "...+0000", "...+05").
_LOOSE_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<minutes>\d{2}:\d{2})(?P<seconds>:\d{2}(?:\.\d+)?)?"
    r"(?:(?P<utc>Z)|(?P<offset>[+-]\d{2})(?::?(?P<offset_minutes>\d{2}))?)?"
)
# where date-times are looked for: resource.dispenseRequest.validityPeriod.start is the deepest the rule reads
_DATE_TIME_DEPTH = 3
_NOT_SEARCHED = frozenset({"extension", "modifierExtension", "contained"})


def normalise_date_time(value: Any) -> Any:
    """A date-time written as above, in the form FHIR requires; anything else as it was, for
    validation to judge. The date stays as written: a missing zone is read as UTC, so the day
    the rule reads is the day the record says (its time of day is never used)."""
    if not isinstance(value, str) or len(value) <= 10:
        return value
    m = _LOOSE_DATE_TIME.fullmatch(value)
    if m is None:
        return value
    zone = f"{m['offset']}:{m['offset_minutes'] or '00'}" if m["offset"] else "Z"
    fixed = f"{m['date']}T{m['minutes']}{m['seconds'] or ':00'}{zone}"
    return value if fixed == value else fixed


def _element_model(annotation: Any) -> type[BaseModel] | str | None:
    """What a field holds: "date-time" (a dateTime or instant), a complex type's model, or None."""
    if typing.get_origin(annotation) is typing.Annotated:
        kinds = {type(m).__name__ for m in annotation.__metadata__}
        return "date-time" if kinds & {"DateTime", "Instant"} else None
    for arg in typing.get_args(annotation):  # Optional[...], List[...], X | None
        found = _element_model(arg)
        if found is not None:
            return found
    name = getattr(annotation, "__name__", "")
    if isinstance(annotation, type) and name.endswith("Type"):
        try:
            model: type[BaseModel] = get_fhir_model_class(name.removesuffix("Type"))
        except ValueError:
            return None
        return model
    return None


@cache
def _date_time_paths(model: type[BaseModel], depth: int) -> tuple[tuple[str, ...], ...]:
    """The paths (aliases) from `model` to each dateTime and instant inside it, `depth` levels down."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias in _NOT_SEARCHED or alias.startswith("_"):
            continue
        found = _element_model(info.annotation)
        if found == "date-time":
            paths.append((alias,))
        elif isinstance(found, type) and depth > 1:
            paths += [(alias, *path) for path in _date_time_paths(found, depth - 1)]
    return tuple(paths)


@cache
def _dated_elements(resource_type: str, elements: frozenset[str] | None) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Each validated element that is or holds a date-time, with the paths below it to each."""
    cls = model_class(resource_type)
    if cls is None:
        return {}
    kept = _kept_elements(resource_type, elements) if elements is not None else None
    dated: dict[str, list[tuple[str, ...]]] = {}
    for first, *rest in _date_time_paths(cls, _DATE_TIME_DEPTH):
        if kept is None or first in kept:
            dated.setdefault(first, []).append(tuple(rest))
    return {alias: tuple(paths) for alias, paths in dated.items()}


def _normalised_at(value: Any, path: tuple[str, ...]) -> Any:
    """`value` with the date-time at `path` normalised; what holds it is copied only when it changes,
    so the raw resource is never altered."""
    if not path:
        return normalise_date_time(value)
    if isinstance(value, list):
        fixed = [_normalised_at(item, path) for item in value]
        return fixed if any(a is not b for a, b in zip(fixed, value, strict=True)) else value
    if isinstance(value, dict) and path[0] in value:
        inner = _normalised_at(value[path[0]], path[1:])
        return value if inner is value[path[0]] else {**value, path[0]: inner}
    return value


# Statuses DSTU2 and STU3 wrote as a bare code where R4 has a CodeableConcept (Cerner's DSTU2 sandbox,
# exports that relabelled their resources R4 without reshaping them): wrapped into the R4 code system,
# whose codes are a superset of the older ones, so "resolved" stays resolved and "active" active.
_CODE_TO_CONCEPT = {
    ("Condition", "clinicalStatus"): "http://terminology.hl7.org/CodeSystem/condition-clinical",
    ("Condition", "verificationStatus"): "http://terminology.hl7.org/CodeSystem/condition-ver-status",
}

# Older names of an element R4 kept under another name: a Condition dated only by when it was
# recorded (STU3 assertedDate, DSTU2 dateRecorded) would otherwise be read as undated.
_RENAMED = {
    ("Condition", "assertedDate"): "recordedDate",
    ("Condition", "dateRecorded"): "recordedDate",
}

# FHIR R4 id: some EHRs write ids outside it (an underscore); the record is still read, without an id
# to point at, so nothing this service sends carries an invalid reference
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # the FHIR R4 id datatype


def repair(raw: dict[str, Any], elements: frozenset[str] | None = None) -> dict[str, Any]:
    """A copy with single objects wrapped into lists, a status in another case lower-cased, a Condition's
    status sent as a bare code (DSTU2, STU3) wrapped into its R4 CodeableConcept and its recorded date read under its older names,
    unknown top-level fields dropped (and, when `elements` is given, every element not read or
    required), an id FHIR does not allow left out, and the date-times of the elements kept written
    as FHIR requires (normalise_date_time)."""
    rtype = str(raw.get("resourceType"))
    names, lists = _field_shapes(rtype)
    dated = _dated_elements(rtype, elements)
    if elements is not None:
        names = _kept_elements(rtype, elements)
    fixed: dict[str, Any] = {"resourceType": rtype}
    for key, value in raw.items():
        if key == "resourceType" or value is None:
            continue
        if (renamed := _RENAMED.get((rtype, key))) and renamed not in raw:
            key = renamed
        if key == "id" and isinstance(value, str) and not FHIR_ID.fullmatch(value):
            continue
        if key not in names and (elements is not None or not key.startswith("_")):
            continue
        if key in lists and isinstance(value, dict):
            value = [value]
        if isinstance(value, str) and (system := _CODE_TO_CONCEPT.get((rtype, key))) and value.strip():
            value = {"coding": [{"system": system, "code": value.strip().lower()}]}
        elif key == "status" and isinstance(value, str):  # every R4 status code is lower case: "Final" means final
            value = value.strip().lower()
        for path in dated.get(key, ()):
            value = _normalised_at(value, path)
        fixed[key] = value
    return fixed


def parse(raw: dict[str, Any], elements: frozenset[str] | None = None) -> Resource | None:
    """The validated model (of `elements` only, when given), or None when the resource is
    invalid even after repair."""
    rtype = raw.get("resourceType")
    cls = model_class(rtype) if isinstance(rtype, str) else None
    if cls is None:
        return None
    fixed: Any = repair(raw, elements)
    for _ in range(_MENDING_ROUNDS):
        try:
            return cls.model_validate(fixed)
        except ValidationError as exc:
            fixed = _mended(fixed, exc.errors())
            if fixed is None:
                return None
        except (ValueError, TypeError, RecursionError):  # a value nested ~1000 deep: invalid, skipped and counted
            return None
    return None


# Validation is retried after mending what it names, a few times: a list mended at one level is
# validated only then, and may need mending inside
_MENDING_ROUNDS = 4
_MAX_MENDED = 64
_DROP = object()
# a reference written as a bare string ("subject": "Patient/1"), as hand-built and older exports do
_BARE_REFERENCE = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}")


def _mended(value: Any, errors: list[Any]) -> Any:
    """`value` with every error validation named mended, or None when one cannot be: a nested
    unknown key (a vendor's field in a coding) or an empty string dropped, as unknown top-level fields
    are; a single object where a list belongs wrapped into one (top-level lists are wrapped by
    `repair`), and a list of one where a single element belongs unwrapped; a number
    sent as a display or text written as text; a bare reference string wrapped into a Reference.
    A record with more errors than a bent export makes is not mended (each mending copies what
    holds it: thousands would cost time in proportion to their square)."""
    if len(errors) > _MAX_MENDED:
        return None
    for error in errors:
        loc = tuple(error["loc"])
        if loc and loc[-1] == "root":  # the element's own model reports as its "root"
            loc = loc[:-1]
        found = _at(value, loc)
        kind = error["type"]
        if kind == "extra_forbidden" or (kind == "string_pattern_mismatch" and isinstance(found, str) and not found.strip()):
            fix: Any = _DROP  # FHIR has no empty strings: one sent means the element is absent
        elif kind == "list_type" and isinstance(found, dict):
            fix = [found]
        elif isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict) and \
                kind in ("model_validation_format", "model_type", "dict_type"):
            fix = found[0]  # a list of one where FHIR has a single element (a performer)
        elif kind == "string_type" and loc and loc[-1] in ("display", "text") and type(found) in (int, float):
            fix = str(found)
        elif isinstance(found, str) and _BARE_REFERENCE.fullmatch(found) and kind in ("json_invalid", "model_type", "dict_type"):
            fix = {"reference": found}
        else:
            return None
        value = _replaced(value, loc, fix)
    return value


def _at(value: Any, loc: tuple[int | str, ...]) -> Any:
    for step in loc:
        if isinstance(value, dict) and isinstance(step, str):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value):
            value = value[step]
        else:
            return None
    return value


def _replaced(value: Any, loc: tuple[int | str, ...], new: Any) -> Any:
    """`value` with the element at `loc` (a validation error's location) replaced by `new`, or
    removed for _DROP; what holds it is copied, so the raw resource is never altered."""
    if not loc:
        return new
    step, rest = loc[0], loc[1:]
    if isinstance(value, dict) and isinstance(step, str) and step in value:
        if not rest and new is _DROP:
            return {k: v for k, v in value.items() if k != step}
        return {**value, step: _replaced(value[step], rest, new)}
    if isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value):
        return [*value[:step], _replaced(value[step], rest, new), *value[step + 1:]]
    return value


def has_modifier_extension(raw: dict[str, Any]) -> bool:
    """FHIR R4 2.4.1: a modifier extension the reader does not understand may change the record's
    meaning (for example "not present"), so the record is treated as unsafe and not used."""
    return bool(raw.get("modifierExtension"))
