"""fhir_fetch.FhirReader and gathering edge cases against real HTTP servers on loopback.

Two small Starlette FHIR servers ("edge" and "other", different ports) answer whatever each test
tells them to, and log every request with its Authorization header; the CDS service runs under
LiveServer. Nothing of ours is mocked.
"""

import asyncio
import gzip
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from cds_service.fhir_fetch import Fetched, FhirReader, new_client
from cds_service.knowledge import Knowledge
from tests.conftest import LiveServer, cds, load_scenario
from tests.fhir_server import FhirState
from tests.fixture_files import FIXTURES

SERVICE = "/cds-services/b12-myalgia-patient-view"
FIRES = FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json"
PENDING_ORDER = FIXTURES / "patient-view" / "14-pending-b12-order-no-card.json"
OTHER_PATIENT = FIXTURES / "patient-view" / "02-omeprazole-fatigue-warning.json"
UNDER_16 = FIXTURES / "patient-view" / "23-under-16-no-card.json"
QUERY = "Condition?patient=pt-1"

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Edge:
    """A FHIR server that answers each path as the test says and logs (path, query, auth)."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)

    def reset(self) -> None:
        self.handlers.clear()
        self.log.clear()


def edge_app(edge: Edge) -> Starlette:
    async def any_path(request: Request) -> Response:
        edge.log.append((request.url.path, request.url.query, request.headers.get("authorization")))
        handler = edge.handlers.get(request.url.path)
        if handler is None:
            return JSONResponse({"resourceType": "OperationOutcome", "issue": []}, status_code=404)
        return await handler(request)

    return Starlette(routes=[Route("/{path:path}", any_path, methods=["GET"])])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LiveServer, Edge, LiveServer, Edge]]:
    edge, other = Edge(), Edge()
    with LiveServer(edge_app(edge)) as live_edge, LiveServer(edge_app(other)) as live_other:
        yield live_edge, edge, live_other, other


@pytest.fixture()
def edge(servers: tuple[LiveServer, Edge, LiveServer, Edge]) -> Iterator[Edge]:
    servers[1].reset()
    servers[3].reset()
    yield servers[1]
    servers[1].reset()
    servers[3].reset()


@pytest.fixture()
def other(servers: tuple[LiveServer, Edge, LiveServer, Edge], edge: Edge) -> Edge:
    return servers[3]


@pytest.fixture(scope="module")
def base(servers: tuple[LiveServer, Edge, LiveServer, Edge]) -> str:
    return servers[0].url + "/fhir"


@pytest.fixture(scope="module")
def other_base(servers: tuple[LiveServer, Edge, LiveServer, Edge]) -> str:
    return servers[2].url + "/fhir"


def bundle(entries: list[Any], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if next_url is not None:
        body["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return body


def condition(n: int) -> dict[str, Any]:
    return {"resource": {"resourceType": "Condition", "id": f"c{n}", "subject": {"reference": "Patient/pt-1"}}}


def pages(*bodies: dict[str, Any]) -> Handler:
    """Page k (query `page=k`, the first page has none) answers bodies[k]."""

    async def handler(request: Request) -> Response:
        return JSONResponse(bodies[int(request.query_params.get("page", "0"))])

    return handler


def raw(body: bytes, status: int = 200, **headers: str) -> Handler:
    async def handler(_: Request) -> Response:
        return Response(body, status_code=status, headers={"content-type": "application/fhir+json", **headers})

    return handler


def read(base: str, queries: dict[str, str] | None = None, token: str | None = None, deadline: float = 2.0,
         max_pages: int = 10, max_body: int = 1_000_000, max_total: int = 50_000_000
         ) -> tuple[dict[str, Fetched], float]:
    """FhirReader.read_all with the service's own pooled client, as the app builds it."""

    async def go() -> tuple[dict[str, Fetched], float]:
        async with new_client(deadline) as client:
            return await FhirReader(client, max_pages, max_body, max_total).read_all(
                base, queries or {"conditions": QUERY}, token, deadline)

    return asyncio.run(go())


def one(base: str, **kwargs: Any) -> Fetched:
    return read(base, **kwargs)[0]["conditions"]


# --- paging and `next` links ------------------------------------------------------------------


def test_pages_are_merged_in_order_and_links_dropped(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(
        bundle([condition(1), condition(2)], f"{base}/Condition?patient=pt-1&page=1"),
        bundle([condition(3)], f"{base}/Condition?patient=pt-1&page=2"),
        bundle([condition(4)]),
    )
    fetched = one(base, token="tok")
    assert fetched.failure is None and fetched.pages == 3
    assert fetched.resource is not None and "link" not in fetched.resource
    assert [e["resource"]["id"] for e in fetched.resource["entry"]] == ["c1", "c2", "c3", "c4"]
    assert [auth for _, _, auth in edge.log] == ["Bearer tok"] * 3  # every page carries the token


def test_exactly_max_pages_is_enough_one_more_fails(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(
        bundle([condition(1)], f"{base}/Condition?page=1"), bundle([condition(2)], f"{base}/Condition?page=2"),
        bundle([condition(3)]),
    )
    assert one(base, max_pages=3).failure is None
    edge.log.clear()
    assert one(base, max_pages=2).failure == "more than 2 pages"
    assert len(edge.log) == 2


def test_next_link_to_itself_stops_at_the_page_cap(edge: Edge, base: str) -> None:
    async def loop(_: Request) -> Response:
        return JSONResponse(bundle([condition(1)], f"{base}/{QUERY}"))

    edge.handlers["/fhir/Condition"] = loop
    started = time.perf_counter()
    fetched = one(base, max_pages=5)
    assert fetched.failure == "more than 5 pages" and fetched.resource is None
    assert len(edge.log) == 5 and time.perf_counter() - started < 1.5


@pytest.mark.parametrize("next_url", [
    "{other}/Condition?page=1",                                # another port
    "https://127.0.0.1:{port}/fhir/Condition?page=1",          # another scheme
    "http://localhost:{port}/fhir/Condition?page=1",           # another host name for the same socket
    "http://user@127.0.0.1:{port}/fhir/Condition?page=1",      # userinfo
    "http://user:pw@127.0.0.1:{port}/fhir/Condition?page=1",
    "http://@127.0.0.1:{port}/fhir/Condition?page=1",          # empty userinfo
    "http://127.0.0.1:{port}@127.0.0.1:{other_port}/fhir/Condition?page=1",  # userinfo that looks like the host
    "//127.0.0.1:{other_port}/fhir/Condition?page=1",         # scheme-relative
    "/fhir/Condition?page=1",                                  # relative (FHIR requires absolute links)
    "http://127.0.0.1:{port}/fhirx/Condition?page=1",          # outside the base path
    "http://127.0.0.1:{port}/admin?page=1",
    "http://127.0.0.1:{port}/fhir/../admin?page=1",
    "http://127.0.0.1:{port}/fhir/%2e%2e/admin?page=1",
    "http://127.0.0.1:{port}/fhir/Condition?page=1#frag",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/fhir/Condition",
])
def test_next_link_off_the_server_is_refused_and_the_token_stays_home(
    next_url: str, edge: Edge, other: Edge, base: str, other_base: str,
    servers: tuple[LiveServer, Edge, LiveServer, Edge],
) -> None:
    url = next_url.format(other=other_base, port=servers[0].port, other_port=servers[2].port)
    edge.handlers["/fhir/Condition"] = pages(bundle([condition(1)], url), bundle([condition(2)]))
    fetched = one(base, token="secret-tok")
    assert fetched.failure == "next link leaves the FHIR server" and fetched.resource is None
    assert [(p, q) for p, q, _ in edge.log] == [("/fhir/Condition", "patient=pt-1")]  # never page 2
    assert other.log == []


def test_next_link_in_another_case_of_the_same_origin_is_followed(
    edge: Edge, base: str, servers: tuple[LiveServer, Edge, LiveServer, Edge]
) -> None:
    port = servers[0].port
    edge.handlers["/fhir/Condition"] = pages(
        bundle([condition(1)], f"HTTP://127.0.0.1:{port}/fhir/Condition?page=1"), bundle([condition(2)]))
    fetched = one(base)
    assert fetched.failure is None and fetched.resource is not None and len(fetched.resource["entry"]) == 2


def test_fhir_server_with_a_trailing_slash(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(bundle([condition(1)], f"{base}/Condition?page=1"), bundle([condition(2)]))
    fetched = one(base + "/")
    assert fetched.failure is None and fetched.pages == 2
    assert [p for p, _, _ in edge.log] == ["/fhir/Condition", "/fhir/Condition"]  # no `//`


# --- bodies that are not what was asked for ---------------------------------------------------


def test_entries_that_are_not_objects_are_merged_not_fatal(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(
        bundle([condition(1), 1, "x", None, []], f"{base}/Condition?page=1"), bundle([{}, condition(2)]))
    fetched = one(base)
    assert fetched.failure is None and fetched.resource is not None
    assert fetched.resource["entry"] == [condition(1), 1, "x", None, [], {}, condition(2)]


def test_an_entry_sent_as_one_object_is_kept_on_every_page(edge: Edge, base: str) -> None:
    """Servers bend a one-item array into an object, as prefetch is read: the entry on page one was
    dropped when pages followed, and on a later page ignored (found by the attacker review: a B12
    result lost that way brought a 'measure before you treat' card)."""
    first = bundle([], f"{base}/Condition?page=1")
    first["entry"] = condition(1)
    second = bundle([], f"{base}/Condition?page=2")
    second["entry"] = condition(2)
    edge.handlers["/fhir/Condition"] = pages(first, second, bundle([condition(3)]))
    fetched = one(base)
    assert fetched.resource is not None
    assert fetched.resource["entry"] == [condition(1), condition(2), condition(3)]


@pytest.mark.parametrize("body", [
    b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}',
    b'{"resourceType": "Patient", "id": "pt-1"}',
    b"[]", b'"Bundle"', b"null", b"", b"<html>oops</html>", b'{"resourceType": "Bundle"',
    b'{"resourceType": "Bundle"} trailing', b"\xff\xfe{}",
])
def test_a_200_that_is_not_a_bundle_is_malformed(body: bytes, edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = raw(body)
    assert one(base).failure == "malformed response"


def test_an_operation_outcome_on_page_two_fails_the_query(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(
        bundle([condition(1)], f"{base}/Condition?page=1"), {"resourceType": "OperationOutcome", "issue": []})
    assert one(base).failure == "malformed response"


def test_a_read_must_answer_its_own_type(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Patient/pt-1"] = pages(bundle([{"resource": {"resourceType": "Patient", "id": "pt-1"}}]))
    [fetched] = read(base, {"patient": "Patient/pt-1"})[0].values()
    assert fetched.failure == "malformed response"
    edge.handlers["/fhir/Patient/pt-1"] = pages({"resourceType": "Patient", "id": "pt-1", "link": [{"x": 1}]})
    [fetched] = read(base, {"patient": "Patient/pt-1"})[0].values()
    assert fetched.resource == {"resourceType": "Patient", "id": "pt-1", "link": [{"x": 1}]}  # `link` kept on a read


@pytest.mark.parametrize("status", [201, 204, 301, 304, 400, 401, 403, 404, 410, 429, 500, 502, 503])
def test_any_status_but_200_fails_with_the_status_only(status: int, edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = raw(b'{"resourceType": "Bundle", "note": "pt-1 secret"}', status)
    fetched = one(base, token="secret")
    assert fetched.failure == f"HTTP {status}" and fetched.resource is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_and_the_token_never_leaves(
    status: int, edge: Edge, other: Edge, base: str, other_base: str
) -> None:
    async def away(_: Request) -> Response:
        return RedirectResponse(f"{other_base}/Condition?patient=pt-1", status_code=status)

    edge.handlers["/fhir/Condition"] = away
    other.handlers["/fhir/Condition"] = pages(bundle([condition(1)]))
    fetched = one(base, token="secret-tok")
    assert fetched.failure == f"HTTP {status}"
    assert other.log == []


def test_no_token_means_no_authorization_header(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(bundle([condition(1)]))
    assert one(base).failure is None and one(base, token="").failure is None
    assert [auth for _, _, auth in edge.log] == [None, None]


def test_no_cookie_is_kept_from_one_call_for_the_next(edge: Edge, base: str) -> None:
    """The client is pooled across calls, clinicians and issuers: a session cookie a FHIR gateway
    sets on one user's call must not ride along beside the next user's token."""
    cookies: list[str | None] = []

    async def sets_a_cookie(request: Request) -> Response:
        cookies.append(request.headers.get("cookie"))
        response = JSONResponse(bundle([condition(1)]))
        response.set_cookie("FHIRSESSION", "session-of-" + str(request.headers.get("authorization")))
        return response

    edge.handlers["/fhir/Condition"] = sets_a_cookie

    async def two_calls() -> None:
        async with new_client(2.0) as client:
            for token in ("token-of-dr-a", "token-of-dr-b"):
                fetched, _ = await FhirReader(client, 10, 1_000_000, 50_000_000).read_all(
                    base, {"conditions": QUERY}, token, 2.0)
                assert fetched["conditions"].failure is None

    asyncio.run(two_calls())
    assert cookies == [None, None]


def test_a_token_cannot_inject_headers(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = pages(bundle([condition(1)]))
    fetched = one(base, token="tok\r\nX-Injected: 1")
    assert fetched.failure == "connection failed"
    assert edge.log == []  # refused before anything was sent


# --- size caps and compression ----------------------------------------------------------------


def exact_bundle(size: int) -> bytes:
    head, tail = b'{"resourceType": "Bundle", "padding": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def chunked(body: bytes, chunk: int = 1000, pause: float = 0.0) -> Handler:
    async def handler(_: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            for i in range(0, len(body), chunk):
                if pause:
                    await asyncio.sleep(pause)
                yield body[i:i + chunk]

        return StreamingResponse(stream(), media_type="application/fhir+json")

    return handler


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_body_cap_boundary(streamed: bool, edge: Edge, base: str) -> None:
    cap = 4096
    for size, expected in ((cap, None), (cap + 1, "response too large")):
        body = exact_bundle(size)
        edge.handlers["/fhir/Condition"] = chunked(body) if streamed else raw(body)
        assert one(base, max_body=cap).failure == expected, size


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_one_calls_queries_and_pages_share_a_total_cap(streamed: bool, edge: Edge, base: str) -> None:
    """Each 3,000-byte page is under the per-page cap; three queries of two pages each (18,000
    bytes) pass a 10,000-byte total: the queries whose reads pass it fail (which ones depends on how
    the concurrent reads interleave), and with exactly enough every query is read whole."""
    page = exact_bundle(3000)

    async def two_pages(request: Request) -> Response:
        if request.query_params.get("page") == "1":
            return await (chunked(page) if streamed else raw(page))(request)
        body = json.dumps(bundle([], f"{base}/Condition?q={request.query_params['q']}&page=1")).encode()
        return Response(body + b" " * (3000 - len(body)), media_type="application/fhir+json")

    edge.handlers["/fhir/Condition"] = two_pages
    queries = {f"q{n}": f"Condition?q={n}" for n in range(3)}
    results, _ = read(base, queries, max_body=4096, max_total=10_000)
    assert all(r.failure is None and r.pages == 2 or r.failure == "responses too large in total" for r in results.values())
    assert [r.failure for r in results.values()].count(None) <= 1  # two whole queries would be 12,000 bytes
    assert any(r.failure for r in results.values())
    results, _ = read(base, queries, max_body=4096, max_total=18_000)  # exactly enough: all read
    assert [r.failure for r in results.values()] == [None, None, None]


def test_a_declared_length_past_the_total_left_is_refused_unread(edge: Edge, base: str) -> None:
    edge.handlers["/fhir/Condition"] = raw(exact_bundle(5000))
    fetched = one(base, max_body=8192, max_total=4096)
    assert fetched.failure == "responses too large in total" and fetched.pages == 0


def test_a_compressed_response_is_refused_since_identity_was_asked_for(edge: Edge, base: str) -> None:
    """The client asks for identity encoding: a server that compresses anyway could send a body that
    inflates far past the cap in a single read, so it is refused rather than decoded."""
    body = json.dumps(bundle([condition(n) for n in range(200)])).encode()
    edge.handlers["/fhir/Condition"] = raw(gzip.compress(body), **{"content-encoding": "gzip"})
    assert one(base, max_body=len(body)).failure == "compressed response"


def test_a_gzip_bomb_is_never_inflated(edge: Edge, base: str) -> None:
    bomb = gzip.compress(exact_bundle(60_000_000), 9)
    assert len(bomb) < 65536  # its Content-Length passes the up-front check
    edge.handlers["/fhir/Condition"] = raw(bomb, **{"content-encoding": "gzip"})
    tracemalloc.start()
    try:
        fetched = one(base, max_body=65536)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fetched.failure == "compressed response"
    assert peak < 8_000_000, f"peak {peak / 1e6:.0f} MB for a 64 KiB cap"


# --- the deadline -----------------------------------------------------------------------------


def test_a_trickling_body_is_cut_at_the_deadline(edge: Edge, base: str) -> None:
    """One byte every 50 ms never trips a per-read timeout; the overall deadline must."""
    edge.handlers["/fhir/Condition"] = chunked(json.dumps(bundle([condition(1)])).encode(), chunk=1, pause=0.05)
    started = time.perf_counter()
    fetched = one(base, deadline=0.5)
    assert fetched.failure == "timeout"
    assert time.perf_counter() - started < 1.0


def test_the_deadline_covers_all_pages_not_each_page(edge: Edge, base: str) -> None:
    async def slow_page(request: Request) -> Response:
        await asyncio.sleep(0.2)
        page = int(request.query_params.get("page", "0"))
        return JSONResponse(bundle([condition(page)], f"{base}/Condition?page={page + 1}" if page < 5 else None))

    edge.handlers["/fhir/Condition"] = slow_page
    started = time.perf_counter()
    fetched = one(base, deadline=0.5)
    assert fetched.failure == "timeout" and time.perf_counter() - started < 1.0


def test_queries_share_one_deadline_and_run_at_once(edge: Edge, base: str) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params["wait"]))
        return JSONResponse(bundle([]))

    edge.handlers["/fhir/Condition"] = slow
    queries = {f"fast{n}": f"Condition?wait=0.3&n={n}" for n in range(6)} | {"slow": "Condition?wait=5"}
    started = time.perf_counter()
    results, ms = read(base, queries, deadline=0.8)
    elapsed = time.perf_counter() - started
    assert {k: r.failure for k, r in results.items()} == {**{f"fast{n}": None for n in range(6)}, "slow": "timeout"}
    assert elapsed < 1.6 and 700 < ms < 1500


# --- through the service: gathering ------------------------------------------------------------


@pytest.fixture(scope="module")
def service(knowledge: Knowledge, base: str, fhir_base: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with cds(knowledge, data_dir=tmp_path_factory.mktemp("fetch"), fhir_allowed_servers=[base, fhir_base],
             fhir_deadline_seconds=1.0) as client:
        yield client


def request_for(path: Any, fhir_server: str, state: FhirState | None = None, drop: tuple[str, ...] = ()
                ) -> dict[str, Any]:
    request: dict[str, Any] = load_scenario(path)["request"]
    if state is not None:
        state.load(request["prefetch"])
    for key in drop:
        del request["prefetch"][key]
    request["fhirServer"] = fhir_server
    return request


def test_conditions_with_junk_entries_still_give_the_card(service: httpx.Client, edge: Edge, base: str) -> None:
    request = request_for(FIRES, base)
    conditions = request["prefetch"].pop("conditions")
    half = len(conditions["entry"]) // 2
    edge.handlers["/fhir/Condition"] = pages(
        bundle(conditions["entry"][:half] + [7, "junk", None], f"{base}/Condition?page=1"),
        bundle([[], *conditions["entry"][half:]]),
    )
    response = service.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    assert [c["indicator"] for c in response.json()["cards"]] == ["critical"]
    assert len(edge.log) == 2


def test_fhir_server_with_trailing_slash_through_the_service(
    service: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    request = request_for(FIRES, fhir_base + "/", fhir_state, drop=("conditions", "b12Orders"))
    response = service.post(SERVICE, json=request)
    assert response.status_code == 200 and len(response.json()["cards"]) == 1
    assert sorted(p.split("?")[0] for _, p, _ in fhir_state.log) == ["/fhir/Condition", "/fhir/ServiceRequest"]


def test_concurrent_calls_each_send_their_own_token(
    service: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """One pooled client serves every call: no call's token may reach another call's queries."""
    fhir_state.delay = 0.2  # the calls overlap on the FHIR server
    requests = {}
    for path, patient in ((FIRES, "pt-01"), (OTHER_PATIENT, "pt-02")):
        request = request_for(path, fhir_base, fhir_state, drop=("conditions", "medications", "b12Orders"))
        request["fhirAuthorization"] = {"access_token": f"tok-{patient}", "token_type": "Bearer", "subject": "ehr"}
        requests[patient] = request
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda r: service.post(SERVICE, json=r).status_code, list(requests.values()) * 3))
    assert statuses == [200] * 6
    assert len(fhir_state.log) == 18
    for _, path, auth in fhir_state.log:
        patient = "pt-01" if "pt-01" in path else "pt-02"
        assert auth == f"Bearer tok-{patient}", path


@pytest.mark.parametrize("patient_id", ["../../admin", "x/../../admin", "../", "Patient/../../admin", "..\\..\\admin", "..", "."])
def test_a_patient_id_cannot_lead_the_query_out_of_the_base(
    patient_id: str, service: httpx.Client, edge: Edge, base: str
) -> None:
    """`Patient/{{context.patientId}}` with `../../admin` would be sent as `Patient/..%2F..%2Fadmin`,
    which a proxy or server decoding `%2F` serves from `/admin`. A patientId that is no FHIR id (a
    slash, a backslash) is refused with the envelope, 400; one of dots alone, a valid id, is a dot
    segment: the query meets the fhirServer rule, so nothing is sent and the token stays home."""
    request = request_for(FIRES, base, drop=("patient",))
    request["context"]["patientId"] = patient_id
    request["fhirAuthorization"] = {"access_token": "secret-tok", "token_type": "Bearer", "subject": "ehr"}
    response = service.post(SERVICE, json=request)
    if patient_id.strip("."):
        assert response.status_code == 400, response.text
        assert response.json()["details"][0]["loc"] == "context.patientId"
    else:
        assert response.status_code == 412, response.text
        assert response.json()["details"] == [{"key": "patient", "reason": "template cannot be rendered"}]
    assert edge.log == []


def test_a_patient_id_with_dots_inside_is_still_read(service: httpx.Client, edge: Edge, base: str) -> None:
    """FHIR ids may hold dots: only a `.` or `..` segment is refused, never `pt.01..v2`."""
    patient = "pt.01..v2"
    request = json.loads(json.dumps(request_for(FIRES, base, drop=("patient",))).replace('"pt-01"', f'"{patient}"')
                         .replace("Patient/pt-01", f"Patient/{patient}"))
    edge.handlers[f"/fhir/Patient/{patient}"] = pages({"resourceType": "Patient", "id": patient, "birthDate": "1950-01-01"})
    response = service.post(SERVICE, json=request)
    assert response.status_code == 200 and len(response.json()["cards"]) == 1, response.text
    assert [p for p, _, _ in edge.log] == [f"/fhir/Patient/{patient}"]


def test_a_non_ascii_token_is_a_412_not_a_500(service: httpx.Client, edge: Edge, base: str) -> None:
    request = request_for(FIRES, base, drop=("conditions",))
    request["fhirAuthorization"] = {"access_token": "tøken", "token_type": "Bearer", "subject": "ehr"}
    edge.handlers["/fhir/Condition"] = pages(bundle([]))
    response = service.post(SERVICE, json=request)
    assert response.status_code == 412, response.text
    assert response.json()["details"] == [{"key": "conditions", "reason": "request cannot be sent"}]


OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "exception", "diagnostics": "ServiceRequest search failed"}]}


def test_an_operation_outcome_in_prefetch_is_fetched_again(
    service: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    request = request_for(PENDING_ORDER, fhir_base, fhir_state)
    request["prefetch"]["b12Orders"] = OUTCOME
    response = service.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}  # the pending order, read from the FHIR server, silences it
    assert any(p.startswith("/fhir/ServiceRequest") for _, p, _ in fhir_state.log)


def test_an_operation_outcome_in_prefetch_with_no_fhir_server_is_412(service: httpx.Client) -> None:
    request = request_for(PENDING_ORDER, "")
    del request["fhirServer"]
    request["prefetch"]["b12Orders"] = OUTCOME
    response = service.post(SERVICE, json=request)
    assert response.status_code == 412, response.text
    assert [d["key"] for d in response.json()["details"]] == ["b12Orders"]


def test_the_pending_order_scenario_is_silent_when_prefetched(service: httpx.Client) -> None:
    """Control for the two tests above: the same request with the real b12Orders gives no card."""
    request = request_for(PENDING_ORDER, "")
    del request["fhirServer"]
    response = service.post(SERVICE, json=request)
    assert response.status_code == 200 and response.json() == {"cards": []}
    del request["prefetch"]["b12Orders"]  # and without it the card shows: the key is what silences it
    request["fhirServer"] = "http://not-allowed.example.org/fhir"
    assert service.post(SERVICE, json=request).status_code == 412


def test_the_under_16_patient_fetched_is_silent(service: httpx.Client, edge: Edge, base: str) -> None:
    """Control for the test below: the child's own Patient, fetched, keeps the card away."""
    request = request_for(UNDER_16, base)
    edge.handlers["/fhir/Patient/pt-23"] = pages(request["prefetch"].pop("patient"))
    response = service.post(SERVICE, json=request)
    assert response.status_code == 200 and response.json() == {"cards": []}


@pytest.mark.parametrize("other_id", ["someone-else", "PT-23"])
def test_a_fetched_patient_that_is_not_the_context_patient_is_412(
    other_id: str, service: httpx.Client, edge: Edge, base: str
) -> None:
    request = request_for(UNDER_16, base)
    edge.handlers["/fhir/Patient/pt-23"] = pages({**request["prefetch"].pop("patient"), "id": other_id})
    response = service.post(SERVICE, json=request)
    assert response.status_code == 412, response.text
    assert [d["key"] for d in response.json()["details"]] == ["patient"]


def test_no_fetch_outlives_a_call_cut_by_the_request_deadline(
    knowledge: Knowledge, edge: Edge, base: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async def slow_pages(request: Request) -> Response:
        await asyncio.sleep(0.5)
        page = int(request.query_params.get("page", "0"))
        return JSONResponse(bundle([], f"{base}/Condition?page={page + 1}" if page < 5 else None))

    edge.handlers["/fhir/Condition"] = slow_pages
    request = request_for(FIRES, base, drop=("conditions",))
    request["fhirAuthorization"] = {"access_token": "secret-tok", "token_type": "Bearer", "subject": "ehr"}
    with cds(knowledge, data_dir=tmp_path_factory.mktemp("deadline"), fhir_allowed_servers=[base],
             fhir_deadline_seconds=10, request_deadline_seconds=0.3) as client:
        response = client.post(SERVICE, json=request)
        assert response.status_code == 503 and response.json()["error"] == "deadline_exceeded"
        seen = len(edge.log)
        time.sleep(1.3)
        assert len(edge.log) == seen, f"{len(edge.log) - seen} FHIR requests after the call was answered"


@pytest.mark.parametrize(("severity", "failure"), [("error", "search reported an error"), ("fatal", "search reported an error"),
                                                    ("warning", None), ("information", None)])
def test_a_search_bundle_reporting_an_error_is_not_taken_as_complete(
    edge: Edge, base: str, severity: str, failure: str | None
) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "processing"}]}
    edge.handlers["/fhir/Condition"] = pages(bundle([condition(1), {"resource": outcome, "search": {"mode": "outcome"}}]))
    assert one(base).failure == failure
