"""No patient data in logs or error bodies: every fixture through the service over HTTP, DEBUG on.

Each scenario is sent as written (prefetch) and again with its prefetch served by a loopback FHIR
server (so the fetch path logs too), and in malformed variants; the captured JSON log lines and
the error bodies are scanned for the patients' names, MRNs, ids and birth dates.
"""

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.app import create_app
from cds_service.knowledge import Knowledge
from cds_service.logs import JsonFormatter, TextFormatter, configure_logging
from cds_service.settings import Settings
from tests.conftest import LiveServer, load_scenario
from tests.fhir_server import FhirState, make_app
from tests.fixture_files import scenario_files
from tests.test_scenarios import SERVICE

ALL = scenario_files("patient-view") + scenario_files("order-select") + scenario_files("order-sign")


def patient_data(request: dict[str, Any]) -> set[str]:
    """Names, identifier values, the patient id and the birth date in the request."""
    found = {request["context"]["patientId"]}
    patient = (request.get("prefetch") or {}).get("patient") or {}
    for name in patient.get("name", []):
        found.update(name.get("given", []))
        found.add(name.get("family", ""))
    found.update(i.get("value", "") for i in patient.get("identifier", []))
    found.add(patient.get("birthDate", ""))
    return {v for v in found if isinstance(v, str) and len(v) >= 3}


@contextmanager
def logging_into_buffer(fmt: str) -> Iterator[io.StringIO]:
    """The service's own logging set-up (as `serve` does it) at DEBUG, into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    buffer = io.StringIO()
    configure_logging("DEBUG", fmt, buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture()
def captured() -> Iterator[io.StringIO]:
    with logging_into_buffer("json") as buffer:
        yield buffer


def test_no_patient_data_in_logs_or_error_bodies(
    captured: io.StringIO, knowledge: Knowledge, tmp_path: Path
) -> None:
    state = FhirState()
    secrets: set[str] = set()
    bodies: list[str] = []
    with LiveServer(make_app(state)) as fhir:
        base = fhir.url + "/fhir"
        settings = Settings(data_dir=tmp_path, fhir_allowed_servers=[base], patient_hash_key="test-patient-hash-key")
        with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
            for path in ALL:
                request = load_scenario(path)["request"]
                secrets |= patient_data(request)
                url = f"/cds-services/{SERVICE[request['hook']]}"
                request["fhirServer"] = base
                assert c.post(url, json=request).status_code == 200, path.name
                state.reset()
                state.load(request["prefetch"])
                fetched = {**request, "prefetch": {}}
                assert c.post(url, json=fetched).status_code == 200, path.name
                patient = request["prefetch"].get("patient") or {}
                for bad in (
                    {**request, "hook": json.dumps(patient)},
                    {**request, "context": {**request["context"], "patientId": patient.get("name") or [1]}},
                    {**request, "prefetch": json.dumps(patient)},
                    {**request, "hookInstance": patient.get("birthDate", "")[:0]},
                ):
                    response = c.post(url, json=bad)
                    assert response.status_code == 400, path.name
                    bodies.append(response.text)
                # a prefetch value that is no resource is that key missing, not a 400: only the logs are checked
                state.reset()
                state.load(request["prefetch"])
                unreadable = {**request, "prefetch": {**request["prefetch"], "patient": json.dumps(patient)}}
                assert c.post(url, json=unreadable).status_code == 200, path.name
                bodies.append(c.post(url + "/feedback", json={"feedback": [{"card": request["context"]["patientId"]}]}).text)
    lines = captured.getvalue().splitlines()
    assert any('"hook answered' in line or "hook answered" in line for line in lines)
    for line in lines:
        entry = json.loads(line)  # one JSON object per line
        assert {"time", "level", "logger", "pid", "message"} <= set(entry)
        if entry["message"].startswith("hook answered"):
            assert entry["requestId"] and entry["hookInstance"] and entry["service"]
    # each fixture's own patient id, and names, identifiers and birth dates (shared by fixtures made from another)
    assert len(secrets) > len(ALL) + 300
    text = "\n".join(lines)
    for secret in sorted(secrets):
        assert secret not in text, f"patient data {secret!r} in the logs"
        for body in bodies:
            assert secret not in body, f"patient data {secret!r} in an error body"


def test_feedback_log_lines_carry_the_service_field(captured: io.StringIO, knowledge: Knowledge, tmp_path: Path) -> None:
    """An operator filters the JSON log by `service`: the feedback lines had it only inside the message."""
    service = SERVICE["patient-view"]
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    item = {"card": "00000000-0000-4000-8000-000000000000", "outcome": "accepted", "outcomeTimestamp": "2026-11-25T02:00:14Z"}
    with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        answer = client.post(f"/cds-services/{service}/feedback", json={"feedback": [item]}, headers={"X-Request-ID": "fb-1"})
        assert answer.status_code == 200
    [entry] = [json.loads(line) for line in captured.getvalue().splitlines() if "feedback stored" in line]
    assert (entry["requestId"], entry["service"]) == ("fb-1", service) and "hookInstance" not in entry


def test_exceptions_are_logged_by_type_and_place_not_text() -> None:
    try:
        raise ValueError("Maria Metformin MRN-123")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exception"] == "ValueError" and entry["frames"]
    assert "Maria" not in json.dumps(entry)


FORGED = "abc\n2026-11-26 10:00:00,000 ERROR cds_service patient=Arthur Pendle"
TEXT_LINE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} [A-Z]+ \S+ ")


def test_text_format_escapes_control_characters_so_no_line_is_forged() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "seen %s and %s", (FORGED, "a\rb\u2028c\x00"), None)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and "\x00" not in line
    assert line.endswith("seen abc\\x0a2026-11-26 10:00:00,000 ERROR cds_service patient=Arthur Pendle "
                         "and a\\x0db\\u2028c\\x00")


def test_text_format_logs_exceptions_by_type_and_place_on_one_line() -> None:
    try:
        raise ValueError("Maria Metformin\nMRN-123")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info())
    line = TextFormatter().format(record)
    assert "\n" not in line and "Maria" not in line and " exception=ValueError frames=" in line


def test_text_logs_of_a_live_service_cannot_be_forged(knowledge: Knowledge, tmp_path: Path) -> None:
    """A forged hookInstance is refused (400) and never logged; every line written is a real one."""
    request = load_scenario(ALL[0])["request"]
    url = f"/cds-services/{SERVICE[request['hook']]}"
    with logging_into_buffer("text") as buffer:
        with LiveServer(create_app(Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key"), knowledge)) as live, \
                httpx.Client(base_url=live.url, timeout=30) as client:
            assert client.post(url, json={**request, "hookInstance": FORGED}).status_code == 400
            assert client.post(url, json={**request, "hookInstance": "Epic 42"}).status_code == 200
        text = buffer.getvalue()
    # accepted (printable), but not a plain id: it may hold anything, so it is not written down
    assert "hookInstance=(not a plain id) " in text and "Epic 42" not in text and "Arthur" not in text
    for line in text.splitlines():
        assert TEXT_LINE.match(line), line


def test_an_unforeseen_failure_is_a_traced_json_500_and_refusals_are_logged(
    captured: io.StringIO, knowledge: Knowledge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 keeps the request id and CORS headers (a browser client can read it), its log line
    carries the request id, and every refused call leaves a line an operator can count."""
    def broken(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("Maria Metformin")

    monkeypatch.setattr("cds_service.routes.evaluate", broken)
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    request = load_scenario(scenario_files("patient-view")[0])["request"]
    headers = {"X-Request-ID": "trace-42", "Origin": "https://sandbox.cds-hooks.org"}
    with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        failed = client.post(f"/cds-services/{SERVICE['patient-view']}", json=request, headers=headers)
        refused = client.post(f"/cds-services/{SERVICE['patient-view']}", content=b"{", headers={"X-Request-ID": "bad-1",
                                                                                                 "Content-Type": "application/json"})
    assert failed.status_code == 500 and failed.json()["error"] == "internal_error"
    assert failed.headers["x-request-id"] == "trace-42" and failed.headers["access-control-allow-origin"]
    assert refused.status_code == 400
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    [error] = [e for e in lines if "internal error" in e["message"]]
    assert error["requestId"] == "trace-42" and "ZeroDivisionError" in error["message"] and "Maria" not in error["message"]
    assert error["exception"] == "ZeroDivisionError" and any("routes.py" in frame for frame in error["frames"])  # where
    assert "Maria" not in captured.getvalue()  # the exception's text may quote input: never logged
    refusals = {e["requestId"]: e for e in lines if e["message"].startswith("request refused")}
    assert refusals["trace-42"]["level"] == "ERROR" and "status=500" in refusals["trace-42"]["message"]
    assert refusals["bad-1"]["level"] == "INFO" and "status=400" in refusals["bad-1"]["message"]
