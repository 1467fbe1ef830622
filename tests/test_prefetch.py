"""Prefetch templates render to valid FHIR searches: tokens filled, dates from an injected day, ids encoded.

Covers `render` and `missing_keys` in prefetch.py and the templates services.py builds from the value
sets: `system|code` tokens ORed with commas, date bounds, no token left over, and a hostile patient id
that stays one value of one parameter (or one path segment) whatever it contains.
"""

import re
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx
import pytest

from cds_service.knowledge import CODE_SEARCHED_TYPES, Knowledge
from cds_service.prefetch import (
    CHECK_KEYS,
    ESSENTIAL_KEYS,
    OPTIONAL_KEYS,
    UnresolvedToken,
    failed_prefetch,
    missing_keys,
    render,
    unchecked,
    withheld,
)
from cds_service.services import prefetch_templates, service_definitions
from cds_service.valueset import NOT_SEARCHED_SYSTEMS, canonical_code

TODAY = date(2024, 3, 1)  # the day after a leap day
CONTEXT = {"patientId": "pt-1", "userId": "Practitioner/dr-1", "encounterId": "enc-1"}
HOSTILE_IDS = [
    "a&code=http://evil|1",
    "a/../../Observation",
    "a?_count=1000",
    "a#frag",
    "a b+c",
    "a%2Fb",
    "a,b|c",
    "a=b;c",
    "{{context.userId}}",
    "{{today()}}",
    "a\r\nX-Injected: 1",
    "Ünïcødé-💥",
]
# What may appear in a rendered query: RFC 3986 query characters, plus the `|` FHIR writes in tokens.
URL_SAFE = re.compile(r"[A-Za-z0-9\-._~:/?&=,|%]+")


def _params(query: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(query).query, keep_blank_values=True, strict_parsing=True)


@pytest.fixture(scope="module")
def templates(knowledge: Knowledge) -> dict[str, str]:
    return prefetch_templates(knowledge)


@pytest.mark.parametrize(("token", "expected"), [
    ("{{today()}}", "2024-03-01"),
    ("{{ today() }}", "2024-03-01"),
    ("{{today() - 1 days}}", "2024-02-29"),
    ("{{today()-1day}}", "2024-02-29"),
    ("{{today() - 0 days}}", "2024-03-01"),
    ("{{today() + 1 day}}", "2024-03-02"),
    ("{{today() - 61 days}}", "2023-12-31"),
    ("{{today() - 365 days}}", "2023-03-02"),
    ("{{today() + 306 days}}", "2025-01-01"),
])
def test_today_tokens_count_days_from_the_injected_date(token: str, expected: str) -> None:
    assert render(f"Observation?date=ge{token}", {}, TODAY) == f"Observation?date=ge{expected}"


def test_context_tokens_are_filled_and_plain_text_is_left_alone() -> None:
    assert render("Patient/{{context.patientId}}", CONTEXT, TODAY) == "Patient/pt-1"
    assert render("Encounter/{{ context.encounterId }}", CONTEXT, TODAY) == "Encounter/enc-1"
    assert render("Practitioner?x={{context.userId}}", CONTEXT, TODAY) == "Practitioner?x=Practitioner%2Fdr-1"
    assert render("Condition?code=a|b,c|d&x={y}", CONTEXT, TODAY) == "Condition?code=a|b,c|d&x={y}"


@pytest.mark.parametrize("template", [
    "Patient/{{context.missing}}",
    "Patient/{{context.patientId.value}}",
    "Patient/{{context.draftOrders}}",  # not a string
    "Patient/{{context.count}}",
    "Patient/{{context.none}}",
    "Patient/{{patientId}}",
    "Patient/{{userPractitionerId}}",
    "Observation?date=ge{{today() - 3 weeks}}",
    "Observation?date=ge{{today() * 2 days}}",
    "Observation?date=ge{{today() - -3 days}}",
    "Observation?date=ge{{now()}}",
    "Observation?date=ge{{}}",
])
def test_a_token_that_cannot_be_filled_raises_unresolved(template: str) -> None:
    context = {**CONTEXT, "draftOrders": {"resourceType": "Bundle"}, "count": 3, "none": None}
    with pytest.raises(UnresolvedToken, match="unresolved prefetch token"):
        render(template, context, TODAY)


@pytest.mark.parametrize("patient_id", HOSTILE_IDS)
def test_a_hostile_patient_id_stays_one_parameter_value(patient_id: str) -> None:
    query = render("Condition?patient={{context.patientId}}&status=active", {"patientId": patient_id}, TODAY)
    assert URL_SAFE.fullmatch(query), query
    assert "{{" not in query
    assert urlsplit(query).path == "Condition"
    assert _params(query) == [("patient", patient_id), ("status", "active")]


@pytest.mark.parametrize("patient_id", HOSTILE_IDS)
def test_a_hostile_patient_id_stays_one_path_segment(patient_id: str) -> None:
    query = render("Patient/{{context.patientId}}", {"patientId": patient_id}, TODAY)
    assert URL_SAFE.fullmatch(query), query
    kind, segment = query.split("/")
    assert kind == "Patient"
    assert unquote(segment) == patient_id
    assert not urlsplit(query).query
    assert not urlsplit(query).fragment
    assert httpx.URL("https://ehr.example.org/fhir/" + query).path == "/fhir/Patient/" + patient_id


@pytest.mark.parametrize("patient_id", [".", ".."])
def test_a_dot_segment_patient_id_cannot_move_the_patient_read(patient_id: str) -> None:
    try:
        query = render("Patient/{{context.patientId}}", {"patientId": patient_id}, TODAY)
    except UnresolvedToken:
        return  # refusing such an id is as good as encoding it
    path = httpx.URL("https://ehr.example.org/fhir/" + query).path
    assert path.rsplit("/", 1)[0] == "/fhir/Patient"
    assert path.rsplit("/", 1)[1]


@pytest.mark.parametrize("patient_id", ["pt-1", *HOSTILE_IDS])
def test_every_shipped_template_renders_to_a_valid_search(templates: dict[str, str], patient_id: str) -> None:
    for key, template in templates.items():
        query = render(template, {"patientId": patient_id}, TODAY)
        assert "{{" not in query and "}}" not in query, key
        assert URL_SAFE.fullmatch(query), (key, query)
        path = urlsplit(query).path
        if key == "patient":
            assert unquote(path) == f"Patient/{patient_id}"
            continue
        assert re.fullmatch(r"[A-Z][A-Za-z]+", path), (key, path)
        params = _params(query)
        assert ("patient", patient_id) in params, key
        assert [name for name, _ in params].count("patient") == 1, key
        assert all(value for _, value in params), (key, "empty search parameter")


def test_code_searches_are_system_bar_code_tokens_ored_with_commas(
    templates: dict[str, str], knowledge: Knowledge
) -> None:
    systems = {system for vs in knowledge.valuesets.values() for system, _ in vs.listed}
    coded: set[str] = set()
    for key, template in templates.items():
        codes = [v for name, v in _params(render(template, CONTEXT, TODAY)) if name == "code"]
        if not codes:
            continue
        coded.add(key)
        [value] = codes
        tokens = value.split(",")
        assert len(tokens) == len(set(tokens)), (key, "duplicate token")
        for token in tokens:
            system, sep, code = token.partition("|")
            assert sep and system in systems and code, (key, token)
            assert re.fullmatch(r"[A-Za-z0-9.\-]+", code), (key, token)
            assert "|" not in code
    assert coded == {"observations", "observationsIcd10", "b12Results", "procedures", "b12Orders"}


def test_searches_carry_the_codes_the_rule_reads(templates: dict[str, str]) -> None:
    def tokens(key: str) -> set[str]:
        return {t for name, v in _params(render(templates[key], CONTEXT, TODAY)) if name == "code" for t in v.split(",")}

    serum_b12 = "http://loinc.org|2132-9"
    assert serum_b12 in tokens("b12Results")
    assert serum_b12 in tokens("b12Orders")
    assert "http://snomed.info/sct|68962001" in tokens("observations")  # myalgia as an observation
    # pregnancy status (US Core 82810-3, older 11449-6), asked for by its question: the answers are values
    assert {"http://loinc.org|82810-3", "http://loinc.org|11449-6"} <= tokens("observations")
    assert not {"http://loinc.org|LA15173-0", "http://loinc.org|LA26683-5"} & tokens("observations")
    assert "http://loinc.org|86645-9" not in tokens("observations")  # pregnancy intention is no pregnancy
    assert not tokens("b12Administrations")  # every product given: SCD-coded doses must not be missed
    assert tokens("procedures")


def test_every_search_fits_a_get_url_most_servers_accept(knowledge: Knowledge) -> None:
    """EHRs run prefetch by GET (the sandbox by POST _search first): nginx, Tomcat, Jetty and Apache
    refuse a request line past about 8 KB. Rendered for a 64-character id (FHIR's longest) and
    percent-encoded as a client sends it, with room to spare for the server's base URL."""
    context = {"patientId": "x" * 64}
    for service in service_definitions(knowledge).values():
        for key, template in service.prefetch.items():
            path, _, query = render(template, context, TODAY).partition("?")
            url = path + ("?" + urlencode(parse_qsl(query)) if query else "")
            assert len(url) < 7_000, (service.id, key, len(url))
    def codes(key: str) -> set[str]:
        return {t for n, v in _params(render(prefetch_templates(knowledge)[key], CONTEXT, TODAY)) if n == "code"
                for t in v.split(",")}

    assert all(t.startswith("http://hl7.org/fhir/sid/icd-10-cm|") for t in codes("observationsIcd10"))
    assert not any(t.startswith("http://hl7.org/fhir/sid/icd-10-cm|") for t in codes("observations"))


def test_every_listed_code_of_a_searched_concept_is_searched(templates: dict[str, str], knowledge: Knowledge) -> None:
    searched = {t for name, v in _params(render(templates["b12Results"], CONTEXT, TODAY)) if name == "code"
                for t in v.split(",")}
    rule = knowledge.rule.b12_result
    for concept in rule.result_concepts + rule.recent_result_concepts:
        value_set = knowledge.concepts[concept].value_set
        assert value_set
        assert {f"{s}|{c}" for s, c in knowledge.valuesets[value_set].listed} <= searched, concept


def test_code_searches_cover_codes_matched_by_is_a_filters(templates: dict[str, str], knowledge: Knowledge) -> None:
    for keys, resource_type in [(("observations", "observationsIcd10"), "Observation"), (("procedures",), "Procedure")]:
        key = "+".join(keys)
        params = [p for k in keys for p in _params(render(templates[k], CONTEXT, TODAY))]
        tokens = {t for name, v in params if name == "code" for t in v.split(",")}
        below = {t for name, v in params if name == "code:below" for t in v.split(",")}
        for concept in knowledge.concepts.values():
            if resource_type not in concept.applies_to or not concept.value_set:
                continue
            vs = knowledge.valuesets[concept.value_set]
            for system, prefix in vs.prefixes:
                if system in NOT_SEARCHED_SYSTEMS:  # WHO ICD-10: diagnoses, read from Conditions fetched whole
                    assert not any(t.startswith(system + "|") for t in tokens), (key, system)
                    continue
                under = {f"{s}|{c}" for s, c in vs.listed if s == system and canonical_code(s, c).startswith(prefix)}
                assert f"{system}|{prefix}" in under or f"{system}|{prefix}" in below, (key, concept.id, prefix)
                assert any(canonical_code(system, c.partition("|")[2]) != prefix for c in under), (concept.id, prefix)
                assert under <= tokens, (key, concept.id, prefix)


def test_date_bounds_are_computed_from_the_injected_date(templates: dict[str, str], knowledge: Knowledge) -> None:
    observations = dict(_params(render(templates["observations"], CONTEXT, TODAY)))
    lookback = 2 * max(knowledge.rule.suppressors.normal_result_days, knowledge.rule.symptoms.lookback_days)
    assert observations["date"] == "ge" + (TODAY - timedelta(days=lookback)).isoformat()
    # administrations of every product, so bounded in time: as far back as any rule reads a dose given
    given = dict(_params(render(templates["b12Administrations"], CONTEXT, TODAY)))
    sup = knowledge.rule.suppressors
    reads = max(sup.therapy_administration_days, sup.maintenance_window_days, knowledge.rule.untreated_low.lookback_days)
    assert given["effective-time"] == "ge" + (TODAY - timedelta(days=reads)).isoformat()
    assert given["_include"] == "MedicationAdministration:medication"  # for medicationReference
    later = dict(_params(render(templates["observations"], CONTEXT, TODAY + timedelta(days=10))))
    assert later["date"] == "ge" + (TODAY + timedelta(days=10 - lookback)).isoformat()


def test_status_and_include_parameters(templates: dict[str, str]) -> None:
    def params(key: str) -> dict[str, str]:
        return dict(_params(render(templates[key], CONTEXT, TODAY)))

    # past courses too: long-term use counts from the first, and B12 given after a low result treats it
    assert params("medications")["status"] == "active,on-hold,completed,stopped"  # stopped: a dose change
    assert params("medications")["_include"] == "MedicationRequest:medication"  # for medicationReference
    assert params("medicationStatements")["status"] == "active,completed,stopped"  # taken, then stopped (not intended: no use yet)
    assert params("medicationStatements")["_include"] == "MedicationStatement:medication"  # for medicationReference
    assert params("b12Orders")["status"] == "draft,active,on-hold"
    assert render(templates["conditions"], CONTEXT, TODAY) == "Condition?patient=pt-1"


def test_essential_keys_are_templates_of_the_patient_view_service(knowledge: Knowledge) -> None:
    services = service_definitions(knowledge)
    patient_view = services["b12-myalgia-patient-view"].prefetch
    # each essential key holds a trigger, a suppressor or the age exclusion; an optional one, rare records
    assert set(patient_view) == ESSENTIAL_KEYS | OPTIONAL_KEYS and not ESSENTIAL_KEYS & OPTIONAL_KEYS
    assert {key for keys in CHECK_KEYS.values() for key in keys} <= ESSENTIAL_KEYS  # a suppressor's data is never optional
    narrowed = {("b12-myalgia-order-sign", "observations")}  # pregnancy status only: its one use there
    for service in services.values():
        assert set(service.prefetch) <= set(patient_view), service.id
        assert {k: v for k, v in service.prefetch.items() if (service.id, k) not in narrowed} == {
            k: patient_view[k] for k in service.prefetch if (service.id, k) not in narrowed}, service.id
        assert "patient" in service.prefetch and "b12Results" in service.prefetch, service.id


def test_order_sign_asks_only_for_pregnancy_status_observations(knowledge: Knowledge) -> None:
    """Its duplicate check reads Observations only for a current pregnancy (a low total B12 in
    pregnancy makes no active B12 test redundant): not the hundreds of sign and lab codes."""
    template = service_definitions(knowledge)["b12-myalgia-order-sign"].prefetch["observations"]
    rendered = render(template, CONTEXT, TODAY)
    days = knowledge.rule.pregnancy.lookback_days
    assert rendered == ("Observation?patient=pt-1&code=http://loinc.org|11449-6,http://loinc.org|82810-3"
                        f"&date=ge{(TODAY - timedelta(days=days)).isoformat()}")


def test_missing_keys_are_the_absent_ones_and_null_is_no_data(templates: dict[str, str]) -> None:
    """CDS Hooks 2.0: a key the client could not or chose not to prefetch is left out; a key it found
    no data for is sent as null, which says as much as an empty Bundle."""
    empty_bundle = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    prefetch = {"patient": {"resourceType": "Patient", "id": "pt-1"}, "conditions": None,
                "observations": empty_bundle, "unknown": empty_bundle}
    missing = missing_keys(templates, prefetch)
    assert missing == [k for k in templates if k not in ("patient", "conditions", "observations")]
    assert missing_keys(templates, None) == list(templates)
    assert missing_keys(templates, {}) == list(templates)
    assert missing_keys({}, prefetch) == []


def test_unchecked_names_the_checks_whose_data_was_not_sent(templates: dict[str, str]) -> None:
    everything = {key: {"resourceType": "Bundle", "type": "searchset"} for key in templates}
    assert unchecked(templates, everything) == frozenset()
    failed = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    partial = {**everything, "b12Administrations": failed, "b12Orders": None}
    assert unchecked(templates, partial) == {"therapy"}  # null: the client found no pending order
    partial = {k: v for k, v in everything.items() if k != "b12Orders"}
    assert unchecked(templates, partial) == {"orders"}
    assert unchecked(templates, {"patient": everything["patient"]}) == {"results", "therapy", "orders"}
    unreadable = {**everything, "medications": "Bundle", "b12Orders": {"entry": "none"}}
    assert unchecked(templates, unreadable) == {"therapy", "orders"}  # not "none on record"


def test_a_key_sent_in_a_shape_that_cannot_be_read_is_missing(templates: dict[str, str]) -> None:
    """It is fetched again when fetching is allowed, and otherwise its checks say "not checked"."""
    prefetch = {key: {"resourceType": "Bundle", "type": "searchset"} for key in templates}
    prefetch |= {"medications": [], "b12Orders": {"id": "x"}, "conditions": 7}
    assert missing_keys(templates, prefetch) == [k for k in templates if k in ("medications", "b12Orders", "conditions")]


def test_a_search_bundle_reporting_an_error_is_a_failed_prefetch(templates: dict[str, str]) -> None:
    """An OperationOutcome entry with an error beside the matches: an incomplete result, as when fetched;
    the warning servers add to an empty result is no failure."""
    def outcome(severity: str) -> dict[str, Any]:
        return {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "processing"}]},
                "search": {"mode": "outcome"}}
    whole = {key: {"resourceType": "Bundle", "type": "searchset"} for key in templates}
    errored = {"resourceType": "Bundle", "type": "searchset", "entry": [outcome("error")]}
    warned = {"resourceType": "Bundle", "type": "searchset", "entry": [outcome("warning")]}
    assert failed_prefetch(errored) and not failed_prefetch(warned)
    assert missing_keys(templates, {**whole, "b12Orders": errored, "medications": warned}) == ["b12Orders"]


def test_a_search_bundle_whose_server_withheld_matches_leaves_its_checks_unchecked(templates: dict[str, str]) -> None:
    """Epic's sandbox adds a `suppressed` warning (59204, "Client not authorized for Observation - Outside
    Record Results") to searches it answered in part: read as sent, never fetched again (the same
    server withholds the same), but the check says "not checked", not "none on record"."""
    def outcome(*issues: tuple[str, str]) -> dict[str, Any]:
        return {"fullUrl": "urn:uuid:2f4796e5-149a-44fd-8757-adbfff93bd67", "search": {"mode": "outcome"},
                "resource": {"resourceType": "OperationOutcome",
                             "issue": [{"severity": severity, "code": code} for severity, code in issues]}}
    whole = {key: {"resourceType": "Bundle", "type": "searchset"} for key in templates}
    suppressed = {"resourceType": "Bundle", "type": "searchset", "total": 0,
                  "entry": [outcome(("warning", "suppressed"), ("warning", "processing"))]}
    no_results = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": [outcome(("warning", "processing"))]}
    assert withheld(suppressed) and not withheld(no_results) and not failed_prefetch(suppressed)
    for junk in (None, "x", {"entry": "x"}, {"entry": [{"resource": {"resourceType": "OperationOutcome", "issue": "x"}}]}):
        assert not withheld(junk)
    prefetch = {**whole, "b12Results": suppressed, "medications": suppressed, "observations": suppressed,
                "b12Orders": no_results}
    assert missing_keys(templates, prefetch) == []
    assert unchecked(templates, prefetch) == {"results", "therapy"}
    assert unchecked(templates, {**whole, "b12Orders": suppressed}) == {"orders"}
    assert unchecked({}, {"b12Orders": suppressed}) == frozenset()  # a key the service never asked for


def test_a_bundle_sent_as_its_first_page_only_is_missing(templates: dict[str, str]) -> None:
    """A next link says the rest of the search was not sent; the rule needs the whole result."""
    whole = {key: {"resourceType": "Bundle", "type": "searchset"} for key in templates}
    first_page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                  "link": [{"relation": "self", "url": "Observation?patient=1"},
                           {"relation": "next", "url": "Observation?patient=1&page=2"}]}
    last_page = {**first_page, "link": [{"relation": "previous", "url": "Observation?patient=1&page=1"}]}
    prefetch = {**whole, "b12Results": first_page, "observations": last_page}
    assert missing_keys(templates, prefetch) == ["b12Results"]
    assert unchecked(templates, prefetch) == {"results"}
    assert missing_keys(templates, {**whole, "b12Results": {**first_page, "link": [{"relation": "next"}]}}) == []


def test_a_bundle_whose_total_counts_more_matches_than_it_holds_is_missing(templates: dict[str, str]) -> None:
    """FHIR R4 Bundle.total counts the matches of every page, never include or outcome entries: a total
    above the matches sent (a count-only answer, a page without its link) is part of the search."""
    whole = {key: {"resourceType": "Bundle", "type": "searchset"} for key in templates}
    order = {"resource": {"resourceType": "ServiceRequest", "id": "sr-1"}, "search": {"mode": "match"}}
    medication = {"resource": {"resourceType": "Medication", "id": "m-1"}, "search": {"mode": "include"}}
    count_only = {"resourceType": "Bundle", "type": "searchset", "total": 2}
    assert missing_keys(templates, {**whole, "b12Orders": count_only}) == ["b12Orders"]
    assert missing_keys(templates, {**whole, "b12Orders": {**count_only, "entry": [order]}}) == ["b12Orders"]
    assert missing_keys(templates, {**whole, "medications": {**count_only, "total": 1, "entry": [order, medication]},
                                    "b12Orders": {**count_only, "entry": [order, order | {"search": {}}]},
                                    "b12Results": {**count_only, "total": 0}, "conditions": {"total": 0, "entry": []}}) == []
    assert missing_keys(templates, {**whole, "medications": {**count_only, "entry": [order, medication]}}) == ["medications"]
    assert unchecked(templates, {**whole, "b12Orders": count_only}) == {"orders"}


def test_every_code_search_is_of_a_type_whose_is_a_filters_must_list_codes(templates: dict[str, str]) -> None:
    """Knowledge refuses an unlisted is-a filter only for CODE_SEARCHED_TYPES: it must name every type searched by code."""
    searched = {urlsplit(t).path for t in templates.values() if "code=" in t}
    assert searched == CODE_SEARCHED_TYPES


def test_without_date_tokens_templates_use_only_the_context_tokens_of_cds_hooks_2(knowledge: Knowledge) -> None:
    """CDS_PREFETCH_DATE_TOKENS=false, for clients that fill only CDS Hooks 2.0's tokens: discovery
    declares the same searches, less their date bound, in every service (order-sign's pregnancy status
    search too); the searches the service runs itself keep the bound (it fills the token)."""
    dated, undated = service_definitions(knowledge), service_definitions(knowledge, date_tokens=False)
    bounds = re.compile(r"&(?:date|effective-time)=ge\{\{today\(\) - \d+ days\}\}")
    for sid, service in dated.items():
        assert undated[sid].prefetch == service.prefetch == service.describe().prefetch, sid
        plain = undated[sid].describe().prefetch
        assert plain == {k: bounds.sub("", v) for k, v in service.prefetch.items()}, sid
        assert {t for v in plain.values() for t in re.findall(r"\{\{([^}]*)\}\}", v)} == {"context.patientId"}, sid
    assert sum(bounds.search(v) is not None for s in dated.values() for v in s.prefetch.values()) == 8  # patient-view 3, order-select 3, order-sign 2
