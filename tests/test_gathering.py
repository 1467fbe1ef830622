"""Missing prefetch fetched from a real FHIR server on loopback, with every fault over real HTTP."""

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.knowledge import Knowledge
from tests.conftest import LiveServer, cds, load_scenario
from tests.fhir_server import FhirState
from tests.fixture_files import FIXTURES, scenario_files
from tests.test_scenarios import check_cards

SERVICE = "/cds-services/b12-myalgia-patient-view"
POSITIVE = FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json"
ESSENTIAL = ["b12Administrations", "b12Orders", "conditions", "medicationStatements", "medications",
             "observations", "patient"]




@pytest.fixture(scope="module")
def fetching(knowledge: Knowledge, fhir_base: str) -> Iterator[httpx.Client]:
    with cds(knowledge, fhir_allowed_servers=[fhir_base], fhir_deadline_seconds=1.0) as client:
        yield client


def stripped(path: Path, fhir_base: str, state: FhirState, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The scenario's request without its prefetch (bar `keep`), its resources served by the FHIR server."""
    scenario = load_scenario(path)
    request = scenario["request"]
    state.load(request["prefetch"])
    request["prefetch"] = {k: v for k, v in request["prefetch"].items() if k in keep}
    request["fhirServer"] = fhir_base
    return scenario


@pytest.mark.parametrize("pasted", [False, True])
def test_card_appears_with_no_prefetch_at_all(
    fetching: httpx.Client, fhir_base: str, fhir_state: FhirState, pasted: bool
) -> None:
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    del scenario["request"]["prefetch"]
    if pasted:  # whitespace around a pasted URL: allowed as the base it surrounds, and fetched from it
        scenario["request"]["fhirServer"] = f" {fhir_base}\n"
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 200, response.text
    check_cards(response.json()["cards"], scenario["expect"], "pt-01")
    paths = sorted(p.split("?")[0] for _, p, _ in fhir_state.log)
    assert "/fhir/Patient/pt-01" in paths and "/fhir/Observation" in paths
    assert all(auth is None for _, _, auth in fhir_state.log)  # no fhirAuthorization: no header


# Scenarios about the shape of a prefetch value: fetched, there is no such value (see
# test_a_key_sent_in_a_shape_that_cannot_be_read_is_fetched_again).
PREFETCH_SHAPE = {
    "63-bundle-without-resourcetype-entry-as-object-no-card",
    "64-unreadable-medications-key-not-checked-warning",
    "81-untreated-low-without-medication-data-says-not-checked",  # an absent key: fetched, it is no longer absent
    "579-low-b12-administrations-not-sent-says-treatment-unchecked-critical",  # the same
    "582-lapsed-treatment-macrocytic-anaemia-administrations-not-sent-critical-unchecked",  # the same
    # a FHIR server answers a search by its own type: older types are what an EHR's prefetch sends
    "580-on-b12-injections-as-a-dstu2-medicationorder-no-card",
    "581-pending-b12-order-as-a-dstu2-diagnosticorder-no-card",
    "223-results-and-medications-withheld-by-the-ehr-says-not-checked",  # the server's suppressed warnings are the point
    "234-omeprazole-named-by-urn-uuid-medication-reference-warning",  # a searchset a server returns names no urn:uuid
    "250-b12-injection-procedure-under-a-local-code-no-card",  # the procedures search asks by code: a local one is not found
    "315-b12-injection-booked-is-replacement-under-way-no-card",  # the same
    "513-administration-of-vitamin-b12-procedure-no-card",  # the same
    # the observations search asks by code, which a panel's component codes do not match (combo-code
    # would, but few EHRs support it): a panel is read when an EHR's prefetch sends it
    "325-blood-count-panel-with-components-macrocytic-anaemia-critical",
}


def _scenarios() -> list[Any]:
    return [p for p in scenario_files("patient-view") if p.stem not in PREFETCH_SHAPE]


def test_a_key_sent_in_a_shape_that_cannot_be_read_is_fetched_again(
    fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """Fixture 64 with fetching on: the unreadable medications key is fetched, the B12 order found, no card."""
    path = next(p for p in scenario_files("patient-view") if p.stem.startswith("64-"))
    scenario = load_scenario(path)
    request = scenario["request"]
    on_injections = next(p for p in scenario_files("patient-view") if p.stem.startswith("04-"))
    medications = json.dumps(load_scenario(on_injections)["request"]["prefetch"]["medications"])
    fhir_state.load({**request["prefetch"], "medications": json.loads(medications.replace("pt-04", "pt-64"))})
    request["fhirServer"] = fhir_base
    response = fetching.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    assert response.json()["cards"] == []
    assert any(p.startswith("/fhir/MedicationRequest") for _, p, _ in fhir_state.log)


@pytest.mark.parametrize("path", _scenarios(), ids=lambda p: p.stem)
def test_every_scenario_gives_the_same_answer_when_fetched(
    path: Path, fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """The templates and the fixtures agree: fetching what the EHR would prefetch changes nothing."""
    scenario = stripped(path, fhir_base, fhir_state)
    fhir_state.page_size = 2  # and every multi-resource search pages
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 200, response.text
    check_cards(response.json()["cards"], scenario["expect"], scenario["request"]["context"]["patientId"])


def _mcv(days_ago: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"pt-20-mcv-{days_ago}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "787-2"}]},
            "subject": {"reference": "Patient/pt-20"},
            "effectiveDateTime": (date.today() - timedelta(days=days_ago)).isoformat(),
            "valueQuantity": {"value": 108, "unit": "fL", "system": "http://unitsofmeasure.org", "code": "fL"}}


@pytest.mark.parametrize(("days_ago", "fires"), [(100, True), (800, False)])
def test_without_date_tokens_discovery_is_undated_and_an_old_finding_is_read_only_inside_its_look_back(
    days_ago: int, fires: bool, knowledge: Knowledge, fhir_base: str, fhir_state: FhirState
) -> None:
    """CDS_PREFETCH_DATE_TOKENS=false. Fixture 20 (myalgia at 74, nothing else: no card) with a raised
    MCV prefetched by a client that filled the undated template: 100 days ago it is a sign and the card
    fires; 800 days ago, past the 730 days the dated search asks for, the rule's own look-back leaves it
    out, as the dated search would have. A key left out is still fetched with its date bound (the
    service fills the token itself): the administrations search asks from a year back."""
    scenario = stripped(FIXTURES / "patient-view" / "20-myalgia-and-age-only-no-card.json", fhir_base, fhir_state,
                        keep=("patient", "conditions", "medications", "medicationStatements", "procedures", "b12Orders",
                              "b12Results", "observationsIcd10"))
    scenario["request"]["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset",
                                                       "entry": [{"resource": _mcv(days_ago)}]}
    with cds(knowledge, fhir_allowed_servers=[fhir_base], prefetch_date_tokens=False) as client:
        templates = client.get("/cds-services").json()["services"][0]["prefetch"]
        response = client.post(SERVICE, json=scenario["request"])
    assert not any("today()" in t for t in templates.values())
    assert response.status_code == 200, response.text
    assert bool(response.json()["cards"]) is fires
    since = (date.today() - timedelta(days=knowledge.rule.prefetch.administration_lookback_days)).isoformat()
    assert [p for _, p, _ in fhir_state.log] == [
        f"/fhir/MedicationAdministration?patient=pt-20&_include=MedicationAdministration:medication&effective-time=ge{since}"]


RECENT_RESULT = FIXTURES / "patient-view" / "05-b12-tested-2-months-ago-no-card.json"


def _first_page_only(bundle: dict[str, Any], fhir_base: str) -> dict[str, Any]:
    """What a client that does not page sends: the first page (here empty) and a link to the rest."""
    return {**bundle, "entry": [], "link": [{"relation": "next", "url": f"{fhir_base}/Observation?page=2"}]}


def test_a_key_sent_as_its_first_page_only_is_fetched_whole(
    fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """Fixture 05 (B12 tested 2 months ago: no card) with the B12 result on a page the client did not
    send: fetched whole, the result is found and the card stays silent (read as sent, it fired)."""
    scenario = load_scenario(RECENT_RESULT)
    request = scenario["request"]
    fhir_state.load(request["prefetch"])
    request["fhirServer"] = fhir_base
    request["prefetch"]["b12Results"] = _first_page_only(request["prefetch"]["b12Results"], fhir_base)
    request["prefetch"]["observations"] = _first_page_only(request["prefetch"]["observations"], fhir_base)
    response = fetching.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    assert response.json()["cards"] == []
    assert {p.split("?")[0].split("/")[2] for _, p, _ in fhir_state.log} == {"Observation"}  # nothing else


def test_a_first_page_only_is_read_as_not_fully_checked_when_nothing_may_be_fetched(knowledge: Knowledge) -> None:
    scenario = load_scenario(RECENT_RESULT)
    request = scenario["request"]
    request["prefetch"]["b12Results"] = _first_page_only(request["prefetch"]["b12Results"], "http://fhir.example.org/fhir")
    request["prefetch"]["observations"] = _first_page_only(request["prefetch"]["observations"], "http://fhir.example.org/fhir")
    with cds(knowledge) as client:
        response = client.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1 and knowledge.wording.not_redundant["resultsNotChecked"] in cards[0]["detail"]


PENDING_ORDER = FIXTURES / "patient-view" / "14-pending-b12-order-no-card.json"


def _count_only(bundle: dict[str, Any]) -> dict[str, Any]:
    """What a search answered as a count sends (`_summary=count`, `_count=0`): a total, no entries."""
    return {"resourceType": "Bundle", "type": "searchset", "total": len(bundle["entry"])}


def test_a_key_whose_total_counts_more_than_it_holds_is_fetched_whole(
    fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """Fixture 14 (a pending B12 order: no card) with the orders search sent as its count only: the
    order the total counts is fetched and the card stays silent (read as sent, it fired and said
    "No pending B12 order")."""
    scenario = load_scenario(PENDING_ORDER)
    request = scenario["request"]
    fhir_state.load(request["prefetch"])
    request["fhirServer"] = fhir_base
    request["prefetch"]["b12Orders"] = _count_only(request["prefetch"]["b12Orders"])
    response = fetching.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    assert response.json()["cards"] == []
    assert [p.split("?")[0] for _, p, _ in fhir_state.log] == ["/fhir/ServiceRequest"]


def test_a_total_above_the_matches_sent_is_read_as_not_checked_when_nothing_may_be_fetched(
    knowledge: Knowledge,
) -> None:
    scenario = load_scenario(PENDING_ORDER)
    request = scenario["request"]
    request["prefetch"]["b12Orders"] = _count_only(request["prefetch"]["b12Orders"])
    with cds(knowledge) as client:
        response = client.post(SERVICE, json=request)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert knowledge.wording.not_redundant["ordersNotChecked"] in card["detail"]
    assert "No pending B12 order" not in card["detail"]


def test_a_search_reporting_an_error_is_a_failed_prefetch_412_when_nothing_may_be_fetched(knowledge: Knowledge) -> None:
    """Fixture 14 (a pending B12 order: no card) with the orders search sent empty beside an error
    OperationOutcome: the order may be what the error hid, so no answer is safe without it."""
    scenario = load_scenario(FIXTURES / "patient-view" / "14-pending-b12-order-no-card.json")
    request = scenario["request"]
    request["prefetch"]["b12Orders"] = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
         "search": {"mode": "outcome"}}]}
    with cds(knowledge) as client:
        response = client.post(SERVICE, json=request)
    assert response.status_code == 412, response.text
    assert response.json()["details"] == [{"key": "b12Orders", "reason": "prefetch failed (OperationOutcome)"}]


def test_only_absent_keys_are_fetched_null_is_no_data(fetching: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    """CDS Hooks 2.0: the client sends null for a key it found no data for, and leaves out one it
    could not prefetch; only the left-out keys are fetched."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state, keep=("patient", "conditions", "observations", "observationsIcd10"))
    assert fetching.post(SERVICE, json=scenario["request"]).status_code == 200
    assert sum(p.split("?")[0].split("/")[2] == "Observation" for _, p, _ in fhir_state.log) == 1  # b12Results
    fhir_state.log.clear()
    scenario["request"]["prefetch"] |= {"b12Results": None, "medicationStatements": None}
    assert fetching.post(SERVICE, json=scenario["request"]).json()["cards"]
    fetched = sorted(p.split("?")[0].split("/")[2] for _, p, _ in fhir_state.log)
    assert fetched == ["MedicationAdministration", "MedicationRequest", "Procedure", "ServiceRequest"]


def test_bearer_token_is_sent_and_checked(fetching: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    fhir_state.token = "secret-token-123"
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    denied = fetching.post(SERVICE, json=scenario["request"])
    assert denied.status_code == 412
    assert "secret-token-123" not in denied.text
    scenario["request"]["fhirAuthorization"] = {"access_token": "secret-token-123", "token_type": "Bearer",
                                                "expires_in": 300, "scope": "patient/*.read", "subject": "ehr"}
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 200 and response.json()["cards"]
    assert "secret-token-123" not in response.text


@pytest.mark.parametrize("token_type", ["bearer", "BEARER"])
def test_token_type_bearer_in_any_case_is_sent_as_bearer(
    token_type: str, fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    fhir_state.token = "secret-token-123"
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    scenario["request"]["fhirAuthorization"] = {"access_token": "secret-token-123", "token_type": token_type,
                                                "expires_in": 300, "scope": "patient/*.read", "subject": "ehr"}
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 200 and response.json()["cards"]


@pytest.mark.parametrize("token_type", ["MAC", "DPoP", "Basic", "", "Bearer ", 5, None])
def test_another_token_type_is_a_400_naming_the_field_and_nothing_is_fetched(
    token_type: Any, fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """CDS Hooks 2.0: token_type is fixed to Bearer; the service would send the token as Bearer anyway."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    scenario["request"]["fhirAuthorization"] = {"access_token": "secret-token-123", "token_type": token_type,
                                                "expires_in": 300, "scope": "patient/*.read", "subject": "ehr"}
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert [d["loc"] for d in body["details"]] == ["fhirAuthorization.token_type"]
    assert "secret-token-123" not in response.text and (not token_type or str(token_type) not in response.text)
    assert fhir_state.log == []


@pytest.mark.parametrize("fault", ["401", "403", "404", "500", "503", "garbage", "wrong-type"])
@pytest.mark.parametrize("rtype", ["Patient", "Condition", "Observation", "MedicationRequest", "ServiceRequest", "Procedure"])
def test_essential_data_lost_is_412(
    fault: str, rtype: str, fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    fhir_state.faults[rtype] = fault
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 412, response.text
    body = response.json()
    assert body["error"] == "missing_fhir_data"
    assert len(body["details"]) == (2 if rtype == "Observation" else 1)  # observations and b12Results
    assert "pt-01" not in response.text and fhir_base not in response.text


def test_slow_server_costs_the_deadline_not_more(fetching: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    fhir_state.faults["Observation"] = "slow"
    started = time.perf_counter()
    response = fetching.post(SERVICE, json=scenario["request"])
    elapsed = time.perf_counter() - started
    assert response.status_code == 412
    assert response.json()["details"] == [{"key": k, "reason": "timeout"} for k in ("b12Results", "observations")]
    assert elapsed < 2.5  # deadline 1.0 s; the server would have taken 3 s


def test_queries_run_concurrently(fetching: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    """Eight queries of 0.4 s each fit in a 1 s deadline only if they run at once."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    fhir_state.delay = 0.4
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 200, response.text
    assert response.json()["cards"]


def test_paging_cap(knowledge: Knowledge, fhir_base: str, fhir_state: FhirState) -> None:
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    fhir_state.page_size = 1  # three Conditions: three pages
    with cds(knowledge, fhir_allowed_servers=[fhir_base], fhir_max_pages=2) as client:
        response = client.post(SERVICE, json=scenario["request"])
    assert response.status_code == 412
    assert {"key": "conditions", "reason": "more than 2 pages"} in response.json()["details"]


def test_next_link_off_the_server_is_not_followed(
    fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """A Bundle could point `next` at an internal host; the token must never go there either."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    scenario["request"]["fhirAuthorization"] = {"access_token": "tok", "token_type": "Bearer", "subject": "ehr"}
    fhir_state.page_size, fhir_state.next_base = 1, "http://169.254.169.254/fhir"
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 412
    assert {"key": "conditions", "reason": "next link leaves the FHIR server"} in response.json()["details"]


def test_unreachable_server_is_412(knowledge: Knowledge, fhir_state: FhirState) -> None:
    dead = "http://127.0.0.1:9/fhir"
    scenario = stripped(POSITIVE, dead, fhir_state)
    with cds(knowledge, fhir_allowed_servers=[dead]) as client:
        response = client.post(SERVICE, json=scenario["request"])
    assert response.status_code == 412
    assert {d["reason"] for d in response.json()["details"]} == {"connection failed"}


@pytest.mark.parametrize("server", [
    "http://169.254.169.254/latest/meta-data",
    "{base}x",
    "{base}/../admin",
    "{base}/%2e%2e/admin",
    "http://user@{host}/fhir",
    "{base}?x=1",
    "{base}?",
    "{base}#",
    "{base}/..;/admin",
    "{base}/..%5Cadmin",
    "https://[ehr.example.org]/fhir",
    "file:///etc/passwd",
])
def test_fhir_server_not_allowed(server: str, fetching: httpx.Client, fhir: tuple[LiveServer, FhirState],
                                 fhir_base: str, fhir_state: FhirState) -> None:
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    scenario["request"]["fhirServer"] = server.format(base=fhir_base, host=f"127.0.0.1:{fhir[0].port}")
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 412
    assert "FHIR server is not allowed" in response.json()["message"]
    assert fhir_state.log == []


def test_default_is_prefetch_only_and_never_fetches(
    knowledge: Knowledge, fhir_base: str, fhir_state: FhirState, caplog: pytest.LogCaptureFixture
) -> None:
    """No allow-list (the default): nothing is fetched; the call is evaluated on what was sent (fixture
    28: part of the record, a card that says what it did not check), and the log names the keys it
    went without, as CDS Hooks 2.0 would have a 412 there; but with none of the record sent an empty
    answer would claim "nothing to advise" where nothing was read: 412."""
    with cds(knowledge) as client, caplog.at_level(logging.WARNING, logger="cds_service.fetch"):
        some = client.post(SERVICE, json=stripped(POSITIVE, fhir_base, fhir_state, keep=("patient", "conditions"))["request"])
        warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prefetch-only:")]
        only_patient = client.post(SERVICE, json=stripped(POSITIVE, fhir_base, fhir_state, keep=("patient",))["request"])
        request = stripped(POSITIVE, fhir_base, fhir_state)["request"]
        request.pop("prefetch", None)
        none = client.post(SERVICE, json=request)
    assert some.status_code == 200 and some.json()["cards"]
    assert warned == [("prefetch-only: evaluated without b12Administrations,b12Orders,b12Results,medicationStatements,"
                      "medications,observations,procedures (left out or unreadable, and fetching is off): a card "
                      "this data would show can be missed")]
    for answer in (only_patient, none):
        assert answer.status_code == 412 and answer.json()["error"] == "missing_fhir_data", answer.text
        assert "does not fetch" in answer.json()["message"]
        assert {d["key"] for d in answer.json()["details"]} >= {"conditions", "observations", "b12Results"}
    assert fhir_state.log == []


def test_evaluate_command_fetches_through_the_same_path(fhir_base: str, fhir_state: FhirState) -> None:
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    env = {**os.environ, "CDS_FHIR_ALLOWED_SERVERS": json.dumps([fhir_base])}
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", "-"], env=env, timeout=60, check=False,
                          input=json.dumps(scenario["request"]).encode(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    check_cards(json.loads(proc.stdout)["cards"], scenario["expect"], "pt-01")
    fhir_state.faults["*"] = "500"
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", "-"], env=env, timeout=60, check=False,
                          input=json.dumps(scenario["request"]).encode(), capture_output=True)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"] == "missing_fhir_data"


BODY_CAP = 65536  # CDS_FHIR_MAX_BODY_BYTES in the tests below: the cap without sending 20 MB


@pytest.fixture(scope="module")
def capped(knowledge: Knowledge, fhir_base: str) -> Iterator[httpx.Client]:
    with cds(knowledge, fhir_allowed_servers=[fhir_base], fhir_deadline_seconds=1.0,
             fhir_max_body_bytes=BODY_CAP) as client:
        yield client


@pytest.mark.parametrize("fault", ["huge", "huge-length"])
def test_huge_fhir_page_is_412_and_never_buffered(
    fault: str, capped: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """A 200 MB Observation page against a 64 KiB cap: refused within the deadline, having read
    little more than the cap (the rest is never sent), and the next call is normal."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    fhir_state.faults["Observation"] = fault
    started = time.perf_counter()
    response = capped.post(SERVICE, json=scenario["request"])
    elapsed = time.perf_counter() - started
    assert response.status_code == 412, response.text
    assert response.json()["details"] == [{"key": k, "reason": "response too large"} for k in ("b12Results", "observations")]
    assert "http" not in response.text and "pt-01" not in response.text
    assert elapsed < 1.0
    assert fhir_state.sent < 32_000_000  # the cap plus what loopback socket buffers hold, not 2 x 200 MB
    del fhir_state.faults["Observation"]
    again = capped.post(SERVICE, json=scenario["request"])
    assert again.status_code == 200 and again.json()["cards"]


def test_many_pages_stop_at_the_cap(capped: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    """Five thousand one-entry Condition pages: ten are read (CDS_FHIR_MAX_PAGES), then 412."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    for n in range(5000):
        fhir_state.resources[("Condition", f"extra-{n:04}")] = {
            "resourceType": "Condition", "id": f"extra-{n:04}", "subject": {"reference": "Patient/pt-01"},
            "code": {"text": "something else"}}
    fhir_state.page_size = 1
    started = time.perf_counter()
    response = capped.post(SERVICE, json=scenario["request"])
    elapsed = time.perf_counter() - started
    assert response.status_code == 412, response.text
    assert response.json()["details"] == [{"key": "conditions", "reason": "more than 10 pages"}]
    assert "conditions" in response.json()["message"] and "http" not in response.text
    assert elapsed < 1.0
    assert sum(p.startswith("/fhir/Condition") for _, p, _ in fhir_state.log) == 10
    fhir_state.page_size = 50
    for n in range(5000):
        del fhir_state.resources[("Condition", f"extra-{n:04}")]
    again = capped.post(SERVICE, json=scenario["request"])
    assert again.status_code == 200 and again.json()["cards"]


def test_a_call_past_the_total_fetch_cap_is_412_and_the_next_with_room_is_not(
    knowledge: Knowledge, fhir_base: str, fhir_state: FhirState
) -> None:
    """CDS_FHIR_MAX_TOTAL_BYTES spans the call's queries: each body here is under the per-page cap
    but together they pass 2 KiB, so what was needed and not read is 412, never a partial card."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    with cds(knowledge, fhir_allowed_servers=[fhir_base], fhir_max_total_bytes=2048) as client:
        response = client.post(SERVICE, json=scenario["request"])
    assert response.status_code == 412, response.text
    reasons = {d["reason"] for d in response.json()["details"]}
    assert reasons == {"responses too large in total"}
    assert "http" not in response.text and "pt-01" not in response.text
    with cds(knowledge, fhir_allowed_servers=[fhir_base], fhir_max_total_bytes=5_000_000) as client:
        again = client.post(SERVICE, json=scenario["request"])
    assert again.status_code == 200 and again.json()["cards"]


SANDBOX = Path(__file__).parent / "sandbox"
ORDER_SERVICES = {"order-select": "/cds-services/b12-myalgia-order-select", "order-sign": "/cds-services/b12-myalgia-order-sign"}


@pytest.mark.parametrize("name", ["order-select-1-on-entering-rx-view.json", "order-select-pama-on-entering-view.json",
                                  "order-select-3-metformin-chosen.json", "order-sign-on-sign-button.json"])
@pytest.mark.parametrize("server", ["allowed", "not allowed", "none"])
def test_drafts_the_rule_has_nothing_to_say_about_need_no_fetch(
    name: str, server: str, fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """The sandbox's empty drafts and unrelated orders get [] without patient data, wherever fhirServer points."""
    request = json.loads((SANDBOX / name).read_text())
    request.pop("prefetch", None)
    if server == "allowed":
        request["fhirServer"] = fhir_base
    elif server == "none":
        request.pop("fhirServer", None)
    response = fetching.post(ORDER_SERVICES[request["hook"]], json=request)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    assert fhir_state.log == []


def test_a_draft_the_rule_reads_still_needs_its_data(fetching: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    """A B12 test at signing with nothing prefetched and no fhirServer: the duplicate check cannot be made, 412;
    with the allowed server named, the data is fetched."""
    scenario = load_scenario(FIXTURES / "order-sign" / "01-b12-test-with-recent-result-warning.json")
    request = scenario["request"]
    fhir_state.load(request.pop("prefetch"))
    request.pop("fhirServer", None)
    response = fetching.post(ORDER_SERVICES["order-sign"], json=request)
    assert response.status_code == 412, response.text
    request["fhirServer"] = fhir_base
    response = fetching.post(ORDER_SERVICES["order-sign"], json=request)
    assert response.status_code == 200, response.text
    check_cards(response.json()["cards"], scenario["expect"], request["context"]["patientId"])
    assert fhir_state.log


def test_order_sign_fetches_the_replacement_on_record_and_needs_none_of_it_for_the_duplicate_check(
    fetching: httpx.Client, fhir_base: str, fhir_state: FhirState
) -> None:
    """A B12 test signed a month after a low result, cyanocobalamin active: fetched whole, the card warns
    of the duplicate without telling the clinician to start treatment. The medicine searches are
    advisory: with them failing the duplicate is still named (no 412), its advice hedged on the
    replacement it could not see; the B12 results search failing is a 412."""
    path = FIXTURES / "order-sign" / "13-b12-test-after-low-result-already-on-treatment-no-treat-advice.json"
    scenario = load_scenario(path)
    request = scenario["request"]
    fhir_state.load(request.pop("prefetch"))
    request["fhirServer"] = fhir_base
    response = fetching.post(ORDER_SERVICES["order-sign"], json=request)
    assert response.status_code == 200, response.text
    check_cards(response.json()["cards"], scenario["expect"], request["context"]["patientId"])
    assert any(p.startswith("/fhir/MedicationRequest") for _, p, _ in fhir_state.log)
    fhir_state.faults["MedicationRequest"] = "500"
    response = fetching.post(ORDER_SERVICES["order-sign"], json=request)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning" and "120 pg/mL on " in card["detail"]
    assert "unless B12 replacement is already under way, review for treatment" in card["detail"]
    fhir_state.faults["Observation"] = "500"
    response = fetching.post(ORDER_SERVICES["order-sign"], json=request)
    assert response.status_code == 412, response.text


def test_a_search_too_long_for_a_url_goes_by_post(fetching: httpx.Client, fhir_base: str, fhir_state: FhirState) -> None:
    """The observations template lists every code the rule reads (about 4 KB): sent as POST _search
    with a form body, as FHIR allows, since servers and proxies cap URLs near 2 KB; short ones stay GETs."""
    scenario = stripped(POSITIVE, fhir_base, fhir_state)
    response = fetching.post(SERVICE, json=scenario["request"])
    assert response.status_code == 200, response.text
    check_cards(response.json()["cards"], scenario["expect"], "pt-01")
    sent = {(method, path.split("?")[0]) for method, path, _ in fhir_state.log}
    assert ("POST", "/fhir/Observation/_search") in sent and ("GET", "/fhir/Condition") in sent
    assert all(len(path) <= 2000 for _, path, _ in fhir_state.log)
