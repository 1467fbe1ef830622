"""Hostile bodies and slow calls: each gets its own 4xx/5xx JSON answer and the next call still works."""

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.app import create_app
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from tests.conftest import LiveServer, load_scenario
from tests.fhir_server import FhirState
from tests.fixture_files import FIXTURES

SERVICE = "/cds-services/b12-myalgia-patient-view"
FIRES = FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json"
LIMIT = 64_000
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def small(knowledge: Knowledge, fhir: tuple[LiveServer, FhirState], tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[LiveServer]:
    """A service with a small body limit, a 0.5 s call deadline and a FHIR deadline longer than that."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("limits"), max_body_bytes=LIMIT, request_deadline_seconds=0.5,
        fhir_allowed_servers=[fhir[0].url + "/fhir"], fhir_deadline_seconds=5,
    )
    with LiveServer(create_app(settings, knowledge)) as live:
        yield live


@pytest.fixture()
def client(small: LiveServer, fhir: tuple[LiveServer, FhirState]) -> Iterator[httpx.Client]:
    global FHIR_BASE  # noqa: PLW0603 -- one loopback FHIR server per module
    FHIR_BASE = fhir[0].url + "/fhir"
    fhir[1].load(valid()["prefetch"])
    with httpx.Client(base_url=small.url, timeout=10) as c:
        yield c


FHIR_BASE = ""


def valid() -> dict[str, Any]:
    """The firing scenario; what it does not prefetch comes from the loopback FHIR server."""
    request: dict[str, Any] = load_scenario(FIRES)["request"]
    request["fhirServer"] = FHIR_BASE
    return request


def still_works(client: httpx.Client) -> None:
    response = client.post(SERVICE, json=valid())
    assert response.status_code == 200 and len(response.json()["cards"]) == 1


def error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    assert body["error"] == code and set(body) <= {"error", "message", "details"}
    return body


def padded(size: int) -> bytes:
    request = valid()
    request["padding"] = "x" * size
    return httpx.Request("POST", "/", json=request).content


def test_body_over_the_limit_is_413_with_an_honest_length(client: httpx.Client) -> None:
    error(client.post(SERVICE, content=padded(LIMIT), headers=JSON), 413, "payload_too_large")
    still_works(client)


def test_body_over_the_limit_is_413_when_chunked(client: httpx.Client) -> None:
    body = padded(LIMIT)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    error(client.post(SERVICE, content=chunks(), headers=JSON), 413, "payload_too_large")
    still_works(client)


def test_a_lying_content_length_cannot_smuggle_a_large_body(small: LiveServer, client: httpx.Client) -> None:
    """Declared small, sent large: only the declared bytes are read (and they are not valid JSON)."""
    body = padded(LIMIT * 2)
    with socket.create_connection(("127.0.0.1", small.port), timeout=5) as sock:
        sock.sendall(b"POST " + SERVICE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\nConnection: close\r\n\r\n" + body[:100])
        # The server must answer from the declared 100 bytes alone, without waiting for the rest.
        # (The rest is sent only afterwards: unread bytes at close make the kernel reset the
        # connection, which could discard the answer before it is read.)
        answer = b""
        while b"\r\n\r\n" not in answer or b'"error"' not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        with contextlib.suppress(OSError):
            sock.sendall(body[100:])
    assert answer.startswith(b"HTTP/1.1 400") and b'"invalid_request"' in answer
    still_works(client)


def test_a_huge_declared_length_is_refused_before_reading(small: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", small.port), timeout=5) as sock:
        sock.sendall(b"POST " + SERVICE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999999\r\n\r\n{")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413") and b'"payload_too_large"' in answer


@pytest.mark.parametrize(("name", "body"), [
    ("nesting past 1024", b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("not UTF-8", b'{"hook": "patient-view\xff\xfe"}'),
    ("lone surrogate", b'{"hook": "\\ud800"}'),
    ("number out of range", b'{"hook": "patient-view", "x": 1e400}'),
    ("NaN", b'{"x": NaN}'),
    ("trailing garbage", b'{"hook": "patient-view"} {}'),
    ("empty", b""),
])
def test_malformed_json_is_400_without_echo(client: httpx.Client, name: str, body: bytes) -> None:
    payload = error(client.post(SERVICE, content=body, headers=JSON), 400, "invalid_request")
    assert "patient-view" not in str(payload) and "1e400" not in str(payload), name
    still_works(client)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b'"x"' + b"}" * depth


@pytest.mark.parametrize("where", ["display", "system", "resourceType", "id", "note", "hookInstance", "selection"])
def test_a_value_nested_past_pythons_recursion_is_never_a_500(client: httpx.Client, where: str) -> None:
    """JSON may nest 1,024 levels (orjson's limit) and Python recursion stops near 1,000: a value
    that deep inside one record loses that record or element, and the rest is read (the card still
    fires); in the envelope it is a 400 naming the request. Found by the attacker review: a 500."""
    request = valid()
    extra = {"resourceType": "Condition", "id": "deep", "subject": {"reference": f"Patient/{request['context']['patientId']}"},
             "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
             "note": [{"text": "x"}]}
    slot = {"display": (extra["code"]["coding"][0], "display"), "system": (extra["code"]["coding"][0], "system"),
            "resourceType": (extra, "resourceType"), "id": (extra, "id"), "note": (extra["note"][0], "text"),
            "hookInstance": (request, "hookInstance"), "selection": (request["context"], "selections")}[where]
    slot[0][slot[1]] = "@@DEEP@@"
    request["prefetch"]["conditions"]["entry"].append({"resource": extra})
    body = httpx.Request("POST", "/", json=request).content.replace(b'"@@DEEP@@"', _nested(1000))
    response = client.post(SERVICE, content=body, headers=JSON)
    if where == "hookInstance":
        error(response, 400, "invalid_request")
    else:
        assert response.status_code == 200, response.text
        assert len(response.json()["cards"]) == 1
    still_works(client)


def test_wide_arrays_under_the_limit_are_answered(client: httpx.Client) -> None:
    request = valid()
    request["context"]["junk"] = [0] * 5000
    request["prefetch"]["conditions"]["entry"] += [{"resource": {}}] * 1000
    response = client.post(SERVICE, json=request)
    assert response.status_code == 200 and len(response.json()["cards"]) == 1


def test_huge_integers_are_handled(client: httpx.Client) -> None:
    body = valid()
    raw = httpx.Request("POST", "/", json=body).content.replace(b'"context":', b'"n": 123456789012345678901234567890, "context":')
    assert client.post(SERVICE, content=raw, headers=JSON).status_code == 200


def test_duplicate_keys_keep_the_last_one(client: httpx.Client) -> None:
    """Decision: like orjson (and Python's json), the last of duplicate keys wins -- deterministically."""
    good = httpx.Request("POST", "/", json=valid()).content
    first_wrong = b'{"hook": "order-sign", ' + good[1:]
    assert client.post(SERVICE, content=first_wrong, headers=JSON).status_code == 200
    last_wrong = good[:-1] + b', "hook": "order-sign"}'
    error(client.post(SERVICE, content=last_wrong, headers=JSON), 400, "invalid_request")


def test_call_past_the_deadline_is_503_not_an_empty_list(
    client: httpx.Client, fhir: tuple[LiveServer, FhirState]
) -> None:
    live, state = fhir
    request = valid()
    request["prefetch"] = {}
    state.delay = 3
    try:
        started = time.perf_counter()
        response = client.post(SERVICE, json=request)
        elapsed = time.perf_counter() - started
        error(response, 503, "deadline_exceeded")
        assert elapsed < 2
    finally:
        state.delay = 0
    recovered = client.post(SERVICE, json=request)  # the FHIR server is fast again: fetched, answered
    assert recovered.status_code == 200 and len(recovered.json()["cards"]) == 1


def test_every_answer_carries_a_request_id(client: httpx.Client) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/healthz", headers={"X-Request-ID": "<script>"}).headers["x-request-id"] != "<script>"
    assert client.post(SERVICE, content=b"[", headers=JSON).headers["x-request-id"]


@pytest.fixture(scope="module")
def roomy(knowledge: Knowledge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Bodies up to 8 MB, and a 0.3 s call deadline."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("roomy"), max_body_bytes=8_000_000, request_deadline_seconds=0.3)
    with LiveServer(create_app(settings, knowledge)) as live:
        yield live


def negated_text_request(chars: int, records: int) -> dict[str, Any]:
    """Records whose only text negates every mention: the costliest text to read, per character."""
    text = "denies myalgia. " * (chars // records // 16)
    request = load_scenario(FIRES)["request"]
    patient_id = request["context"]["patientId"]
    request["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Condition", "id": f"n{i}", "subject": {"reference": f"Patient/{patient_id}"},
                      "code": {"text": text}}} for i in range(records)]}
    return request


@pytest.mark.parametrize("records", [1, 2_000], ids=["one long text", "many records"])
def test_evaluation_past_the_deadline_is_503(roomy: LiveServer, records: int) -> None:
    """Reading 6 MB of negated mentions takes seconds of CPU that no await can cancel; the
    evaluation checks the call's deadline as it reads, so the call ends with a 503 at the deadline
    instead of holding the worker, and the next call is answered as usual."""
    with httpx.Client(base_url=roomy.url, timeout=30) as c:
        error(c.post(SERVICE, json=negated_text_request(6_000_000, records)), 503, "deadline_exceeded")
        healthy = c.post(SERVICE, json=load_scenario(FIRES)["request"])
        assert healthy.status_code == 200 and len(healthy.json()["cards"]) == 1
