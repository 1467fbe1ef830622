"""Prefetch templates: which keys the rule cannot do without, and rendering them as FHIR queries.

The service renders a template itself when the client did not prefetch that key, with the same
tokens the CDS Hooks sandbox supports: `{{context.X}}` for first-level context strings and
`{{today()}}` / `{{today() - N days}}` / `{{today() + N days}}`.
"""

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from cds_service.patient_data import readable

# Keys whose absence could make a card fire wrongly (suppressors, the under-16 exclusion) or
# could never let it fire (the trigger). Missing one of these and unable to fetch it => 412.
# `procedures` is one: besides risk factors it holds B12 injections billed as procedures (HCPCS
# J3420), which silence the card as any other record of replacement does.
ESSENTIAL_KEYS = frozenset({
    "patient",
    "conditions",
    "observations",
    "b12Results",
    "medications",
    "medicationStatements",
    "b12Administrations",
    "procedures",
    "b12Orders",
})

# Keys read when sent and fetched when missing, but never worth a 412: Observations coded only in
# ICD-10-CM, a classification of diagnoses (Conditions), are rare; a client that cannot run that
# search loses little.
OPTIONAL_KEYS = frozenset({"observationsIcd10"})

# The suppressor checks a card reports on, and the prefetch keys each one reads. When the client
# leaves a key out or sends an OperationOutcome, the card says "not fully checked".
CHECK_KEYS = {
    "results": ("b12Results",),
    "therapy": ("medications", "medicationStatements", "b12Administrations", "procedures"),
    "orders": ("b12Orders",),
}

_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TODAY = re.compile(r"today\(\)(?:\s*([+-])\s*(\d+)\s*days?)?")
_CONTEXT = re.compile(r"context\.([A-Za-z_][A-Za-z0-9_]*)")


class UnresolvedToken(ValueError):
    """A template names a token this service cannot fill; the key is then treated as unfetchable."""


def render(template: str, context: dict[str, Any], today: date) -> str:
    """The template with every token replaced; context values are percent-encoded (no injection)."""

    def fill(match: re.Match[str]) -> str:
        token = match.group(1)
        if m := _TODAY.fullmatch(token):
            sign, days = m.group(1), int(m.group(2) or 0)
            return (today + timedelta(days=-days if sign == "-" else days)).isoformat()
        if (m := _CONTEXT.fullmatch(token)) and isinstance(value := context.get(m.group(1)), str):
            if not value.strip("."):  # "." or ".." would be a dot segment: Patient/.. reads the base
                raise UnresolvedToken(f"context value for {token!r} is only dots")
            return quote(value, safe="")
        raise UnresolvedToken(f"unresolved prefetch token {token!r}")

    return _TOKEN.sub(fill, template)


def missing_keys(templates: dict[str, str], prefetch: dict[str, Any] | None) -> list[str]:
    """Template keys the client left out (it chose not to, or could not, prefetch them: the service
    may fetch them itself), answered with an OperationOutcome, sent in a shape that cannot be read
    (a string, an object with no resourceType), or sent as the first page of a search only. A key
    sent as `null` is not missing: CDS Hooks 2.0 has the client send null when it found no data."""
    given = prefetch or {}
    return [key for key in templates if key not in given or _unusable(given[key], _scan(given[key]))]


def _unusable(value: Any, scan: "_Scan") -> bool:
    """A value sent for a key that leaves it missing (see missing_keys); `scan` is _scan(value), so
    a Bundle's entries are walked once for every question asked of them."""
    return value is not None and (failed_prefetch(value, scan) or not readable(value) or first_page_only(value, scan))


def next_link(bundle: dict[str, Any]) -> str | None:
    """The URL of a searchset Bundle's next page, if it has one."""
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url
    return None


def first_page_only(value: Any, scan: "_Scan | None" = None) -> bool:
    """A prefetched Bundle with a next link, or whose `total` counts more matches than it holds (a
    `_summary=count` or `_count=0` answer, or a page whose link was dropped): only part of its search,
    and what the rule needs (the B12 result, the B12 order) may be in what the client did not send.
    FHIR R4 Bundle.total counts the matches across all pages, never `include` or `outcome` entries.
    `scan`, when given, is _scan(value), already made."""
    if not isinstance(value, dict):
        return False
    if next_link(value) is not None:
        return True
    total = value.get("total")
    if type(total) is not int or value.get("resourceType", "Bundle") != "Bundle":
        return False
    return total > (scan if scan is not None else _scan(value)).matches


def failed_prefetch(value: Any, scan: "_Scan | None" = None) -> bool:
    """An OperationOutcome in place of the result (CDS Hooks 2.0: the client could not prefetch the
    key), or a search Bundle reporting an error beside what it found: an incomplete result. `scan`,
    when given, is _scan(value), already made."""
    return isinstance(value, dict) and (
        value.get("resourceType") == "OperationOutcome" or (scan if scan is not None else _scan(value)).error
    )


def has_error_outcome(bundle: dict[str, Any]) -> bool:
    """A search Bundle carrying an OperationOutcome with an error or fatal issue (search.mode outcome);
    the warnings servers add to an empty result ("no matches") are not errors."""
    return _scan(bundle).error


def withheld(value: Any) -> bool:
    """A search Bundle whose server says it left matches out: an OperationOutcome issue of type
    `suppressed` (FHIR R4 issue-type: information not returned because of business, consent or access
    rules), as Epic adds, as a warning, to searches whose client may not read outside records ("Client
    not authorized for Observation - Outside Record Results"). What was sent is read; its checks are
    not complete, so the card says "not checked" rather than "none on record"."""
    return _scan(value).withheld


@dataclass(frozen=True)
class _Scan:
    matches: int = 0  # entries that are search matches (not `include` or `outcome`)
    error: bool = False  # an OperationOutcome entry with an error or fatal issue
    withheld: bool = False  # an OperationOutcome entry with an issue of type `suppressed`


_NOTHING = _Scan()


def _scan(bundle: Any) -> _Scan:
    """One pass over a search Bundle's entries for what the checks above ask: several of them read
    every key of every call, so the entries are walked once each time, not once per question."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return _NOTHING
    matches, error, suppressed = 0, False, False
    for entry in entries:
        if type(entry) is not dict:
            matches += 1
            continue
        resource = entry.get("resource")
        if type(resource) is dict and resource.get("resourceType") == "OperationOutcome":
            found = resource.get("issue")
            for issue in found if isinstance(found, list) else ():
                if isinstance(issue, dict):
                    error = error or issue.get("severity") in ("error", "fatal")
                    suppressed = suppressed or issue.get("code") == "suppressed"
        search = entry.get("search")
        if not (type(search) is dict and search.get("mode") in ("include", "outcome")):
            matches += 1
    return _Scan(matches, error, suppressed)


def unchecked(templates: dict[str, str], prefetch: dict[str, Any] | None) -> frozenset[str]:
    """The checks of CHECK_KEYS that lack a key the service asks for and the client did not send, or
    whose result the server says it sent only in part (withheld). Each value is scanned once."""
    given = prefetch or {}
    absent = set()
    for key in templates:
        if key not in given:
            absent.add(key)
            continue
        value = given[key]
        scan = _scan(value)
        if scan.withheld or _unusable(value, scan):
            absent.add(key)
    return frozenset(check for check, keys in CHECK_KEYS.items() if absent.intersection(keys))
