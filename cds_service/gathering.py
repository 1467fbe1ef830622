"""The async step before evaluation: fetch from fhirServer what the client did not prefetch.

Policy (docs/connecting-ehrs.md): with fetching configured, a missing key is fetched from the
request's fhirServer when that server is allowed. If an ESSENTIAL key (the trigger, a suppressor,
the age exclusion) cannot be had -- server not allowed, no fhirServer, HTTP error, timeout,
malformed body -- the call is answered 412, because evaluating without it could show a card
wrongly. Other keys that fail are left out. A key the client answered with an OperationOutcome
(CDS Hooks 2.0: it could not prefetch) counts as missing. With fetching not configured at all (the
default), the service is prefetch-only and evaluates what was sent, except that an essential key
reported as failed, or a request with none of the record prefetched, is answered 412.
"""

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from cds_service.allowlist import FhirAllowList
from cds_service.errors import PreconditionFailed
from cds_service.evaluation import parse_request, ruled_out_by_drafts
from cds_service.fhir_fetch import FhirReader, new_client
from cds_service.knowledge import Knowledge
from cds_service.prefetch import (
    UnresolvedToken,
    failed_prefetch,
    first_page_only,
    missing_keys,
    render,
)
from cds_service.services import ServiceDefinition
from cds_service.settings import Settings
from cds_service.textmatch import TimeCheck, no_time_limit

log = logging.getLogger("cds_service.fetch")


@dataclass
class Fetcher:
    """What a deployment may fetch and with what; `enabled` is False when no server is allowed."""

    reader: FhirReader
    allow: FhirAllowList
    enabled: bool
    deadline: float

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.AsyncClient | None = None) -> "Fetcher":
        issuer_servers = any(i.fhir_servers for i in settings.trusted_issuers.values())
        return cls(
            reader=FhirReader(
                client or new_client(settings.fhir_deadline_seconds), settings.fhir_max_pages,
                settings.fhir_max_body_bytes, settings.fhir_max_total_bytes,
            ),
            allow=FhirAllowList(settings.fhir_allowed_servers),
            enabled=bool(settings.fhir_allowed_servers) or issuer_servers,
            deadline=settings.fhir_deadline_seconds,
        )


async def complete_prefetch(
    service: ServiceDefinition,
    data: dict[str, Any],
    fetcher: Fetcher,
    knowledge: Knowledge,
    today: date,
    caller_servers: FhirAllowList | None = None,
    check: TimeCheck = no_time_limit,
) -> dict[str, Any]:
    """The request with absent/null prefetch keys filled from fhirServer; no network if none are."""
    request, context = parse_request(service, data)
    missing = missing_keys(service.prefetch, request.prefetch)
    if not missing:
        return data
    partial = sorted(k for k in missing if first_page_only((request.prefetch or {}).get(k)))
    if partial:
        log.warning("prefetch sent only part of %s (a next link, or a total above the matches sent; the rule "
                    "needs the whole result): %s",
                    ",".join(partial), "to be fetched whole" if fetcher.enabled else "read as sent, not fully checked")
    # An order the rule has nothing to say about (the sandbox's empty Rx View draft, an ibuprofen
    # order at signing) needs no patient data: answered without a fetch, never 412. The drafts are
    # read for this only where a fetch or a 412 would follow.
    if not fetcher.enabled:
        # Prefetch-only: absent keys are evaluated as sent, but a key the EHR says it failed to
        # prefetch is not "nothing found": without an essential one the answer could be wrong.
        reported = sorted(k for k in missing if service.needs(k) and failed_prefetch((request.prefetch or {}).get(k)))
        # nothing of the record at all (no prefetch, or only the Patient): an empty answer would
        # say "nothing to advise" where nothing could be read (the sandbox leaves prefetch out when
        # every query failed)
        record_keys = sorted(k for k in service.prefetch if k != "patient")
        nothing_sent = bool(record_keys) and set(record_keys) <= set(missing) - set(partial)
        # CDS Hooks 2.0 would answer any other essential key missing with 412 too; it is evaluated
        # instead, the card saying what it could not check, but an EHR that keeps leaving keys out
        # loses cards, so the log says so (key names only)
        absent = sorted(k for k in missing if service.needs(k) and k not in partial and k not in reported)
        if not (reported or nothing_sent or absent) or ruled_out_by_drafts(context, knowledge, today, check):
            return data
        if reported:
            raise PreconditionFailed(
                f"The EHR reported that prefetching failed for needed data: {', '.join(reported)}.",
                [{"key": k, "reason": "prefetch failed (OperationOutcome)"} for k in reported],
            )
        if nothing_sent:
            raise PreconditionFailed(
                "None of the patient's record was prefetched and this service does not fetch from the FHIR "
                "server (CDS_FHIR_ALLOWED_SERVERS and the trusted issuers' fhirServers are empty).",
                [{"key": k, "reason": "not prefetched"} for k in record_keys],
            )
        log.warning("prefetch-only: evaluated without %s (left out or unreadable, and fetching is off): a "
                    "card this data would show can be missed", ",".join(absent))
        return data
    if ruled_out_by_drafts(context, knowledge, today, check):
        return data
    essential = sorted(k for k in missing if service.needs(k))
    allow = fetcher.allow + caller_servers if caller_servers else fetcher.allow
    server = request.fhirServer
    if not server or not allow.allows_base(server):
        if essential:
            why = "the request names no fhirServer" if not server else "the FHIR server is not allowed"
            raise PreconditionFailed(
                f"Needed data was not prefetched and {why}: {', '.join(essential)}.",
                [{"key": k, "reason": "not prefetched"} for k in essential],
            )
        return data
    queries: dict[str, str] = {}
    failures: dict[str, str] = {}
    for key in missing:
        try:
            queries[key] = render(service.prefetch[key], request.context, today)
        except UnresolvedToken:
            failures[key] = "template cannot be rendered"
    token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
    results, ms = await fetcher.reader.read_all(server, queries, token, fetcher.deadline)
    failures.update({k: r.failure for k, r in results.items() if r.failure})
    # a failed query costs the card data: WARNING, so alerting set at that level sees a FHIR server go bad
    log.log(
        logging.WARNING if failures else logging.INFO, "fhir fetch keys=%d failed=%s pages=%d ms=%.1f",
        len(queries), ",".join(f"{k}:{v}" for k, v in sorted(failures.items())) or "-",
        sum(r.pages for r in results.values()), ms,
    )
    lost = [k for k in essential if k in failures]
    if lost:
        raise PreconditionFailed(
            f"Could not get needed data from the FHIR server: {', '.join(lost)}.",
            [{"key": k, "reason": failures[k]} for k in lost],
        )
    prefetch = {k: v for k, v in (request.prefetch or {}).items() if not failed_prefetch(v)}
    prefetch.update({k: r.resource for k, r in results.items() if r.resource is not None})
    return {**data, "prefetch": prefetch}
