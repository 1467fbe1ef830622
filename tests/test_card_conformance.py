"""Every card the fixtures produce, and the discovery document, checked against CDS Hooks 2.0, what the
CDS Hooks sandbox needs, and what a clinician reads.

Cards are produced in-process through `evaluate` and serialised with `response_bytes`, the bytes the
server sends; a few tests go over HTTP (discovery, the 412/absent-prefetch path, HTTP == in-process).
Tests marked `xfail(strict=True)` describe the correct behaviour where the service is wrong today.
"""

import copy
import html
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_service.evaluation import evaluate, response_bytes
from cds_service.knowledge import Knowledge
from cds_service.prefetch import render
from cds_service.protocol import Card, CdsResponse, Indicator, Source, Suggestion
from cds_service.services import service_definitions
from tests.conftest import load_scenario
from tests.fixture_files import ROOT, scenario_files

SERVICE = {
    "patient-view": "b12-myalgia-patient-view",
    "order-select": "b12-myalgia-order-select",
    "order-sign": "b12-myalgia-order-sign",
}
FIXTURES = scenario_files("patient-view") + scenario_files("order-select") + scenario_files("order-sign")
CARD_FIXTURES = [p for p in FIXTURES if load_scenario(p)["expect"]["cards"]]
HOSTILE = "27-hostile-text-is-escaped.json"
UNTREATED_LOW = "17-untreated-low-b12-no-retest.json"

CARD_KEYS = {"uuid", "summary", "detail", "indicator", "source", "suggestions", "selectionBehavior",
             "overrideReasons", "links"}
SOURCE_KEYS = {"label", "url", "icon", "topic"}
SUGGESTION_KEYS = {"label", "uuid", "isRecommended", "actions"}
ACTION_KEYS = {"type", "description", "resource", "resourceId"}
LINK_KEYS = {"label", "url", "type", "appContext", "autolaunchable"}
CODING_KEYS = {"system", "code", "display"}
MYALGIA_SNOMED = "68962001"
TOTAL_B12_LOINC = "2132-9"
RELATIVE_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
UUID_TOKEN = re.compile(r'"uuid":\s*"[^"]*"')
AUTHORED = re.compile(r'"authoredOn":\s*"[^"]*"')

# FHIR R4 search parameters the prefetch templates may use, per resource type.
SEARCH_PARAMS = {
    "Condition": {"patient", "code", "clinical-status", "category", "onset-date"},
    "Observation": {"patient", "code", "date", "status", "category"},
    "MedicationRequest": {"patient", "status", "code", "_include", "authoredon"},
    "MedicationStatement": {"patient", "status", "code", "effective", "_include"},
    "MedicationAdministration": {"patient", "code", "effective-time", "status", "_include"},
    "Procedure": {"patient", "code", "date", "status"},
    "ServiceRequest": {"patient", "code", "status", "authored"},
}


# --------------------------------------------------------------------------- helpers


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def answer(request: dict[str, Any], knowledge: Knowledge) -> dict[str, Any]:
    """The response exactly as the server serialises it."""
    service = service_definitions(knowledge)[SERVICE[request["hook"]]]
    result = evaluate(service, request, knowledge, datetime.now(UTC))
    data: dict[str, Any] = orjson.loads(response_bytes(result.response))
    return data


def without_uuids(response: dict[str, Any]) -> str:
    """The response apart from what must differ between calls: uuids, and the instant the order is authored."""
    text = UUID_TOKEN.sub('"uuid": "-"', json.dumps(response, sort_keys=True))
    return AUTHORED.sub('"authoredOn": "-"', text)


def resources_in(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every resource in the prefetch and the draft orders, by `Type/id`."""
    found: dict[str, dict[str, Any]] = {}

    def add(item: Any) -> None:
        if not isinstance(item, dict):
            return
        if item.get("resourceType") == "Bundle":
            for entry in item.get("entry") or []:
                if isinstance(entry, dict):
                    add(entry.get("resource"))
        elif item.get("resourceType") and item.get("id"):
            found[f"{item['resourceType']}/{item['id']}"] = item

    for value in (request.get("prefetch") or {}).values():
        add(value)
    add(request["context"].get("draftOrders"))
    return found


def section(detail: str, heading: str) -> str:
    """The lines under a bold heading, up to the next blank line."""
    lines = detail.split("\n")
    start = lines.index(f"**{heading}**") + 1
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(line)
    return "\n".join(out)


def all_values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in [value, *all_values(value)]]
    if isinstance(node, list):
        return [v for value in node for v in [value, *all_values(value)]]
    return []


def suggestion_actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for s in card.get("suggestions") or [] for a in s["actions"]]


def service_request(card: dict[str, Any]) -> dict[str, Any]:
    (action,) = [a for a in suggestion_actions(card) if a["type"] == "create"]
    resource: dict[str, Any] = action["resource"]
    return resource


@pytest.fixture(scope="module")
def answers(knowledge: Knowledge) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """fixture name -> (hook request, response)."""
    out = {}
    for path in FIXTURES:
        request = load_scenario(path)["request"]
        out[_name(path)] = (request, answer(request, knowledge))
    return out


def cards_of(answers: dict[str, tuple[dict[str, Any], dict[str, Any]]], path: Path) -> list[dict[str, Any]]:
    cards: list[dict[str, Any]] = answers[_name(path)][1]["cards"]
    assert cards, "the fixture expects a card"
    return cards


@pytest.fixture(scope="module")
def md() -> Any:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


# --------------------------------------------------------------------------- the fixtures' outcomes


@pytest.mark.parametrize("path", FIXTURES, ids=_name)
def test_fixture_gives_the_expected_cards(answers: dict[str, Any], path: Path) -> None:
    expect = load_scenario(path)["expect"]["cards"]
    cards = answers[_name(path)][1]["cards"]
    assert [c["indicator"] for c in cards] == [c["indicator"] for c in expect]


# --------------------------------------------------------------------------- card fields (CDS Hooks 2.0)


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_card_has_the_required_fields_with_spec_types(answers: dict[str, Any], path: Path) -> None:
    for card in cards_of(answers, path):
        assert set(card) <= CARD_KEYS, set(card) - CARD_KEYS
        assert uuid.UUID(card["uuid"]).version == 4
        summary = card["summary"]
        assert isinstance(summary, str) and summary.strip() == summary and summary
        assert len(summary) < 140, "CDS Hooks 2.0: a one-sentence, <140-character summary"
        assert "\n" not in summary
        assert card["indicator"] in {"info", "warning", "critical"}
        assert isinstance(card["detail"], str) and card["detail"].strip()
        source = card["source"]
        assert set(source) <= SOURCE_KEYS
        assert isinstance(source["label"], str) and source["label"].strip()
        assert urlsplit(source["url"]).scheme == "https" and urlsplit(source["url"]).netloc
        if "topic" in source:
            assert set(source["topic"]) <= CODING_KEYS and source["topic"]["code"] and source["topic"]["system"]
        assert None not in all_values(card), "the wire form carries no nulls"


@pytest.mark.parametrize("path", FIXTURES, ids=_name)
def test_no_card_carries_an_empty_value_anywhere(answers: dict[str, Any], path: Path) -> None:
    """CDS Hooks 2.0: null, "", [] and {} are prohibited for an attribute without a value; this walks
    every card of every fixture, the suggested FHIR resources included (FHIR forbids them too)."""
    response = answers[_name(path)][1]
    assert set(response) == {"cards"}  # no systemActions, not even an empty list
    for card in response["cards"]:
        empty = [v for v in [card, *all_values(card)] if v is None or v in ("", [], {})]
        assert empty == [], f"empty values in a card: {empty}"


def test_empty_optional_values_are_left_out_of_the_wire_form() -> None:
    """A wording file with no links, say: the card then has no `links`, never `"links": []`."""
    card = Card(summary="s", detail="", indicator=Indicator.INFO, source=Source(label="b12-cds", url=""),
                suggestions=[Suggestion(label="Order", actions=[])], overrideReasons=[], links=[])
    sent = orjson.loads(response_bytes(CdsResponse(cards=[card], systemActions=[])))
    assert sent == {"cards": [{"summary": "s", "indicator": "info", "source": {"label": "b12-cds"},
                               "suggestions": [{"label": "Order"}]}]}
    assert orjson.loads(response_bytes(CdsResponse(cards=[]))) == {"cards": []}  # required: stays, even empty


def test_the_card_model_refuses_a_summary_of_140_characters() -> None:
    """CDS Hooks 2.0 asks for a "<140-character summary": 139 is the most the service can send."""
    source = Source(label="b12-cds")
    assert Card(summary="x" * 139, indicator=Indicator.INFO, source=source).summary
    with pytest.raises(ValidationError):
        Card(summary="x" * 140, indicator=Indicator.INFO, source=source)


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_suggestions_have_label_uuid_and_selection_behavior(answers: dict[str, Any], path: Path) -> None:
    for card in cards_of(answers, path):
        suggestions = card.get("suggestions")
        if not suggestions:
            assert "suggestions" not in card and "selectionBehavior" not in card
            continue
        assert card["selectionBehavior"] in {"at-most-one", "any"}
        for suggestion in suggestions:
            assert set(suggestion) <= SUGGESTION_KEYS
            assert isinstance(suggestion["label"], str) and suggestion["label"].strip()
            assert uuid.UUID(suggestion["uuid"]).version == 4
            assert suggestion["uuid"] != card["uuid"]
            assert isinstance(suggestion["isRecommended"], bool)
            assert suggestion["actions"]
            for action in suggestion["actions"]:
                assert set(action) <= ACTION_KEYS
                assert action["type"] in {"create", "update", "delete"}
                assert isinstance(action["description"], str) and action["description"].strip()
                if action["type"] in {"create", "update"}:
                    assert isinstance(action["resource"], dict) and action["resource"]["resourceType"]
                else:
                    assert "resource" not in action and action.get("resourceId")


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_links_and_override_reasons_are_well_formed(answers: dict[str, Any], path: Path) -> None:
    for card in cards_of(answers, path):
        assert card["links"]
        for link in card["links"]:
            assert set(link) <= LINK_KEYS
            assert link["label"].strip() and link["type"] in {"absolute", "smart"}
            parts = urlsplit(link["url"])
            assert parts.scheme == "https" and parts.netloc and " " not in link["url"]
            assert "appContext" not in link or link["type"] == "smart"
        reasons = card["overrideReasons"]
        assert reasons
        for coding in reasons:
            assert set(coding) == CODING_KEYS, "every override reason is a Coding with a display"
            assert all(isinstance(v, str) and v.strip() for v in coding.values())
            assert urlsplit(coding["system"]).scheme in {"http", "https"}
        assert len({(c["system"], c["code"]) for c in reasons}) == len(reasons)


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_plain_text_fields_carry_no_markup(answers: dict[str, Any], path: Path) -> None:
    """summary, labels and descriptions are shown as plain text (the sandbox puts them on buttons)."""
    for card in cards_of(answers, path):
        texts = [card["summary"], card["source"]["label"]]
        texts += [s["label"] for s in card.get("suggestions") or []]
        texts += [a["description"] for a in suggestion_actions(card)]
        texts += [link["label"] for link in card["links"]] + [c["display"] for c in card["overrideReasons"]]
        for text in texts:
            assert "&#" not in text and "**" not in text and "<" not in text and "\n" not in text, text


def test_uuids_are_unique_across_cards_suggestions_and_calls(knowledge: Knowledge) -> None:
    seen: list[str] = []
    for path in CARD_FIXTURES:
        request = load_scenario(path)["request"]
        for _ in range(2):
            for card in answer(request, knowledge)["cards"]:
                seen.append(card["uuid"])
                seen += [s["uuid"] for s in card.get("suggestions") or []]
    assert len(seen) == len(set(seen)) > 2 * len(CARD_FIXTURES)


# --------------------------------------------------------------------------- the one-click ServiceRequest


ORDER_FIXTURES = [p for p in CARD_FIXTURES if any(c.get("orderCode") for c in load_scenario(p)["expect"]["cards"])]


@pytest.mark.parametrize("path", ORDER_FIXTURES, ids=_name)
def test_suggested_order_is_a_valid_r4_service_request_for_this_patient(answers: dict[str, Any], path: Path) -> None:
    request, response = answers[_name(path)]
    (want,) = load_scenario(path)["expect"]["cards"]
    (card,) = response["cards"]
    resource = service_request(card)
    ServiceRequest.model_validate(resource)  # raises on anything R4(B) does not allow
    context = request["context"]
    assert resource["status"] == "draft" and resource["intent"] == "order"
    assert resource["subject"] == {"reference": f"Patient/{context['patientId']}"}
    assert resource["code"]["coding"][0]["system"] == "http://loinc.org"
    assert resource["code"]["coding"][0]["code"] == want["orderCode"]
    authored = datetime.fromisoformat(resource["authoredOn"])
    assert resource["authoredOn"].endswith("Z") and abs(datetime.now(UTC) - authored) < timedelta(minutes=10)
    if context.get("userId", "").startswith(("Practitioner/", "PractitionerRole/")):
        assert resource["requester"] == {"reference": context["userId"]}
    assert "encounter" not in resource  # none of the fixtures names an encounter


@pytest.mark.parametrize("path", ORDER_FIXTURES, ids=_name)
def test_order_reasons_point_at_this_patients_complaint(answers: dict[str, Any], path: Path) -> None:
    request, response = answers[_name(path)]
    (card,) = response["cards"]
    resource = service_request(card)
    patient = f"Patient/{request['context']['patientId']}"
    known = resources_in(request)
    complaint = html.unescape(section(card["detail"], "Complaint")) if "**Complaint**" in card["detail"] else ""
    (want,) = load_scenario(path)["expect"]["cards"]
    if complaint and not want.get("withoutReasonReference"):
        assert resource["reasonReference"], "the order names the complaint it investigates"
    for ref in resource.get("reasonReference", []):
        target = known.get(ref["reference"])
        assert target is not None, f"{ref['reference']} is not a resource the EHR sent"
        assert target["resourceType"] in {"Condition", "Observation"}
        assert (target.get("subject") or {}).get("reference") in {patient, None}
        names = [target.get("code", {}).get("text")] + [c.get("display") for c in target.get("code", {}).get("coding", [])]
        assert any(n and n in complaint for n in names), "the reason is the complaint the card lists"


@pytest.mark.parametrize("fixture", [
    "patient-view/02-omeprazole-fatigue-warning.json",
    "order-select/01-ibuprofen-for-pattern-patient-card.json",
    "order-select/05-b12-product-with-no-level-measure-first.json",
])
def test_order_carries_the_encounter_and_requester_from_context(knowledge: Knowledge, fixture: str) -> None:
    request = load_scenario(ROOT / "fixtures" / fixture)["request"]
    request["context"] |= {"encounterId": "enc-77", "userId": "PractitionerRole/role-5"}
    (card,) = answer(request, knowledge)["cards"]
    resource = service_request(card)
    ServiceRequest.model_validate(resource)
    assert resource["encounter"] == {"reference": "Encounter/enc-77"}
    assert resource["requester"] == {"reference": "PractitionerRole/role-5"}


def test_order_has_no_requester_when_the_user_is_not_a_practitioner(knowledge: Knowledge) -> None:
    request = load_scenario(ROOT / "fixtures/patient-view/02-omeprazole-fatigue-warning.json")["request"]
    request["context"]["userId"] = "Patient/pt-02"
    (card,) = answer(request, knowledge)["cards"]
    assert "requester" not in service_request(card)


@pytest.mark.parametrize("fixture", [
    "order-select/05-b12-product-with-no-level-measure-first.json",
    "order-select/15-b12-product-with-two-year-old-level-measure-first.json",
    "order-select/16-b12-product-in-pregnancy-measure-active-b12-first.json",
])
def test_measure_before_treat_order_does_not_claim_myalgia(answers: dict[str, Any], fixture: str) -> None:
    request, response = answers[fixture.removesuffix(".json")]
    assert not any(
        MYALGIA_SNOMED in json.dumps(r) for r in resources_in(request).values() if r["resourceType"] == "Condition"
    ), "the patient has no myalgia on record"
    (card,) = response["cards"]
    codes = {c["code"] for rc in service_request(card).get("reasonCode", []) for c in rc.get("coding", [])}
    assert MYALGIA_SNOMED not in codes


def test_pregnancy_card_does_not_order_the_test_it_advises_against(answers: dict[str, Any]) -> None:
    (card,) = answers["patient-view/31-pregnant-hb-10-6-info"][1]["cards"]
    assert "active B12" in card["detail"]
    assert service_request(card)["code"]["coding"][0]["code"] != TOTAL_B12_LOINC
    assert service_request(card)["code"]["coding"][0]["code"] == "72160-5"
    assert card["suggestions"][0]["label"] == "Order active B12 (holotranscobalamin)"


# --------------------------------------------------------------------------- delete actions (order-sign)


DELETE_FIXTURES = [p for p in CARD_FIXTURES if any("deletes" in c for c in load_scenario(p)["expect"]["cards"])]


@pytest.mark.parametrize("path", DELETE_FIXTURES, ids=_name)
def test_delete_targets_only_drafts_being_signed(answers: dict[str, Any], path: Path) -> None:
    request, response = answers[_name(path)]
    drafts = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in request["context"]["draftOrders"]["entry"] if e["resource"].get("id")
    }
    (card,) = response["cards"]
    deletes = [a for a in suggestion_actions(card) if a["type"] == "delete"]
    ids = [a["resourceId"] for a in deletes]
    assert ids and set(ids) <= drafts and all(isinstance(i, str) for i in ids)


@pytest.mark.parametrize("path", DELETE_FIXTURES, ids=_name)
def test_delete_action_resource_id_is_one_relative_reference(answers: dict[str, Any], path: Path) -> None:
    (card,) = cards_of(answers, path)
    for action in suggestion_actions(card):
        assert action["type"] in ("delete", "create")  # a swap for the follow-up test creates one order
        if action["type"] == "delete":
            assert isinstance(action["resourceId"], str) and RELATIVE_REFERENCE.match(action["resourceId"])


@pytest.mark.parametrize(("fixture", "expected"), [
    ("patient-view/02-omeprazole-fatigue-warning",
     {"tested-elsewhere", "on-treatment", "other-cause", "patient-declined", "not-indicated"}),
    ("order-sign/01-b12-test-with-recent-result-warning", {"repeat-justified"}),
    ("order-sign/02-b12-test-with-pending-order-warning", {"earlier-order-cancelled", "repeat-justified"}),
    ("order-sign/07-two-b12-tests-in-one-order-warning", {"both-tests-needed"}),
    ("order-select/05-b12-product-with-no-level-measure-first",
     {"tested-elsewhere", "sample-not-possible", "patient-declined", "not-indicated"}),
    ("order-select/16-b12-product-in-pregnancy-measure-active-b12-first",
     {"tested-elsewhere", "sample-not-possible", "patient-declined", "not-indicated"}),
])
def test_override_reasons_fit_the_card(answers: dict[str, Any], fixture: str, expected: set[str]) -> None:
    (card,) = answers[fixture][1]["cards"]
    assert {c["code"] for c in card["overrideReasons"]} == expected


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_override_reasons_are_listed_codings_without_repeats(
    answers: dict[str, Any], knowledge: Knowledge, path: Path
) -> None:
    listed = {(c.system, c.code, c.display) for c in knowledge.wording.override_reasons}
    for card in cards_of(answers, path):
        reasons = [(c["system"], c["code"], c["display"]) for c in card["overrideReasons"]]
        assert reasons and len(set(reasons)) == len(reasons) and set(reasons) <= listed
        if "duplicate" in card["summary"].lower():
            assert not {"other-cause", "patient-declined"} & {r[1] for r in reasons}


# --------------------------------------------------------------------------- markdown in `detail`


def _md_params() -> list[Any]:
    out = []
    for path in CARD_FIXTURES:
        out.append(pytest.param(path, id=_name(path)))
    return out


@pytest.mark.parametrize("path", _md_params())
def test_detail_renders_as_headed_tight_lists(answers: dict[str, Any], md: Any, path: Path) -> None:
    for card in cards_of(answers, path):
        tokens = md.parse(card["detail"])
        assert not [t for t in tokens if t.type.startswith("heading")], "bold paragraphs are the headings"
        for i, token in enumerate(tokens):
            if token.type == "paragraph_open" and token.level > 0:
                assert token.hidden, f"loose list item: {tokens[i + 1].content!r}"
            if token.type == "bullet_list_open" and token.level == 0:
                heading = tokens[i - 2]
                assert heading.type == "inline" and re.fullmatch(r"\*\*[^*]+\*\*", heading.content), (
                    f"list without a heading before it: {heading.content!r}"
                )


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_record_text_is_escaped_once(answers: dict[str, Any], md: Any, path: Path) -> None:
    """Character references decode to the record's text; nothing is escaped twice (no `&amp;#40;`)."""
    for card in cards_of(answers, path):
        rendered = md.render(card["detail"])
        assert not re.search(r"&amp;#\d+;", rendered)
        text = html.unescape(re.sub(r"<[^>]+>", "", rendered))
        assert not re.search(r"&#\d+;", text), "a character reference survives rendering"


@pytest.mark.parametrize("path", [p for p in CARD_FIXTURES if p.parent.name == "order-sign"], ids=_name)
def test_order_sign_card_shows_the_drafts_as_written(answers: dict[str, Any], md: Any, path: Path) -> None:
    request, response = answers[_name(path)]
    (card,) = response["cards"]
    text = html.unescape(re.sub(r"<[^>]+>", "", md.render(card["detail"])))
    ordered = next(p for p in text.split("\n") if p.startswith("Ordered now"))
    named = [e["resource"].get("code") or e["resource"].get("medicationCodeableConcept") or {}
             for e in request["context"]["draftOrders"]["entry"]]
    drafts = [n.get("text") or n["coding"][0].get("display") for n in named if n]
    assert any(f"Ordered now: {d}" == ordered for d in drafts), ordered


def test_hostile_record_text_renders_inert(answers: dict[str, Any], md: Any) -> None:
    (card,) = answers[f"patient-view/{HOSTILE.removesuffix('.json')}"][1]["cards"]
    rendered = md.render(card["detail"])
    assert "<img" not in rendered and "<a " not in rendered and "href=" not in rendered
    text = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    assert "<img src=x onerror=alert(1)>" in text, "the clinician still sees what the record says"


def test_ordinary_punctuation_in_record_text_stays_readable(answers: dict[str, Any]) -> None:
    for name, (_, response) in answers.items():
        if name.endswith(HOSTILE.removesuffix(".json")):
            continue
        for card in response["cards"]:
            for ref in ("&#40;", "&#41;", "&#47;", "&#46;", "&#45;", "&#39;"):
                assert ref not in card["detail"], (name, ref)


# --------------------------------------------------------------------------- wording and the rule


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_rule_line_matches_the_indicator(answers: dict[str, Any], knowledge: Knowledge, path: Path) -> None:
    criteria: dict[str, str] = {str(k): v for k, v in knowledge.wording.criteria.items()}
    for card in cards_of(answers, path):
        detail = card["detail"]
        if "**Complaint**" not in detail:
            continue  # order cards state their own criterion
        key = card["indicator"]
        if key == "info" and "**Risk factors**" in detail:  # lowered by an event that may explain the aches
            key = "info-explained"
        if key == "warning" and "**Risk factors**" not in detail:  # macrocytic anaemia warns by itself
            key = "warning-without-risk-factor"
        if key == "critical" and "no treatment on record" in card["summary"]:  # an earlier low B12, with or without a risk
            key = "critical-untreated-low"
        if "suggestions" not in card:  # a treatment-review card: its own rule line
            key = ("lapsed-treatment" if "treated B12 deficiency" in card["summary"]
                   else "diagnosed-deficiency" if "B12 deficiency diagnosed" in card["summary"]
                   else "untreated-raised-mma-after-nitrous-oxide" if "nitrous oxide use and a raised" in card["summary"]
                   else "untreated-raised-mma" if "normal B12 but a raised" in card["summary"]
                   else "untreated-mma" if "methylmalonic" in card["summary"] else "untreated-low")
        assert f"**Rule**: {criteria[key]}" in detail
        others = {k: v for k, v in criteria.items() if k != key}
        assert not any(v in detail for v in others.values())
        if "suggestions" not in card or key == "critical-untreated-low":
            continue  # urgent by the low result itself, risk factor or not
        if key == "warning-without-risk-factor":
            assert "**Macrocytosis**" in detail or "**Macrocytic anaemia (diagnosis)**" in detail
        elif card["indicator"] in {"warning", "critical"}:
            assert "**Risk factors**" in detail
        elif "**Risk factors**" in detail:  # info with a risk factor only when a confounder lowered it
            assert "Recent viral illness" in detail or "Recent exertion or injury" in detail


@pytest.mark.parametrize("path", [p for p in CARD_FIXTURES if p.parent.name == "order-select"], ids=_name)
def test_order_select_card_names_the_selected_order(answers: dict[str, Any], md: Any, path: Path) -> None:
    request, response = answers[_name(path)]
    (card,) = response["cards"]
    text = html.unescape(re.sub(r"<[^>]+>", "", md.render(card["detail"])))
    resources = resources_in(request)
    selected = resources[request["context"]["selections"][0]]
    reference = (selected.get("medicationReference") or {}).get("reference", "")
    contained = {f"#{c.get('id')}": c for c in selected.get("contained", [])}
    medication = contained.get(reference) or resources.get(reference, {})  # contained, or sent beside it
    concept = selected.get("medicationCodeableConcept") or selected.get("code") or medication.get("code") or {}
    names = [concept.get("text")] + [c.get("display") for c in concept.get("coding", [])]
    names += [(selected.get("medicationReference") or {}).get("display")]  # naming a bare code
    names += [(item.get("code") or {}).get("text") for item in selected.get("item", [])]  # a DSTU2 order's tests
    assert any(n and n in text.split("\n\n")[0] for n in names)


def test_duplicate_card_names_the_earlier_result(answers: dict[str, Any]) -> None:
    (card,) = answers["order-sign/01-b12-test-with-recent-result-warning"][1]["cards"]
    earlier = (date.today() - timedelta(days=30)).isoformat()
    assert f"410 pg/mL on {earlier}" in card["detail"]


def test_untreated_low_threshold_has_a_unit(answers: dict[str, Any]) -> None:
    (card,) = answers[f"patient-view/{UNTREATED_LOW.removesuffix('.json')}"][1]["cards"]
    assert re.search(r"below 180 (pg/mL|ng/L)", card["detail"])


def test_symptom_observation_shows_the_recorded_answer(answers: dict[str, Any]) -> None:
    (card,) = answers["patient-view/24-medication-reference-and-bad-resources-warning"][1]["cards"]
    line = next(x for x in card["detail"].split("\n") if x.startswith("- **Breathlessness**"))
    assert "“Symptom: Dyspnea”" in line, line


def _with_thyroid_and_vitamin_d(knowledge: Knowledge) -> dict[str, Any]:
    request = load_scenario(ROOT / "fixtures/patient-view/02-omeprazole-fatigue-warning.json")["request"]
    when = (date.today() - timedelta(days=20)).isoformat()

    def obs(oid: str, code: str, text: str, value: float, unit: str, ucum: str) -> dict[str, Any]:
        return {"fullUrl": f"http://fhir.example.org/fhir/Observation/{oid}", "resource": {
            "resourceType": "Observation", "id": oid, "status": "final",
            "subject": {"reference": "Patient/pt-02"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": text}], "text": text},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum}}}

    bundle = copy.deepcopy(request["prefetch"].get("observations") or {"resourceType": "Bundle", "type": "searchset"})
    bundle["entry"] = [*bundle.get("entry", []), obs("tsh-1", "3016-3", "TSH", 6.2, "mIU/L", "m[IU]/L"),
                       obs("vitd-1", "62292-8", "25-OH vitamin D", 12, "ng/mL", "ng/mL")]
    request["prefetch"]["observations"] = bundle
    cards: list[dict[str, Any]] = answer(request, knowledge)["cards"]
    (card,) = cards
    assert "**Raised TSH**" in card["detail"] and "**Low 25-OH vitamin D**" in card["detail"]
    return card


def test_lab_confounder_line_reads_cleanly(knowledge: Knowledge) -> None:
    card = _with_thyroid_and_vitamin_d(knowledge)
    also = section(card["detail"], "Also consider")
    when = (date.today() - timedelta(days=20)).isoformat()
    assert f"**Raised TSH**: 6.2 mIU/L on {when} (> 4.5 mIU/L). A raised TSH points" in also, also
    assert f"**Low 25-OH vitamin D**: 12 ng/mL on {when} (< 20 ng/mL). A low vitamin D" in also, also
    assert ".," not in also


def test_lab_units_are_written_as_clinicians_read_them(knowledge: Knowledge) -> None:
    card = _with_thyroid_and_vitamin_d(knowledge)
    assert "m[IU]/L" not in card["detail"] and "mIU/L" in card["detail"]


def test_card_does_not_assert_absence_of_data_it_never_received(client: httpx.Client) -> None:
    request = load_scenario(ROOT / "fixtures/patient-view/28-no-prefetch-beyond-patient-no-invented-data.json")["request"]
    assert set(request["prefetch"]) == {"patient", "conditions"}
    response = client.post(f"/cds-services/{SERVICE['patient-view']}", json=request)
    if response.status_code == 412:
        return  # refusing to advise without the data is also correct
    assert response.status_code == 200
    for card in response.json()["cards"]:
        for claim in ("No current B12 replacement on record", "No earlier B12 result on record", "No pending B12 order",
                      "No B12 or active-B12 result in the last"):
            assert claim not in card["detail"], claim


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("path", FIXTURES, ids=_name)
def test_same_input_same_answer_apart_from_uuids(answers: dict[str, Any], knowledge: Knowledge, path: Path) -> None:
    request, first = answers[_name(path)]
    again = answer(copy.deepcopy(request), knowledge)
    assert without_uuids(again) == without_uuids(first)
    if first["cards"]:
        assert again["cards"][0]["uuid"] != first["cards"][0]["uuid"], "a new uuid per call, for feedback"


_DUMP = """
import json, re, sys
from datetime import UTC, datetime
from cds_service.evaluation import evaluate, response_bytes
from cds_service.knowledge import load_knowledge
from cds_service.services import service_definitions
from tests.fixture_files import load, scenario_files
k = load_knowledge(); services = service_definitions(k); now = datetime.now(UTC)
ids = {"patient-view": "b12-myalgia-patient-view", "order-select": "b12-myalgia-order-select",
       "order-sign": "b12-myalgia-order-sign"}
out = {}
for hook in ids:
    for path in scenario_files(hook):
        request = load(path)["request"]
        out[path.name] = json.loads(response_bytes(evaluate(services[ids[request["hook"]]], request, k, now).response))
sys.stdout.write(re.sub(r'"(uuid|authoredOn)":\\s*"[^"]*"', r'"\\1": "-"', json.dumps(out, sort_keys=True)))
"""


def test_same_answers_across_processes_and_hash_seeds() -> None:
    """Nothing depends on set or dict iteration order that changes between processes."""
    outputs = []
    for seed in ("1", "4242"):
        proc = subprocess.run(
            [sys.executable, "-c", _DUMP], cwd=ROOT, capture_output=True, timeout=60, check=False,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert proc.returncode == 0, proc.stderr.decode()
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0]) > 10_000


@pytest.mark.parametrize("fixture", [
    "patient-view/01-metformin-paresthesia-critical.json",
    "order-select/05-b12-product-with-no-level-measure-first.json",
    "order-sign/07-two-b12-tests-in-one-order-warning.json",
])
def test_http_answer_equals_the_in_process_answer(client: httpx.Client, knowledge: Knowledge, fixture: str) -> None:
    request = load_scenario(ROOT / "fixtures" / fixture)["request"]
    response = client.post(f"/cds-services/{SERVICE[request['hook']]}", json=request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert without_uuids(response.json()) == without_uuids(answer(request, knowledge))


# --------------------------------------------------------------------------- discovery


@pytest.fixture(scope="module")
def discovery(server: Any) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/cds-services", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def test_discovery_lists_one_service_per_hook_with_required_fields(discovery: dict[str, Any]) -> None:
    assert set(discovery) == {"services"}
    services = discovery["services"]
    assert {s["hook"]: s["id"] for s in services} == SERVICE
    for service in services:
        assert set(service) <= {"hook", "id", "title", "description", "prefetch", "usageRequirements"}
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", service["id"]), "the id is used as a URL segment"
        assert service["title"].strip() and service["description"].strip()
        assert None not in all_values(service)
        assert isinstance(service["prefetch"], dict) and service["prefetch"]
        assert all(isinstance(t, str) for t in service["prefetch"].values())


def test_every_discovered_service_answers_its_hook(discovery: dict[str, Any], client: httpx.Client) -> None:
    for service in discovery["services"]:
        path = next(p for p in CARD_FIXTURES if p.parent.name == service["hook"])
        response = client.post(f"/cds-services/{service['id']}", json=load_scenario(path)["request"])
        assert response.status_code == 200 and response.json()["cards"]


def test_prefetch_templates_are_relative_fhir_reads_and_searches(discovery: dict[str, Any]) -> None:
    for service in discovery["services"]:
        for key, template in service["prefetch"].items():
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key)
            assert "{{context.patientId}}" in template
            assert not template.startswith(("/", "http"))
            filled = render(template, {"patientId": "pt-1"}, date(2026, 1, 31))
            assert "{{" not in filled and "}}" not in filled
            parts = urlsplit(filled)
            if not parts.query:
                assert re.fullmatch(r"Patient/pt-1", parts.path), template
                continue
            assert parts.path in SEARCH_PARAMS, parts.path
            params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
            assert ("patient", "pt-1") in params
            for name, value in params:
                assert name in SEARCH_PARAMS[parts.path], (key, name)
                if name == "code":
                    for token in value.split(","):
                        system, _, code = token.partition("|")
                        assert urlsplit(system).scheme == "http" and code and not re.search(r"[\s*|]", code), token
                if name in {"date", "effective-time"}:
                    assert re.fullmatch(r"(ge|gt|le|lt|eq)\d{4}-\d{2}-\d{2}", value), value


def test_order_services_prefetch_what_their_rules_read(discovery: dict[str, Any]) -> None:
    by_hook = {s["hook"]: s["prefetch"] for s in discovery["services"]}
    assert {"patient", "b12Results", "b12Orders"} <= set(by_hook["order-sign"])
    assert set(by_hook["patient-view"]) <= set(by_hook["order-select"])
    for hook in SERVICE:
        assert by_hook[hook]["patient"] == "Patient/{{context.patientId}}"


def test_prefetch_tokens_are_cds_hooks_tokens_or_date_bounds(discovery: dict[str, Any]) -> None:
    """CDS Hooks 2.0 defines context and user tokens only. The look-backs of observations and of
    administrations (every product given, so it needs a bound) use `today() - N days`, which the
    sandbox fills and other clients may not: such a client leaves the key out, and the service
    fetches it itself (tests/test_gathering.py) or says the check was not made. The date token is
    always the last parameter, and appears nowhere else."""
    allowed = re.compile(r"context\.[A-Za-z]+|user(Practitioner|PractitionerRole|Patient|RelatedPerson)Id")
    date_bounded = set()
    for service in discovery["services"]:
        for key, template in service["prefetch"].items():
            for token in re.findall(r"\{\{\s*(.*?)\s*\}\}", template):
                if not allowed.fullmatch(token):
                    assert re.fullmatch(r"today\(\) - \d+ days", token), token
                    assert re.search(r"&(date|effective-time)=ge\{\{today\(\) - \d+ days\}\}$", template), template
                    date_bounded.add(key)
    assert date_bounded == {"observations", "observationsIcd10", "b12Administrations"}


@pytest.mark.parametrize(("fixture", "lines"), [
    ("patient-view/09-macrocytic-anaemia-critical", [r"- \*\*Macrocytosis\*\*: 104 fL on {d} \(> 100 fL\)",
                                                      r"- \*\*Anaemia\*\*: 10\.9 g/dL on {d} \(< 12 g/dL\)"]),
    # a value reported in another unit shows as reported, then converted to the rule's unit
    ("patient-view/26-hb-in-g-per-l-critical", [r"- \*\*Anaemia\*\*: 118 g/L \(11\.8 g/dL\) on {d} \(< 13 g/dL\)"]),
    ("patient-view/16-indeterminate-b12-suggests-mma", [r"- \*\*Indeterminate earlier serum vitamin B12\*\*: 250 ng/L \(250 pg/mL\) on {d}$"]),
])
def test_lab_evidence_reads_value_unit_date_and_threshold(answers: dict[str, Any], fixture: str, lines: list[str]) -> None:
    (card,) = answers[fixture][1]["cards"]
    for line in lines:
        assert re.search(line.format(d=r"\d{4}-\d{2}-\d{2}"), card["detail"], re.MULTILINE), (line, card["detail"])


# what made a card critical, named in its summary (cards/wording.json phrases)
FEATURES = ("with neurological or cognitive signs,", "with macrocytic anaemia,", "with neurological or cognitive signs and", "with macrocytic anaemia and", "with macrocytic anaemia after",
            "with neurological or cognitive signs and macrocytic anaemia", "with neurological or cognitive signs after",
            "with macrocytic anaemia in", "with neurological or cognitive signs in", "with neurological or cognitive signs despite",
            "with macrocytic anaemia despite", "an old low B12 with no treatment on record", "with an old low B12, no treatment on record,",
            "with macrocytic anaemia, B12 deficiency diagnosed", "with neurological or cognitive signs, B12 deficiency diagnosed")


@pytest.mark.parametrize(("fixture", "feature"), [
    ("patient-view/01-metformin-paresthesia-critical", "neurological or cognitive signs"),
    ("patient-view/09-macrocytic-anaemia-critical", "macrocytic anaemia"),
])
def test_a_critical_summary_names_what_made_it_critical(answers: dict[str, Any], fixture: str, feature: str) -> None:
    (card,) = answers[fixture][1]["cards"]
    assert card["summary"].startswith(f"Myalgia with {feature} and a B12 risk factor")


@pytest.mark.parametrize("path", CARD_FIXTURES, ids=_name)
def test_summary_shows_urgency_only_on_critical_test_cards(answers: dict[str, Any], knowledge: Knowledge, path: Path) -> None:
    for card in cards_of(answers, path):
        urgent = "now" in card["summary"].split(": ")[-1].split()
        has_order = bool(card.get("suggestions")) and card["suggestions"][0]["actions"][0]["type"] == "create"
        names_the_feature = any(f in card["summary"] for f in FEATURES)
        # treatment reviews whose urgency depends on the feature (an untreated low result is urgent by itself)
        review_by_feature = "treated B12 deficiency" in card["summary"] or "B12 deficiency diagnosed" in card["summary"]
        if card["indicator"] == "critical" and (has_order or review_by_feature):
            assert urgent and names_the_feature, card["summary"]
        else:
            assert not urgent, card["summary"]
