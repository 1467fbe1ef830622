"""The HTTP contract: discovery, errors as JSON 4xx, the sandbox's real request."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import load_scenario
from tests.fixture_files import FIXTURES

SANDBOX = Path(__file__).parent / "sandbox"  # bodies captured from the real CDS Hooks sandbox
SERVICE = "/cds-services/b12-myalgia-patient-view"


def _sandbox(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((SANDBOX / name).read_text())


def test_discovery_lists_patient_view_with_prefetch(client: httpx.Client) -> None:
    body = client.get("/cds-services").json()
    service = {s["id"]: s for s in body["services"]}["b12-myalgia-patient-view"]
    assert service["hook"] == "patient-view"
    assert service["title"] and service["description"]
    prefetch = service["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert "http://loinc.org|2132-9" in prefetch["observations"]
    assert "http://snomed.info/sct|68962001" in prefetch["observations"]
    assert "http://loinc.org|2132-9" in prefetch["b12Orders"]
    assert "status=draft,active,on-hold" in prefetch["b12Orders"]
    for template in prefetch.values():
        assert "{{context.patientId}}" in template


def test_sandbox_patient_view_gets_a_valid_empty_answer(client: httpx.Client) -> None:
    response = client.post(SERVICE, json=_sandbox("patient-view.json"))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_unknown_service_is_404_json(client: httpx.Client) -> None:
    response = client.post("/cds-services/nope", json=_sandbox("patient-view.json"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_wrong_hook_is_400(client: httpx.Client) -> None:
    request = _sandbox("order-select-1-on-entering-rx-view.json")
    response = client.post(SERVICE, json=request)
    assert response.status_code == 400
    assert "patient-view" in response.json()["message"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(SERVICE, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_non_object_body_is_400(client: httpx.Client) -> None:
    response = client.post(SERVICE, json=[1, 2])
    assert response.status_code == 400


def test_missing_patient_id_names_the_field_without_values(client: httpx.Client) -> None:
    request = _sandbox("patient-view.json")
    del request["context"]["patientId"]
    request["context"]["secret"] = "Maria Metformin"
    response = client.post(SERVICE, json=request)
    assert response.status_code == 400
    body = response.json()
    assert any(d["loc"] == "context.patientId" for d in body["details"])
    assert "Maria" not in response.text


def test_missing_envelope_fields_are_400(client: httpx.Client) -> None:
    for field in ("hook", "hookInstance", "context"):
        request = _sandbox("patient-view.json")
        del request[field]
        response = client.post(SERVICE, json=request)
        assert response.status_code == 400, field
        assert any(d["loc"] == field for d in response.json()["details"])


def test_prefetch_value_that_is_not_an_object_is_no_400(client: httpx.Client) -> None:
    """A reference where the resource belongs is that key missing (see the tests below), not a bad request."""
    request = _sandbox("patient-view.json")
    request["prefetch"]["patient"] = "Patient/pt-b12"
    response = client.post(SERVICE, json=request)
    assert response.status_code == 200 and response.json() == {"cards": []}


def test_null_and_absent_prefetch_are_fine(client: httpx.Client) -> None:
    """null is "looked, found nothing" (CDS Hooks 2.0): evaluated. No prefetch at all, where this
    service may not fetch (the default), leaves nothing to evaluate: 412, as the spec says, never
    an empty answer that would read as "nothing to advise"."""
    request = _sandbox("patient-view.json")
    request["prefetch"] = {"patient": None, "conditions": None}
    assert client.post(SERVICE, json=request).json() == {"cards": []}
    del request["prefetch"]
    response = client.post(SERVICE, json=request)
    assert response.status_code == 412 and response.json()["error"] == "missing_fhir_data"


@pytest.mark.parametrize("patient_id", ["a/b", "Patient/1", " ", "p\tq", "?", "\u202e1", "x" * 65])
def test_a_patient_id_that_is_no_fhir_id_is_400(client: httpx.Client, patient_id: str) -> None:
    """The suggested order names the patient as `Patient/{patientId}`: a slash or a space would make
    it invalid (found by the attacker review). The error names the field, not the value."""
    request = _sandbox("patient-view.json")
    request["context"]["patientId"] = patient_id
    response = client.post(SERVICE, json=request)
    assert response.status_code == 400 and response.json()["details"][0]["loc"] == "context.patientId"
    assert patient_id.strip() not in response.text or not patient_id.strip()


def test_a_patient_id_with_an_underscore_is_taken(client: httpx.Client) -> None:
    """Some EHRs write ids with an underscore, outside FHIR's id type: it breaks no reference."""
    request = _sandbox("patient-view.json")
    request = json.loads(json.dumps(request).replace(request["context"]["patientId"], "pt_0001"))
    assert client.post(SERVICE, json=request).status_code == 200


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    response = client.post(SERVICE, content=b"hook=patient-view", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize("path", [SERVICE, SERVICE + "/feedback"])
def test_a_body_with_no_content_type_is_json_except_from_a_browser(client: httpx.Client, path: str) -> None:
    """curl --data and other plain clients may leave Content-Type out: read as JSON. A browser page
    (it sends Origin) could so POST across sites with no CORS preflight, and is refused 415 (found in
    the issue audit: a page on any origin stored feedback with auth off)."""
    body = json.dumps(_sandbox("patient-view.json") if path == SERVICE else {"feedback": []}).encode()
    plain = client.post(path, content=body)  # bytes: httpx sends no Content-Type
    assert "content-type" not in plain.request.headers and plain.status_code == 200, plain.text
    response = client.post(path, content=body, headers={"origin": "https://evil.example"})
    assert response.status_code == 415 and response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize("path", [SERVICE, SERVICE + "/feedback"])
def test_a_compressed_body_is_415_saying_so(client: httpx.Client, path: str) -> None:
    """RFC 9110: an unsupported content coding is 415, not 'not valid JSON' (found by the attacker review)."""
    body = gzip.compress(b'{"hook": "patient-view"}')
    response = client.post(path, content=body, headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert response.status_code == 415 and "Content-Encoding" in response.json()["message"]


def test_unknown_route_and_method_are_json(client: httpx.Client) -> None:
    assert client.get("/nowhere").json()["error"] == "not_found"
    response = client.get(SERVICE)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"  # RFC 9110: a 405 names the methods allowed
    assert client.delete("/healthz").headers["allow"] == "GET"


@pytest.mark.parametrize("path", ["/healthz", "/cds-services", "/healthz/", "/cds-services/"])
def test_head_is_answered_like_get_without_a_body(client: httpx.Client, path: str) -> None:
    """Load balancers probe with HEAD."""
    response = client.head(path)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"] == "application/json"


POSITIVE = FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json"
UNREADABLE = "could not be read"


def _details(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [card["detail"] for card in response.json()["cards"]]


def test_a_value_under_a_key_not_asked_for_is_ignored(client: httpx.Client) -> None:
    """CDS Hooks 2.0's own example prefetches `"user": "123"`: neither a 400 nor a record left out."""
    request = load_scenario(POSITIVE)["request"]
    plain = _details(client.post(SERVICE, json=request))
    for extra in ("123", 5, ["x"], {"id": "no resourceType"}, True):
        odd = _details(client.post(SERVICE, json=request | {"prefetch": request["prefetch"] | {"user": extra}}))
        assert len(odd) == len(plain) == 1 and UNREADABLE not in odd[0] and "Not checked" not in odd[0]


def test_a_value_that_is_no_resource_under_an_asked_key_is_that_key_missing(client: httpx.Client) -> None:
    """Not a 400: the key cannot be read, so its check says "not checked" (with fetching off)."""
    request = load_scenario(POSITIVE)["request"]
    for value in ("Bundle", 7, ["x"]):
        [detail] = _details(client.post(SERVICE, json=request | {"prefetch": request["prefetch"] | {"b12Orders": value}}))
        assert "Pending B12 orders not fully checked" in detail and UNREADABLE in detail


def test_a_prefetch_that_is_not_an_object_is_still_a_400_naming_the_field(client: httpx.Client) -> None:
    body = {"hook": "patient-view", "hookInstance": "h-1", "context": {"patientId": "p1"}}
    for prefetch in ("Brenda Oakes", ["Brenda Oakes"], 5):
        refused = client.post(SERVICE, json=body | {"prefetch": prefetch})
        assert refused.status_code == 400 and "prefetch" in refused.text and "Brenda" not in refused.text


ON_B12_INJECTIONS = FIXTURES / "patient-view" / "04-on-b12-injections-no-card.json"


@pytest.mark.parametrize("reference", ["Medication/med-hx", "Medication/med-hx/_history/2",
                                       "http://fhir.example.org/fhir/Medication/med-hx/_history/2"])
def test_b12_therapy_named_by_a_version_specific_reference_to_an_included_medication_silences_the_card(
    client: httpx.Client, reference: str
) -> None:
    """Fixture 04 (on hydroxocobalamin: no card) with the medicine as medicationReference to a Medication the
    search included (search.mode include). Found in EHR-integration review: a version-specific reference was
    looked up by its version number, the B12 went unseen and the card said "No current B12 replacement"."""
    request = load_scenario(ON_B12_INJECTIONS)["request"]
    bundle = request["prefetch"]["medications"]
    order = bundle["entry"][0]["resource"]
    medication = {"resourceType": "Medication", "id": "med-hx", "code": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1649963",
                    "display": "hydroxocobalamin 1 MG/ML Injectable Solution"}]}}
    order["medicationReference"] = {"reference": reference}
    del order["medicationCodeableConcept"]
    bundle["entry"] = [{**bundle["entry"][0], "search": {"mode": "match"}},
                       {"fullUrl": "http://fhir.example.org/fhir/Medication/med-hx", "resource": medication,
                        "search": {"mode": "include"}}]
    response = client.post(SERVICE, json=request)
    assert response.status_code == 200 and response.json() == {"cards": []}, response.text


def test_healthz(client: httpx.Client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["knowledgeVersion"].startswith("2026")


def test_discovery_lists_all_three_services(client: httpx.Client) -> None:
    services = {s["id"]: s for s in client.get("/cds-services").json()["services"]}
    assert {k: v["hook"] for k, v in services.items()} == {
        "b12-myalgia-patient-view": "patient-view",
        "b12-myalgia-order-select": "order-select",
        "b12-myalgia-order-sign": "order-sign",
    }
    # conditions and observations: a current pregnancy (a Condition, or a pregnancy status Observation);
    # the medicine keys: B12 replacement on record, so a recent low result is no call to treat
    assert set(services["b12-myalgia-order-sign"]["prefetch"]) == {
        "patient", "conditions", "observations", "b12Results", "b12Orders",
        "medications", "medicationStatements", "b12Administrations", "procedures",
    }


def test_sandbox_order_requests_get_valid_empty_answers(client: httpx.Client) -> None:
    for name, service in [
        ("order-select-1-on-entering-rx-view.json", "b12-myalgia-order-select"),
        ("order-select-2-condition-chosen.json", "b12-myalgia-order-select"),
        ("order-select-3-metformin-chosen.json", "b12-myalgia-order-select"),
        ("order-select-pama-on-entering-view.json", "b12-myalgia-order-select"),
        ("order-sign-on-sign-button.json", "b12-myalgia-order-sign"),
    ]:
        response = client.post(f"/cds-services/{service}", json=_sandbox(name))
        assert response.status_code == 200, name
        assert response.json() == {"cards": []}, name


def test_order_select_without_draft_orders_is_400(client: httpx.Client) -> None:
    request = _sandbox("order-select-1-on-entering-rx-view.json")
    del request["context"]["draftOrders"]
    response = client.post("/cds-services/b12-myalgia-order-select", json=request)
    assert response.status_code == 400
    assert any(d["loc"] == "context.draftOrders" for d in response.json()["details"])


def test_garbage_draft_entries_do_not_fail(client: httpx.Client) -> None:
    request = _sandbox("order-select-3-metformin-chosen.json")
    request["context"]["draftOrders"]["entry"] += [
        {"resource": "nonsense"}, {"resource": {"resourceType": "MedicationRequest", "status": 7}},
        {"nothing": True}, 42,
    ]
    response = client.post("/cds-services/b12-myalgia-order-select", json=request)
    assert response.status_code == 200 and response.json() == {"cards": []}


def test_a_card_says_which_checks_it_made_without_data(client: httpx.Client) -> None:
    """Prefetch-only, keys left out: the card says "not checked", never "none on record", for them;
    an OperationOutcome in a key the rule needs to stay safe is 412."""
    request = load_scenario(FIXTURES / "patient-view" / "28-no-prefetch-beyond-patient-no-invented-data.json")["request"]
    response = client.post("/cds-services/b12-myalgia-patient-view", json=request)
    (card,) = response.json()["cards"]
    for line in ("B12 replacement not fully checked", "Pending B12 orders not fully checked", "Earlier B12 results not fully checked"):
        assert line in card["detail"]
    for claim in ("No current B12 replacement on record", "No pending B12 order", "No earlier B12 result on record"):
        assert claim not in card["detail"]
    failed = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    refused = client.post("/cds-services/b12-myalgia-patient-view",
                          json={**request, "prefetch": {**request["prefetch"], "b12Orders": failed}})
    assert refused.status_code == 412 and refused.json()["details"] == [
        {"key": "b12Orders", "reason": "prefetch failed (OperationOutcome)"}]


FORGED = "abc\n2026-11-26 10:00:00,000 ERROR cds_service patient=Arthur Pendle"


def test_hook_instance_with_control_characters_or_too_long_is_400_naming_it(client: httpx.Client) -> None:
    for bad in (FORGED, "a\u0000b", "a\rb", "a\u2028b", "x" * 129, ""):
        response = client.post(SERVICE, json={**_sandbox("patient-view.json"), "hookInstance": bad})
        assert response.status_code == 400, repr(bad)
        body = response.json()
        assert body["error"] == "invalid_request"
        assert [d["loc"] for d in body["details"]] == ["hookInstance"], repr(bad)
        assert "Arthur" not in response.text


def test_hook_instance_that_is_plain_text_but_not_a_uuid_is_accepted(client: httpx.Client) -> None:
    """The spec says UUID; real EHRs deviate, so any printable id up to the audit column's 128 passes."""
    for good in ("h-1", "Epic 2026/11 #42", "é" * 128):
        response = client.post(SERVICE, json={**_sandbox("patient-view.json"), "hookInstance": good})
        assert response.status_code == 200 and response.json() == {"cards": []}, good


def test_a_trailing_slash_is_served_not_redirected(client: httpx.Client) -> None:
    response = client.post(SERVICE + "/", json=_sandbox("patient-view.json"))
    assert response.status_code == 200 and response.json() == {"cards": []}
    assert client.get("/cds-services/").json() == client.get("/cds-services").json()
    feedback = client.post(SERVICE + "/feedback/", json={})
    assert feedback.status_code == 400 and feedback.json()["details"][0]["loc"] == "feedback"
    other = client.post("/openapi.json/", json={})
    assert other.status_code == 404 and other.json()["error"] == "not_found"


def test_a_utf8_byte_order_mark_is_ignored(client: httpx.Client) -> None:
    bom = b"\xef\xbb\xbf"
    hook = client.post(SERVICE, content=bom + json.dumps(_sandbox("patient-view.json")).encode(),
                       headers={"content-type": "application/json"})
    assert hook.status_code == 200 and hook.json() == {"cards": []}
    feedback = client.post(SERVICE + "/feedback", content=bom + b"{}",
                           headers={"content-type": "application/json"})
    assert feedback.status_code == 400 and feedback.json()["details"][0]["loc"] == "feedback"  # parsed, then checked
    twice = client.post(SERVICE, content=bom + bom + b"{}", headers={"content-type": "application/json"})
    assert twice.status_code == 400 and twice.json()["message"] == "The request body is not valid JSON."


def test_the_command_line_also_ignores_a_byte_order_mark(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_bytes(b"\xef\xbb\xbf" + json.dumps(_sandbox("patient-view.json")).encode())
    proc = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", str(request)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cards": []}
