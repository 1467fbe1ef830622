"""Reads from an EHR's FHIR server: one query with its Bundle pages, many at once under a deadline.

Failures come back as short reasons ("timeout", "HTTP 401", "malformed response") that never
carry patient data, URLs (they hold the patient id) or the access token.
"""

import asyncio
import time
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson

from cds_service.allowlist import FhirAllowList
from cds_service.prefetch import has_error_outcome, next_link

FHIR_JSON = "application/fhir+json, application/json;q=0.9"
MAX_GET_URL_CHARS = 2000  # longer searches go by POST _search (servers and proxies cap URLs near 2 KB)


class FetchFailed(Exception):
    """One query could not give usable data; `reason` is safe to log and to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ByteBudget:
    """What one call may read from the FHIR server across all its queries and pages: a per-page cap
    alone lets queries x pages x cap (a gigabyte by default) pile up in memory for one call."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise FetchFailed("responses too large in total")


@dataclass(frozen=True)
class Fetched:
    """The outcome of one prefetch key: a resource (or one Bundle of all pages) or a failure."""

    resource: dict[str, Any] | None = None
    failure: str | None = None
    pages: int = 0


def new_client(deadline: float) -> httpx.AsyncClient:
    """The pooled client: no redirects (a redirect could leave the allow-list), bounded timeouts, and
    no cookies kept: it serves every call, clinician and issuer, and a FHIR gateway's session cookie
    from one call would otherwise go out beside the next caller's token."""
    return httpx.AsyncClient(
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(deadline),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"Accept": FHIR_JSON, "Accept-Encoding": "identity"},
    )


class FhirReader:
    """Runs rendered prefetch queries against one fhirServer base."""

    def __init__(self, client: httpx.AsyncClient, max_pages: int, max_body_bytes: int, max_total_bytes: int) -> None:
        self.client = client
        self.max_pages = max_pages
        self.max_body_bytes = max_body_bytes
        self.max_total_bytes = max_total_bytes

    async def read_all(
        self, base: str, queries: dict[str, str], token: str | None, deadline: float
    ) -> tuple[dict[str, Fetched], float]:
        """Every query concurrently; whatever is unfinished at the deadline fails with "timeout"."""
        started = time.perf_counter()
        budget = ByteBudget(self.max_total_bytes)
        tasks = {key: asyncio.create_task(self._read_one(base, q, token, budget)) for key, q in queries.items()}
        try:
            if tasks:
                await asyncio.wait(tasks.values(), timeout=deadline)
        except asyncio.CancelledError:  # the call's own deadline passed: stop reading on its behalf
            for task in tasks.values():
                task.cancel()
            raise
        results: dict[str, Fetched] = {}
        for key, task in tasks.items():
            if not task.done():
                task.cancel()
                results[key] = Fetched(failure="timeout")
            else:
                results[key] = task.result()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return results, (time.perf_counter() - started) * 1000

    async def _read_one(self, base: str, query: str, token: str | None, budget: ByteBudget) -> Fetched:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        same_server = FhirAllowList([base])
        path = query.split("?", 1)[0]
        expected = path.split("/", 1)[0] if "/" in path else "Bundle"
        search = base.rstrip("/") + "/" + query.lstrip("/")
        first_url = search
        form: list[tuple[str, str]] | None = None
        if expected == "Bundle" and len(search) > MAX_GET_URL_CHARS:
            # FHIR search by POST [type]/_search: the long code lists would pass many servers' and
            # proxies' URL limits (IIS: 2,048) as a GET. Next links are followed by GET as given.
            first_url, form = base.rstrip("/") + "/" + path.strip("/") + "/_search", parse_qsl(query.split("?", 1)[1], keep_blank_values=True)
        if not same_server.allows(first_url):
            # A context value is percent-encoded into the path (Patient/{{context.patientId}}): an id
            # such as ../admin becomes ..%2Fadmin, which a proxy or server decoding %2F resolves
            # above the base. Every URL sent meets the rule a fhirServer and a next link meet.
            return Fetched(failure="query leaves the FHIR server")
        url: str | None = first_url
        first: dict[str, Any] | None = None
        pages = 0
        try:
            while url is not None:
                if pages == self.max_pages:
                    raise FetchFailed(f"more than {self.max_pages} pages")
                body = await self._get_json(url, headers, budget, form)
                form = None
                pages += 1
                if body.get("resourceType") != expected:
                    raise FetchFailed("malformed response")
                if expected == "Bundle" and has_error_outcome(body):
                    raise FetchFailed("search reported an error")  # an incomplete result is not "nothing found"
                if first is None:
                    first = body
                    if expected == "Bundle" and isinstance(first.get("entry"), dict):
                        first["entry"] = [first["entry"]]  # one entry as an object, as servers bend arrays
                elif isinstance(entries := body.get("entry"), list | dict):
                    if not isinstance(first.get("entry"), list):
                        first["entry"] = []
                    first["entry"].extend(entries if isinstance(entries, list) else [entries])
                url = next_link(body) if expected == "Bundle" else None
                if url is not None and not same_server.allows(url):
                    raise FetchFailed("next link leaves the FHIR server")
        except FetchFailed as exc:
            return Fetched(failure=exc.reason, pages=pages)
        except httpx.TimeoutException:
            return Fetched(failure="timeout", pages=pages)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError):
            return Fetched(failure="connection failed", pages=pages)
        except UnicodeEncodeError:  # a token or URL that cannot be sent as HTTP header/request bytes
            return Fetched(failure="request cannot be sent", pages=pages)
        if first is not None and expected == "Bundle":
            first.pop("link", None)
        return Fetched(resource=first, pages=pages)

    async def _get_json(
        self, url: str, headers: dict[str, str], budget: ByteBudget, form: list[tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        if form is not None:  # a repeated parameter (date=ge…&date=le…) stays repeated
            fields = {name: [v for n, v in form if n == name] for name, _ in form}
            request = self.client.stream("POST", url, headers=headers, data=fields)
        else:
            request = self.client.stream("GET", url, headers=headers)
        async with request as response:
            if response.status_code != 200:
                raise FetchFailed(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise FetchFailed("response too large")  # said so up front: nothing is read
            if declared.isdigit() and int(declared) > budget.left:
                raise FetchFailed("responses too large in total")
            if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
                # We ask for identity: a compressed body could inflate far past the cap in one read.
                raise FetchFailed("compressed response")
            chunks, size = [], 0
            async for chunk in response.aiter_raw():  # streamed: never buffered past the cap
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise FetchFailed("response too large")
                budget.take(len(chunk))
                chunks.append(chunk)
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            raise FetchFailed("malformed response") from None
        if not isinstance(body, dict):
            raise FetchFailed("malformed response")
        return body
