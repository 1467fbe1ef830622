"""PatientData: the patient's FHIR resources as raw JSON, gathered from prefetch (and later fetches)."""

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from cds_service.fhir_shapes import OLDER_ORDER_TYPES, as_r4_order

ResourceType = Literal[
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Procedure",
    "ServiceRequest",
]
"""The resource types the rule reads; concepts in cards/ name the ones they apply to."""
RESOURCE_TYPES: tuple[ResourceType, ...] = get_args(ResourceType)
MAX_BUNDLE_DEPTH = 8  # a Bundle inside a Bundle (a batch response) is read; deeper nesting is refused


@dataclass
class PatientData:
    """Raw resources by type, de-duplicated by id; nothing is validated here.

    With `patient_id` set, a resource that names another patient (a Patient with another id, a
    subject reference to another Patient) is left out and counted: an EHR whose prefetch lost its
    patient filter must not lend one patient's findings to another.
    """

    patient_id: str | None = None
    patient: dict[str, Any] | None = None
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    malformed: int = 0
    other_patient: int = 0
    foreign_patient: bool = False  # a Patient resource with another id was sent
    # each record with an id, by type and id: the version kept, and where it stands in its list (-1: not listed)
    _seen: dict[tuple[str, str], tuple[dict[str, Any], int]] = field(default_factory=dict)
    _own_reference: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.patient_id is not None:
            self._own_reference = "Patient/" + self.patient_id

    def add(self, resource: Any, depth: int = 0, full_url: Any = None) -> None:
        """Add one resource or Bundle; anything that is not a JSON object is counted and skipped.
        `full_url` is its Bundle entry's: a Medication is found by a `urn:uuid:` one too, since a
        Bundle's references resolve against its fullUrls (transaction and document Bundles, Synthea's
        output, name resources so)."""
        if not isinstance(resource, dict):
            self.malformed += 1
            return
        rtype = resource.get("resourceType")
        if isinstance(rtype, str) and rtype in OLDER_ORDER_TYPES:  # a DSTU2 MedicationOrder is B12 replacement on record as an R4 order is
            resource = as_r4_order(resource)
            rtype = resource["resourceType"]
        if rtype == "Bundle" or (rtype is None and _typeless_bundle(resource)):  # is_bundle, inlined: once a resource
            if depth >= MAX_BUNDLE_DEPTH:  # no EHR nests searchsets this deep: refuse, don't recurse
                self.malformed += 1
                return
            self._add_entries(resource.get("entry"), depth + 1)
            return
        if not isinstance(rtype, str) or (rtype not in _READ_TYPES and rtype.strip().lower() in _READ_TYPES_LOWER):
            # "observation", "Observation ": a type the rule reads, misspelt; no FHIR type is spelt so,
            # and dropped in silence it would read as "no such record" (a B12 result lost)
            self.malformed += 1
            return
        subject = resource.get("subject")
        own = rtype != "Patient" and type(subject) is dict and subject.get("reference") == self._own_reference
        if not own and self.patient_id is not None and _names_other_patient(resource, rtype, self.patient_id):
            self.other_patient += 1
            self.foreign_patient = self.foreign_patient or rtype == "Patient"
            return
        rid = resource.get("id")
        key = (rtype, rid) if isinstance(rid, str) else None
        if key is not None and (prior := self._seen.get(key)) is not None:
            # sent twice (two prefetch keys, or a fetch): the newer version stands, where the older stood
            kept, at = prior
            if at >= 0 and _newer(resource, kept):
                self.resources[rtype][at] = resource
                self._seen[key] = (resource, at)
            return
        at = -1  # Patient and Medication are not listed
        if rtype == "Patient":
            self.patient = self.patient or resource
        elif rtype == "Medication":
            if isinstance(rid, str):
                self.medications[rid] = resource
            if isinstance(full_url, str) and full_url.startswith("urn:"):
                self.medications.setdefault(full_url, resource)
        else:
            listed = self.resources.get(rtype)
            if listed is None:
                listed = self.resources[rtype] = []
            at = len(listed)
            listed.append(resource)
            if rtype == "Observation" and "component" in resource:
                self._add_components(resource)
        if key is not None:
            self._seen[key] = (resource, at)

    def _add_components(self, panel: dict[str, Any]) -> None:
        """A panel sent as one Observation with its results as components (a blood count with MCV
        and haemoglobin, as some labs and exchanges send it): each coded component with a value is
        read as a result of its own, dated, filed and identified as the panel (a reference to it
        points at the panel, which exists)."""
        components = panel["component"]
        if not isinstance(components, list):
            return
        shared = {key: panel[key] for key in _PANEL_ELEMENTS if key in panel}
        for component in components:
            if isinstance(component, dict) and "code" in component and any(k.startswith("value") for k in component):
                self.resources["Observation"].append(
                    {**shared, **{k: v for k, v in component.items() if k in _COMPONENT_ELEMENTS or k.startswith("value")}})

    def _add_entries(self, entries: Any, depth: int) -> None:
        """A Bundle's resources; entries that are not objects, or an `entry` that is not a list,
        are counted as malformed."""
        if entries is None:
            return
        if isinstance(entries, dict):  # one entry sent as an object, as real clients bend arrays
            entries = [entries]
        if not isinstance(entries, list):
            self.malformed += 1
            return
        for entry in entries:
            if isinstance(entry, dict) and "resource" in entry:
                self.add(entry["resource"], depth, entry.get("fullUrl"))
            elif not isinstance(entry, dict) or entry:  # {} carries nothing to lose
                self.malformed += 1

    def drop_identified_others(self) -> None:
        """Records whose subject is only an identifier (no reference) naming another patient: the same
        identifier system as one of the Patient's, another value ("MRN 999" beside the patient's MRN 1).
        Read once everything is added, as the Patient may come after them."""
        own = _identifiers(self.patient)
        if not own:
            return
        systems = {system for system, _ in own}
        for rtype, listed in self.resources.items():
            kept = [r for r in listed if not _identifies_other(r.get("subject"), own, systems)]
            if len(kept) < len(listed):
                self.other_patient += len(listed) - len(kept)
                self.resources[rtype] = kept

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])

    def count(self) -> int:
        return sum(len(v) for v in self.resources.values()) + (1 if self.patient else 0)


# the types read here; one spelt otherwise (case, spaces), as FHIR never spells it, is counted
_READ_TYPES = frozenset((*RESOURCE_TYPES, "Patient", "Medication", "Bundle"))
_READ_TYPES_LOWER = frozenset(t.lower() for t in _READ_TYPES)
# what a panel's component results share with it, and what each holds of its own
_PANEL_ELEMENTS = ("resourceType", "id", "status", "category", "subject", "effectiveDateTime", "effectivePeriod",
                   "effectiveInstant", "issued", "meta")
_COMPONENT_ELEMENTS = ("code", "interpretation", "dataAbsentReason", "referenceRange")


def _newer(resource: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether `resource` is a later version of the same record: by meta.versionId when both are
    numbers, else by meta.lastUpdated; with neither, the first one sent stands."""
    meta, other = resource.get("meta"), than.get("meta")
    if not isinstance(meta, dict) or not isinstance(other, dict):
        return False
    version, earlier = meta.get("versionId"), other.get("versionId")
    number, earlier_number = _version_number(version), _version_number(earlier)
    if number is not None and earlier_number is not None:
        return number > earlier_number
    updated, before = _instant(meta.get("lastUpdated")), _instant(other.get("lastUpdated"))
    return updated is not None and before is not None and updated > before


def _version_number(value: Any) -> int | None:
    """A meta.versionId that is a number ("2"), as servers number versions; not "²" (a digit to
    str.isdigit, no number to int) nor one longer than any server counts."""
    if isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)
    return None


def _instant(value: Any) -> datetime | None:
    """A meta.lastUpdated as an aware datetime, or None when it is not one."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
        # compared across zones: in UTC here, where year 1 or 9999 moved across a zone overflows
        return when.astimezone(UTC) if when is not None and when.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def readable(value: Any) -> bool:
    """Whether a prefetch value can be read at all: a resource, or a Bundle (even one that left out
    its resourceType). Anything else says nothing about the patient, not "nothing on record"."""
    if not isinstance(value, dict):
        return False
    rtype = value.get("resourceType")
    return isinstance(rtype, str) if rtype is not None else _typeless_bundle(value)


def is_bundle(value: dict[str, Any]) -> bool:
    """A Bundle, or one that left out its resourceType (as real clients send them)."""
    rtype = value.get("resourceType")
    return rtype == "Bundle" or (rtype is None and _typeless_bundle(value))


def _typeless_bundle(value: dict[str, Any]) -> bool:
    """A Bundle that left out its resourceType: it still carries entries (a list, or one object)."""
    return isinstance(value.get("entry"), list | dict)


def _names_other_patient(resource: dict[str, Any], rtype: str, patient_id: str) -> bool:
    if rtype == "Patient":
        rid = resource.get("id")
        return isinstance(rid, str) and rid != patient_id
    named = patient_of(resource.get("subject"))
    return named is not None and named != patient_id


def _identifier_value(value: str) -> str:
    """An identifier's value as compared: spaces, case and leading zeros aside ("0012345 " is 12345),
    since dropping the patient's own record costs as much as reading another's."""
    return value.strip().casefold().lstrip("0")


def _identifiers(patient: dict[str, Any] | None) -> set[tuple[str, str]]:
    found = patient.get("identifier") if isinstance(patient, dict) else None
    return {(i["system"], _identifier_value(i["value"])) for i in found or () if isinstance(i, dict)
            and isinstance(i.get("system"), str) and isinstance(i.get("value"), str)} if isinstance(found, list) else set()


def _identifies_other(subject: Any, own: set[tuple[str, str]], systems: set[str]) -> bool:
    if not isinstance(subject, dict) or subject.get("reference") is not None:
        return False
    if subject.get("type") not in (None, "Patient"):  # a Group's identifier is no patient's
        return False
    named = subject.get("identifier")
    if not isinstance(named, dict) or not isinstance(value := named.get("value"), str):
        return False
    return named.get("system") in systems and (named["system"], _identifier_value(value)) not in own


def patient_of(reference: Any) -> str | None:
    """The Patient id a Reference points at (`Patient/1`, an absolute URL, a versioned one), or None
    when it names no Patient or cannot be read (a `urn:uuid:`, an identifier-only reference)."""
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str):
        return None
    parts = reference_parts(ref)
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def reference_parts(ref: str) -> list[str]:
    """A reference's path segments without its query or version: `…/Medication/1/_history/2` ends
    `["Medication", "1"]`, as FHIR R4 lets any reference name a version."""
    parts = ref.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts


def from_prefetch(
    prefetch: dict[str, Any] | None, patient_id: str | None = None, asked: Collection[str] | None = None
) -> PatientData:
    """Gather every prefetched resource; null and absent keys simply add nothing.

    With `asked` (the service's template keys), what cannot be read under any other key is not
    counted as a record left out: the client sent it unasked (the spec's example `"user": "123"`),
    so it was never one of the records the card reports on. Resources found there are still read,
    as before: order-sign reads medications it does not declare when a client sends them."""
    data = PatientData(patient_id=patient_id)
    for key, value in (prefetch or {}).items():
        if value is None:
            continue
        malformed = data.malformed
        data.add(value)
        if asked is not None and key not in asked:
            data.malformed = malformed
    data.drop_identified_others()
    return data
