"""PatientData: the patient's FHIR resources as raw JSON, gathered from prefetch (and later fetches)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

RESOURCE_TYPES = (
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Procedure",
    "ServiceRequest",
)


@dataclass
class PatientData:
    """Raw resources by type, de-duplicated by id; nothing is validated here."""

    patient: dict[str, Any] | None = None
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    malformed: int = 0
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, resource: Any) -> None:
        """Add one resource or Bundle; anything that is not a JSON object is counted and skipped."""
        if not isinstance(resource, dict):
            self.malformed += 1
            return
        rtype = resource.get("resourceType")
        if rtype == "Bundle":
            for entry in self._entries(resource):
                self.add(entry)
            return
        if not isinstance(rtype, str):
            self.malformed += 1
            return
        rid = resource.get("id")
        if isinstance(rid, str):
            key = (rtype, rid)
            if key in self._seen:
                return
            self._seen.add(key)
        if rtype == "Patient":
            self.patient = self.patient or resource
        elif rtype == "Medication":
            if isinstance(rid, str):
                self.medications[rid] = resource
        else:
            self.resources.setdefault(rtype, []).append(resource)

    def _entries(self, bundle: dict[str, Any]) -> Iterator[Any]:
        """The resources of a Bundle; entries that are not objects, or an `entry` that is not a
        list, are counted as malformed."""
        entries = bundle.get("entry")
        if entries is None:
            return
        if not isinstance(entries, list):
            self.malformed += 1
            return
        for entry in entries:
            if isinstance(entry, dict) and "resource" in entry:
                yield entry["resource"]
            elif not isinstance(entry, dict) or entry:  # {} carries nothing to lose
                self.malformed += 1

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return self.resources.get(rtype, [])

    def count(self) -> int:
        return sum(len(v) for v in self.resources.values()) + (1 if self.patient else 0)


def from_prefetch(prefetch: dict[str, Any] | None) -> PatientData:
    """Gather every prefetched resource; null and absent keys simply add nothing."""
    data = PatientData()
    for value in (prefetch or {}).values():
        if value is not None:
            data.add(value)
    return data
