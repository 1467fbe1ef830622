"""Every scenario fixture through the HTTP API, through `cds-service evaluate`, and in-process."""

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.evaluation import evaluate
from cds_service.knowledge import Knowledge
from cds_service.services import service_definitions
from tests import fixture_files
from tests.conftest import load_scenario
from tests.fixture_files import FIXTURES, scenario_files

PATIENT_VIEW = scenario_files("patient-view")
FIXTURES_PV = FIXTURES / "patient-view"
ALL = PATIENT_VIEW + scenario_files("order-select") + scenario_files("order-sign")
SERVICE = {
    "patient-view": "b12-myalgia-patient-view",
    "order-select": "b12-myalgia-order-select",
    "order-sign": "b12-myalgia-order-sign",
}


def test_there_are_enough_scenarios() -> None:
    assert len(PATIENT_VIEW) >= 15
    assert len(ALL) > len(PATIENT_VIEW) + 10
    outcomes = {load_scenario(p)["expect"]["outcome"] for p in PATIENT_VIEW}
    assert {"card", "no-trigger", "no-sign", "out-of-population", "suppressed:recent-result",
            "suppressed:on-b12-therapy", "suppressed:pending-order", "suppressed:recent-normal-result"} <= outcomes


# Fresh uuids are random: a number the card must not show can turn up inside one by chance.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_cards(cards: list[dict[str, Any]], expect: dict[str, Any], patient_id: str) -> None:
    assert len(cards) == len(expect["cards"])
    for card, want in zip(cards, expect["cards"], strict=True):
        assert card["indicator"] == want["indicator"]
        assert len(card["summary"]) < 140
        assert want.get("summaryIncludes", "") in card["summary"]
        assert card["source"]["label"] and card["uuid"]
        assert card["overrideReasons"] and card["links"]
        for text in want["detailIncludes"]:
            assert text in card["detail"], text
        shown = _UUID.sub("<uuid>", json.dumps(card))
        for text in want["detailExcludes"]:
            assert text not in shown, text
        suggestions = card.get("suggestions") or []
        if "deletes" in want:
            suggestion, *others = suggestions
            assert [a["type"] for a in suggestion["actions"]] == ["delete"] * len(want["deletes"])
            assert [a["resourceId"] for a in suggestion["actions"]] == want["deletes"]
            # each removal names the test it removes
            assert all(a["description"].startswith("Remove ") and a["description"].endswith(" from this order")
                       and a["description"] != suggestion["label"] for a in suggestion["actions"])
            if want.get("swapCode"):  # a second suggestion: the repeat out, the follow-up test in
                (swap,) = others
                *removed, created = swap["actions"]
                assert [a["resourceId"] for a in removed] == want["deletes"] and created["type"] == "create"
                assert created["resource"]["code"]["coding"][0]["code"] == want["swapCode"]
                # order-sign knows of no complaint to name: the test swapped in states its reason in words
                _check_reason_text(created["resource"], want["swapReasonIncludes"])
                ServiceRequest.model_validate(created["resource"])
            else:
                assert others == []
            continue
        if want["orderCode"] is None:
            assert suggestions == []
            continue
        (suggestion,) = suggestions
        assert suggestion["isRecommended"] is True and suggestion["uuid"] != card["uuid"]
        (action,) = suggestion["actions"]
        order = action["resource"]
        assert action["type"] == "create" and order["resourceType"] == "ServiceRequest"
        assert order["code"]["coding"][0] == {
            "system": "http://loinc.org", "code": want["orderCode"], "display": order["code"]["coding"][0]["display"]
        }
        assert order["subject"] == {"reference": f"Patient/{patient_id}"}
        ServiceRequest.model_validate(order)  # strict in what we send: valid FHIR R4
        if not want.get("withoutReasonReference"):
            assert order["reasonReference"][0]["reference"].startswith(("Condition/", "Observation/"))
        if "reasonIncludes" in want:
            _check_reason_text(order, want["reasonIncludes"])
        assert [s["reference"] for s in order.get("supportingInfo", [])] == want.get("supportingInfo", [])


def _check_reason_text(order: dict[str, Any], words: str) -> None:
    """The order's one reason is text alone (no code it cannot vouch for), saying `words`."""
    (reason,) = order["reasonCode"]
    assert set(reason) == {"text"} and words in reason["text"]


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scenario_over_http(path: Path, client: httpx.Client) -> None:
    scenario = load_scenario(path)
    request = scenario["request"]
    service = SERVICE[request["hook"]]
    response = client.post(f"/cds-services/{service}", json=request)
    assert response.status_code == 200, response.text
    check_cards(response.json()["cards"], scenario["expect"], request["context"]["patientId"])


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scenario_outcome_in_process(path: Path, knowledge: Knowledge) -> None:
    scenario = load_scenario(path)
    service = service_definitions(knowledge)[SERVICE[scenario["request"]["hook"]]]
    result = evaluate(service, scenario["request"], knowledge, datetime.now(UTC))
    assert result.assessment is not None
    assert result.assessment.outcome == scenario["expect"]["outcome"]


# in batches, each its own test under the per-test timeout: one process answers a batch, so the
# process start and knowledge load (~0.9 s of a core) are paid once per batch, not per scenario
EVALUATE_BATCH = 150
BATCHES = [ALL[i:i + EVALUATE_BATCH] for i in range(0, len(ALL), EVALUATE_BATCH)]


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"{b[0].parent.name}/{b[0].stem[:3]}+{len(b) - 1}")
def test_scenarios_through_evaluate_command(batch: list[Path], tmp_path: Path) -> None:
    """`cds-service evaluate` gives the same answers: a batch of request files, one answer line each."""
    scenarios = [load_scenario(path) for path in batch]
    files = []
    for i, scenario in enumerate(scenarios):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(scenario["request"]))
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", *map(str, files)], check=False,
                          capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.splitlines()
    assert len(lines) == len(batch)
    for path, scenario, line in zip(batch, scenarios, lines, strict=True):
        try:
            check_cards(json.loads(line)["cards"], scenario["expect"], scenario["request"]["context"]["patientId"])
        except AssertionError as exc:
            raise AssertionError(f"{path.parent.name}/{path.name}: {exc}") from exc


def test_evaluate_reads_one_request_from_stdin_and_prints_it_indented() -> None:
    """As the README runs it: one request piped in, its answer printed as the server would send it."""
    scenario = load_scenario(ALL[1])
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", "-"], check=False,
                          input=json.dumps(scenario["request"]).encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b'{\n  "cards": [')
    check_cards(json.loads(proc.stdout)["cards"], scenario["expect"], scenario["request"]["context"]["patientId"])


def test_evaluate_of_several_requests_answers_each_and_reports_a_refusal(tmp_path: Path) -> None:
    """A refused request among several gets its error body on its own line, a file that cannot be
    read a line saying so; the others are answered, one line per file given."""
    good = load_scenario(ALL[1])
    (tmp_path / "a.json").write_text(json.dumps(good["request"]))
    (tmp_path / "b.json").write_text('{"hook": "encounter-start"}')
    (tmp_path / "d.json").write_text(json.dumps(good["request"]))
    names = ("a.json", "b.json", "missing.json", "d.json")
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", *(str(tmp_path / n) for n in names)],
                          check=False, capture_output=True, timeout=60)
    assert proc.returncode == 2
    first, refused, unreadable, last = (json.loads(line) for line in proc.stdout.splitlines())
    assert refused["error"] == "invalid_request" and refused["details"][0]["loc"] == "hook"
    assert unreadable["error"] == "unreadable_file" and "missing.json" in unreadable["message"]
    for answer in (first, last):
        check_cards(answer["cards"], good["expect"], good["request"]["context"]["patientId"])


def test_evaluate_given_a_scenario_file_says_how_to_run_it() -> None:
    path = ALL[0]
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", str(path)], check=False,
                          capture_output=True, timeout=60)
    assert proc.returncode == 2
    body = json.loads(proc.stdout)
    assert body["error"] == "invalid_request" and "tests.fixture_files" in body["message"]


@pytest.mark.parametrize(("body", "msg"), [
    (b"{}", "Field required"),
    (b'{"hook": "encounter-start"}', "Not a hook these services answer"),
    (b'{"hook": ["patient-view"]}', "Not a hook these services answer"),
])
def test_evaluate_without_a_hook_it_answers_names_the_hook_field(body: bytes, msg: str) -> None:
    """As the HTTP route's 400 does, with a misspelt setting warned about (serve's workers log it)."""
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", "-"], check=False, input=body,
                          capture_output=True, timeout=60, env={**os.environ, "CDS_DATABSE_URL": "sqlite://"})
    assert proc.returncode == 2
    error = json.loads(proc.stdout)
    assert error["error"] == "invalid_request" and error["details"][0]["loc"] == "hook"
    assert msg in error["details"][0]["msg"]
    assert "CDS_DATABSE_URL names no setting" in proc.stderr.decode()


# R4 draft -> the older resource an older FHIR server makes the sandbox send: DSTU2 MedicationOrder,
# STU3 ProcedureRequest (statuses renamed where STU3 names them otherwise)
_OLDER_NAMES = {"MedicationRequest": ("MedicationOrder", {"subject": "patient", "authoredOn": "dateWritten",
                                                            "reasonCode": "reasonCodeableConcept"}),
                "ServiceRequest": ("ProcedureRequest", {})}
_STU3_STATUS = {"revoked": "cancelled", "on-hold": "suspended"}


def _as_older(draft: Any) -> Any:
    if not isinstance(draft, dict) or draft.get("resourceType") not in _OLDER_NAMES:
        return draft
    rtype, renames = _OLDER_NAMES[draft["resourceType"]]
    older = {renames.get(k, k): v for k, v in draft.items() if not (rtype == "MedicationOrder" and k == "intent")}
    if rtype == "MedicationOrder" and isinstance(older.get("reasonCodeableConcept"), list):
        older["reasonCodeableConcept"] = (older["reasonCodeableConcept"] or [None])[0]
    if rtype == "ProcedureRequest" and isinstance(older.get("status"), str):
        older["status"] = _STU3_STATUS.get(older["status"], older["status"])
    return {**older, "resourceType": rtype}


def _answer(cards: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(c["indicator"], c["summary"], [s["label"] for s in c.get("suggestions") or []]) for c in cards]


def _draft_references(cards: list[dict[str, Any]]) -> list[str]:
    """What the suggestions point at among the drafts: the drafts to delete, the products a baseline test supports."""
    refs = []
    for card in cards:
        for action in (a for s in card.get("suggestions") or [] for a in s.get("actions") or []):
            refs += [action["resourceId"]] if action.get("resourceId") else []
            refs += [i["reference"] for i in (action.get("resource") or {}).get("supportingInfo") or []]
    return refs


ORDER_SCENARIOS = scenario_files("order-select") + scenario_files("order-sign")


@pytest.mark.parametrize("path", ORDER_SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_drafts_written_as_older_fhir_give_the_same_answer(path: Path, knowledge: Knowledge) -> None:
    """Each draft in DSTU2/STU3 form (status, doNotPerform, modifier extensions and contained
    Medications as the R4 draft has them) is read as its R4 draft is."""
    request = load_scenario(path)["request"]
    service = service_definitions(knowledge)[SERVICE[request["hook"]]]
    now = datetime.now(UTC)
    context = request["context"]
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict) or not any(
            isinstance(e, dict) and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") in _OLDER_NAMES
            for e in bundle.get("entry") or []):
        pytest.skip("no R4 MedicationRequest or ServiceRequest draft")
    older_bundle = {**bundle, "entry": [{**e, "resource": _as_older(e.get("resource"))} if isinstance(e, dict) else e
                                        for e in bundle.get("entry") or []]}
    selections = [s.replace("MedicationRequest/", "MedicationOrder/").replace("ServiceRequest/", "ProcedureRequest/")
                  for s in context.get("selections") or []]
    older = {**request, "context": {**context, "draftOrders": older_bundle,
                                    **({"selections": selections} if "selections" in context else {})}}
    r4 = [c.model_dump(mode="json") for c in evaluate(service, request, knowledge, now).response.cards]
    answer = evaluate(service, older, knowledge, now).response.model_dump(mode="json")["cards"]
    assert _answer(answer) == _answer(r4)
    # a draft is named by the type it was sent as: an EHR on STU3 has no ServiceRequest/p1 to delete
    assert _draft_references(answer) == [r.replace("MedicationRequest/", "MedicationOrder/").replace(
        "ServiceRequest/", "ProcedureRequest/") for r in _draft_references(r4)]


def test_today_is_the_clinics_date_in_its_time_zone(knowledge: Knowledge) -> None:
    """At 20:00 in Chicago (01:00 UTC the next day) a B12 order written 180 of the clinic's days ago
    is still pending (the window's last day); judged by the UTC date it is a day older, lapsed
    (CDS_TIMEZONE gives the service its clinics' clock)."""
    clinic_day = date(2026, 11, 26)
    evening = datetime(2026, 11, 26, 20, 0, tzinfo=ZoneInfo("America/Chicago"))
    request = fixture_files.load(next(FIXTURES_PV.glob("02-*.json")), clinic_day)["request"]
    written = (clinic_day - timedelta(days=180)).isoformat() + "T10:00:00-05:00"
    request["prefetch"]["b12Orders"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "ServiceRequest", "id": "b12-order", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{request['context']['patientId']}"}, "authoredOn": written,
        "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]}}}]}
    service = service_definitions(knowledge)["b12-myalgia-patient-view"]
    in_chicago = evaluate(service, request, knowledge, evening).assessment
    in_utc = evaluate(service, request, knowledge, evening.astimezone(UTC)).assessment
    assert in_chicago is not None and in_chicago.outcome == "suppressed:pending-order"
    assert in_utc is not None and (in_utc.outcome, in_utc.variant) == ("card", "test-b12")


def test_evaluate_refuses_a_body_over_the_size_limit_as_the_server_does() -> None:
    """CDS_MAX_BODY_BYTES applies on the command line too: the server's 413 body, status 2 (found in the
    issue audit: evaluate answered a body the server refuses)."""
    body = json.dumps(load_scenario(ALL[1])["request"]).encode()
    env = {**os.environ, "CDS_MAX_BODY_BYTES": str(len(body) - 1)}
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", "-"], check=False, input=body,
                          capture_output=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"] == "payload_too_large"
    env["CDS_MAX_BODY_BYTES"] = str(len(body))
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", "-"], check=False, input=body,
                          capture_output=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
