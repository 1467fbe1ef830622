"""Record text is inert in markdown with raw HTML, and reads as written."""

import html
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from cds_service.assessment import assess
from cds_service.facts import Fact, PatientFacts
from cds_service.knowledge import Knowledge
from cds_service.rendering import build_order, escape_text, plain_text, render_detail, result_text

HOSTILE = [
    "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))", "![i](http://evil.example/i.png)",
    "www.evil.example", "WWW.evil.example", "https://evil.example", "mailto:x@evil.example", "x@evil.example",
    "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "ftp://evil.example",
    "**bold** _x_ `code` ~~gone~~", "&lt;b&gt; &#60;i&#62;", "<https://evil.example>", "a | b | c", "\\*not\\*",
]
ORDINARY = [
    "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "Muscle aches - worse at night.",
    "O'Brien's \"cramps\" 3/10, 50% better", "café résumé µg/L ≥ 200", "#2 problem; see plan = rest + fluids",
    "FOLATE & B12", "Denies fever & chills & night sweats", "aches & pains",
]


def gfm() -> MarkdownIt:
    """GFM as the sandbox renders it (remark-gfm with rehype-raw): raw HTML, tables, strikethrough and
    autolink literals (scheme URLs, `www.` and e-mail addresses; bare domains are not linked)."""
    renderer = MarkdownIt("gfm-like", {"html": True})
    renderer.linkify.set({"fuzzy_link": False, "fuzzy_email": True})
    return renderer


@pytest.fixture(scope="module")
def md() -> MarkdownIt:
    return gfm()


# Where cards put record text: in quotes before a parenthesis, in a list of orders, and before a full stop.
CONTEXTS = ["- **Complaint**: “{}” (Condition)", "**Ordered now**: {}, {}", "Ordered now, of the kind that treats or investigates muscle aches: {}."]


def shown(md: MarkdownIt, text: str) -> list[str]:
    """What a clinician reads, in each context where cards place record text."""
    escaped = escape_text(text)
    # GFM also links `www.` literals, which linkify-it only finds in its fuzzy mode (bare domains too)
    assert not re.search(r"(?i)\bwww\.", escaped), escaped
    out = []
    for context in CONTEXTS:
        rendered = md.render(context.format(escaped, escaped))
        assert re.sub(r"</?(ul|li|p|strong)>", "", rendered).count("<") == 0, rendered
        out.append(html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip())
    return out


def as_written(text: str) -> list[str]:
    flat = plain_text(text)
    return [re.sub(r"\*\*|^- ", "", c).format(flat, flat) for c in CONTEXTS]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_inert_and_as_written(md: MarkdownIt, text: str) -> None:
    assert shown(md, text) == as_written(text)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_punctuation_is_left_as_written(md: MarkdownIt, text: str) -> None:
    assert escape_text(text) == text
    assert shown(md, text) == as_written(text)


def test_control_and_invisible_format_characters_are_dropped() -> None:
    assert plain_text("evil\u202eusr\u200b.exe\x00\x07") == "evilusr.exe"
    assert escape_text("www\u200b.evil.example") == "www&#46;evil.example"


def test_one_line_and_truncated() -> None:
    assert escape_text("Muscle aches for months") == "Muscle aches for months"
    assert escape_text("a" * 500) == "a" * 119 + "…"
    assert escape_text("line\nbreak\r\n\tnext") == "line break next"
    assert escape_text("<" * 500).count("&#60;") == 119  # truncated before escaping: no broken reference


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
       | st.text(alphabet="<>[]()!:@&#;*_`~|\\/.wW -=+\"'ahjpstv", max_size=60))
def test_any_text_renders_inert_and_as_written(text: str) -> None:
    assert shown(gfm(), text) == [line.strip() for line in as_written(text)]


def test_order_is_authored_at_an_instant_in_utc(knowledge: Knowledge) -> None:
    evening_in_chicago = datetime(2026, 11, 25, 20, 30, 5, 123456, tzinfo=timezone(timedelta(hours=-6)))
    test = knowledge.wording.variants["test-b12"].order
    assert test is not None
    order = build_order(test, knowledge, "p1", evening_in_chicago, [], None, None)
    assert order["authoredOn"] == "2026-11-26T02:30:05Z"  # the clinic's 25th, not a bare date of the 26th
    ServiceRequest.model_validate(order)


@pytest.mark.parametrize(("value", "unit", "reported", "reported_unit", "shown"), [
    (None, None, 95.0, None, "95 (no unit given: not compared with the rule's thresholds; flagged low by the lab)"),
    (95 * 1.355, "pg/mL", 95.0, "pmol/L", "95 pmol/L (128.7 pg/mL; flagged low by the lab)"),
    (150.0, "pg/mL", 150.0, "pg/mL", "150 pg/mL (flagged low by the lab)"),
    (None, None, 7.0, "mmol/mol", ("7 mmol/mol (a unit this rule cannot convert: not compared with its thresholds; "
                                  "flagged low by the lab)")),
])
def test_a_flagged_low_result_reads_as_reported_with_one_parenthesis(
    knowledge: Knowledge, value: float | None, unit: str | None, reported: float, reported_unit: str | None, shown: str
) -> None:
    fact = Fact("b12-result", "Observation", "o-1", "B12", date(2026, 1, 1), False, "code", value, unit,
                flagged_low=True, reported_value=reported, reported_unit=reported_unit)
    assert result_text(fact, knowledge) == shown


def test_a_b12_test_that_reported_nothing_is_named_under_why_a_test_is_not_redundant(knowledge: Knowledge) -> None:
    today = date(2026, 11, 25)
    pf = PatientFacts(birth_date=date(1960, 1, 1), sex="female")
    for concept in ("myalgia", "fatigue"):
        pf.by_concept[concept].append(Fact(concept, "Condition", f"{concept}-1", concept, today, True, "code"))
    pf.no_result.append(Fact("b12-result", "Observation", "o-1", "Vitamin B12: Test not performed", date(2026, 11, 6), False, "code"))
    detail = render_detail(assess(pf, knowledge, today), knowledge)
    assert ("- A B12 test on record reported no result, so it makes no test redundant: "
            "“Vitamin B12: Test not performed” (Observation, 2026-11-06).\n- No earlier B12 result on record.") in detail
