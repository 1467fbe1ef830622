"""Hostile text in every record field that can reach a card comes out inert in every card field.

The sandbox renders `detail` as GFM with raw HTML, and EHRs show summaries, labels and links, so
no field of any card may carry live HTML, a markdown link, a `javascript:` URL or an autolink.
"""

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import load_scenario
from tests.fixture_files import scenario_files
from tests.test_rendering import gfm
from tests.test_scenarios import SERVICE

HOSTILE = (" <img src=x onerror=alert(1)> [x](javascript:alert(1)) <script>alert(2)</script>"
           " <a href='javascript:alert(3)'>a</a> www.evil.example http://evil.example/p ![i](http://evil.example/i.png)"
           " details //evil.example/login?next=chart")
# `onerror=` may stay: with `<` escaped it is text, not an attribute
DANGEROUS = ("<img", "<script", "<a ", "javascript:", "](", "www.evil", "http://evil", "![", "//evil")
MARKDOWN_TAGS = re.compile(r"</?(p|ul|li|strong)>")
TEXT_KEYS = {"text", "display", "valueString", "div"}
FIRING = [p for p in scenario_files("patient-view") + scenario_files("order-select") + scenario_files("order-sign")
          if load_scenario(p)["expect"]["cards"]]


# scenarios whose card reads a lab value sent as text ("<150 pg/mL"): text around it makes it no value
VALUE_AS_TEXT = {"122-b12-result-sent-as-text-untreated-low", "343-b12-text-200-pg-ml-flagged-L-untreated-low-critical",
                 "344-b12-text-less-than-50-pg-ml-untreated-low-critical",
                 "524-b12-text-with-flag-before-the-unit-untreated-low"}
# scenarios whose card reads the lab's flag sent as text ("Abnormal low"): text after it makes it no flag
FLAG_AS_TEXT = {"356-b12-400-flagged-abnormal-low-in-text-untreated-low-critical"}


def poison(node: Any, keys: frozenset[str] | set[str] = TEXT_KEYS, spared: frozenset[str] = frozenset()) -> int:
    """Append HOSTILE to every free-text string (code.text, coding.display, note.text, ...) outside the
    `spared` elements; count them."""
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                node[key] = value + HOSTILE
                count += 1
            elif key not in spared:
                count += poison(value, keys, spared)
    elif isinstance(node, list):
        count += sum(poison(item, keys, spared) for item in node)
    return count


def assert_inert(cards: list[dict[str, Any]]) -> None:
    for card in cards:
        for field, value in card.items():
            text = json.dumps(value, ensure_ascii=False)
            for bad in DANGEROUS:
                assert bad not in text, f"{bad!r} survives in card field {field}"
        rendered = gfm().render(card.get("detail", ""))
        assert "<" not in MARKDOWN_TAGS.sub("", rendered), "detail renders to more than the card's own markup"


@pytest.mark.parametrize("path", FIRING, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_hostile_record_text_is_inert_in_every_card_field(client: httpx.Client, path: Path) -> None:
    scenario = load_scenario(path)
    request = scenario["request"]
    keys = TEXT_KEYS - {"valueString"} if path.stem in VALUE_AS_TEXT else TEXT_KEYS
    spared = frozenset({"interpretation"}) if path.stem in FLAG_AS_TEXT else frozenset()
    assert poison(request.get("prefetch"), keys, spared) + poison(request["context"].get("draftOrders"), keys) > 0
    response = client.post(f"/cds-services/{SERVICE[request['hook']]}", json=request)
    assert response.status_code == 200
    cards = response.json()["cards"]
    assert len(cards) == len(scenario["expect"]["cards"])  # the hostile text did not stop the card
    assert_inert(cards)


def test_poisoned_positive_still_fires_and_shows_the_text_escaped(client: httpx.Client) -> None:
    (path,) = [p for p in FIRING if p.stem.startswith("01-metformin")]
    request = load_scenario(path)["request"]
    poison(request["prefetch"])
    (card,) = client.post(f"/cds-services/{SERVICE['patient-view']}", json=request).json()["cards"]
    assert "&#60;img src=x onerror=alert(1)&#62;" in card["detail"]


def test_hostile_ids_and_context_do_not_reach_cards_live(client: httpx.Client) -> None:
    """Ids come back only inside FHIR resources (references), never in markdown; a hostile patient id
    is refused or carried as data, and no field can render it."""
    (path,) = [p for p in FIRING if p.stem.startswith("01-metformin")]
    request = load_scenario(path)["request"]
    request["context"]["encounterId"] = "<img src=x onerror=alert(1)>"
    request["context"]["userId"] = "Practitioner/<script>alert(1)</script>"
    response = client.post(f"/cds-services/{SERVICE['patient-view']}", json=request)
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        for card in response.json()["cards"]:
            for field in ("summary", "detail", "links", "source", "overrideReasons"):
                assert "<" not in json.dumps(card.get(field), ensure_ascii=False), field
            for suggestion in card.get("suggestions", []):
                assert "<" not in suggestion["label"]
                assert all("<" not in a["description"] for a in suggestion["actions"])


def test_context_ids_that_are_not_fhir_ids_never_become_references(client: httpx.Client) -> None:
    (path,) = [p for p in FIRING if p.stem.startswith("01-metformin")]
    request = load_scenario(path)["request"]
    request["context"]["encounterId"] = "../../Patient/other?x=<b>"
    request["context"]["userId"] = 'Practitioner/x"><img src=x onerror=alert(1)>'
    (card,) = client.post(f"/cds-services/{SERVICE['patient-view']}", json=request).json()["cards"]
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert "encounter" not in order and "requester" not in order
    request["context"]["encounterId"], request["context"]["userId"] = "enc-1.a", "PractitionerRole/pr-9"
    (card,) = client.post(f"/cds-services/{SERVICE['patient-view']}", json=request).json()["cards"]
    order = card["suggestions"][0]["actions"][0]["resource"]
    assert order["encounter"] == {"reference": "Encounter/enc-1.a"} and order["requester"] == {"reference": "PractitionerRole/pr-9"}
