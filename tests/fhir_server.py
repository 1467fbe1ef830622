"""A small FHIR server for the tests: serves fixture resources over real HTTP on loopback.

It answers the searches our prefetch templates use (patient, code token OR with system|code,
status, date/effective-time ge, _include of the Medication (requests, statements, administrations), _count, paging through
`next` links) as GET and as POST /_search, checks a bearer token when told to, and can be told
to be slow, to fail with a status, or to return garbage -- for every type or for one.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DATE_PATHS = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
}
CODE_PATHS = {"MedicationAdministration": "medicationCodeableConcept", "MedicationRequest": "medicationCodeableConcept"}


def _get(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass
class FhirState:
    """What the server holds and how it misbehaves; tests change it between calls."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    token: str | None = None
    faults: dict[str, str] = field(default_factory=dict)  # type or "*" -> "401", "500", "garbage", "slow", "huge"...
    huge_bytes: int = 200_000_000  # "huge": a Bundle this long, streamed; "huge-length": declared, then stalls
    sent: int = 0  # bytes of "huge" bodies actually sent
    delay: float = 0.0
    page_size: int = 50
    next_base: str | None = None  # where `next` links point (default: this server)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path?query, auth

    def load(self, prefetch: dict[str, Any]) -> None:
        for value in prefetch.values():
            if not isinstance(value, dict):
                continue  # a key sent as null: nothing to serve
            for res in [e["resource"] for e in value.get("entry", [])] if value.get("resourceType") == "Bundle" else [value]:
                if isinstance(res, dict) and isinstance(res.get("id"), str):
                    self.resources[(res["resourceType"], res["id"])] = res

    def reset(self) -> None:
        self.resources.clear()
        self.faults.clear()
        self.log.clear()
        self.token, self.delay, self.page_size, self.next_base = None, 0.0, 50, None
        self.huge_bytes, self.sent = 200_000_000, 0


def _matches(res: dict[str, Any], rtype: str, params: dict[str, str]) -> bool:
    for name, value in params.items():
        if name == "patient":
            ref = _get(res, "subject.reference") or _get(res, "patient.reference")
            if ref != f"Patient/{value}":
                return False
        elif name == "code":
            codings = _get(res, CODE_PATHS.get(rtype, "code") + ".coding") or []
            wanted = value.split(",")
            if not any(
                f"{c.get('system')}|{c.get('code')}" in wanted or c.get("code") in wanted for c in codings
            ):
                return False
        elif name == "status":
            if res.get("status") not in value.split(","):
                return False
        elif name in ("date", "effective-time"):
            floor = value.removeprefix("ge")
            dates = [d for p in DATE_PATHS.get(rtype, ()) if isinstance(d := _get(res, p), str)]
            if not dates or max(dates)[:10] < floor:
                return False
    return True


def make_app(state: FhirState) -> Starlette:
    async def guard(request: Request, rtype: str) -> Response | None:
        state.log.append((request.method, request.url.path + ("?" + request.url.query if request.url.query else ""),
                          request.headers.get("authorization")))
        fault = state.faults.get(rtype) or state.faults.get("*")
        if fault == "slow" or state.delay:
            await asyncio.sleep(state.delay or 3)
        if state.token and request.headers.get("authorization") != f"Bearer {state.token}":
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401)
        if fault and fault.isdigit():
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []}, status_code=int(fault))
        if fault == "garbage":
            return Response(b"<html>not json", media_type="application/fhir+json")
        if fault == "wrong-type":
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []})
        if fault == "huge":
            return StreamingResponse(huge_bundle(request), media_type="application/fhir+json")
        if fault == "huge-length":
            return StreamingResponse(huge_bundle(request, stall=True), media_type="application/fhir+json",
                                     headers={"Content-Length": str(state.huge_bytes)})
        return None

    async def huge_bundle(request: Request, stall: bool = False) -> AsyncIterator[bytes]:
        """A valid Bundle of `huge_bytes` in 64 KiB chunks, as fast as the client reads it, until
        the client hangs up (`sent` counts what went out); with `stall`, only its first bytes."""
        head, tail = b'{"resourceType": "Bundle", "type": "searchset", "padding": "', b'"}'
        chunk = b"x" * 65536
        yield head
        state.sent += len(head)
        while state.sent + len(chunk) + len(tail) <= state.huge_bytes:
            if await request.is_disconnected():
                return
            if stall:
                await asyncio.sleep(0.05)
                continue
            yield chunk
            state.sent += len(chunk)
        yield tail

    async def read(request: Request) -> Response:
        rtype, rid = request.path_params["rtype"], request.path_params["rid"]
        if (failed := await guard(request, rtype)) is not None:
            return failed
        res = state.resources.get((rtype, rid))
        return JSONResponse(res) if res else JSONResponse({"resourceType": "OperationOutcome"}, status_code=404)

    async def search(request: Request) -> Response:
        rtype = request.path_params["rtype"]
        if (failed := await guard(request, rtype)) is not None:
            return failed
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        offset = int(params.pop("_offset", "0"))
        count = int(params.pop("_count", str(state.page_size)))
        include = params.pop("_include", None)
        hits = [r for (t, _), r in sorted(state.resources.items()) if t == rtype and _matches(r, rtype, params)]
        page = hits[offset:offset + count]
        entries = [{"resource": r, "search": {"mode": "match"}} for r in page]
        if include in ("MedicationRequest:medication", "MedicationStatement:medication", "MedicationAdministration:medication"):
            for r in page:
                ref = _get(r, "medicationReference.reference") or ""
                if (med := state.resources.get(tuple(ref.split("/", 1)))) is not None:  # type: ignore[arg-type]
                    entries.append({"resource": med, "search": {"mode": "include"}})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(hits), "entry": entries}
        if offset + count < len(hits):
            query = urlencode({**params, **({"_include": include} if include else {}), "_count": count, "_offset": offset + count})
            bundle["link"] = [{"relation": "next", "url": f"{state.next_base or str(request.base_url) + 'fhir'}/{rtype}?{query}"}]
        return JSONResponse(bundle)

    return Starlette(routes=[
        Route("/fhir/{rtype}/_search", search, methods=["POST"]),
        Route("/fhir/{rtype}/{rid}", read, methods=["GET"]),
        Route("/fhir/{rtype}", search, methods=["GET"]),
    ])
