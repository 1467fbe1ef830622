"""Property tests of the rule engine on generated FHIR-like records (hypothesis).

Conditions, Observations, MedicationRequests and Procedures with codes drawn from the value sets
and from junk, statuses and dates right and wrong, values of every JSON type: evaluation never
crashes, leaves its input alone, and gives the same answer for the same input.
"""

import copy
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cds_service.errors import CdsError
from cds_service.evaluation import evaluate
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.services import service_definitions
from tests.conftest import load_scenario
from tests.fixture_files import FIXTURES

KNOWLEDGE: Knowledge = load_knowledge()
SERVICES = service_definitions(KNOWLEDGE)
NOW = datetime.now(UTC)  # the fixtures' relative dates resolve against today
# The firing fixture's record, moved to the generated requests' patient "p1" (records naming
# another patient are left out, so its own id would make every merged request a 412).
FIRING = json.loads(json.dumps(
    load_scenario(FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json")["request"]["prefetch"]
).replace('"pt-01"', '"p1"').replace("Patient/pt-01", "Patient/p1"))
CODES = sorted(KNOWLEDGE.codings.code_index)
SYSTEMS = sorted({s for s, _ in CODES}) + ["urn:junk", ""]
HOSTILE_TEXT = ["myalgia", "muscle pain", "no myalgia", "<img src=x onerror=alert(1)>", "[x](javascript:1)", "💥", ""]

junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
recent = st.dates(NOW.date().replace(year=2024), NOW.date()).map(lambda d: d.isoformat())
dates = st.one_of(recent, recent, st.dates().map(lambda d: d.isoformat()), st.sampled_from(["2026-05", "2025", "{{today}}", "tomorrow"]),
                  junk)
coding = st.one_of(
    st.sampled_from(CODES).map(lambda sc: {"system": sc[0], "code": sc[1], "display": "x"}),
    st.fixed_dictionaries({"system": st.sampled_from(SYSTEMS), "code": st.one_of(st.text(max_size=10), junk)}),
    junk,
)
concept = st.one_of(st.fixed_dictionaries({"coding": st.one_of(st.lists(coding, max_size=3), st.lists(coding, max_size=3), junk)},
                                          optional={"text": st.sampled_from(HOSTILE_TEXT)}), junk)
status_cc = st.sampled_from(["active", "resolved", "inactive", "confirmed", "refuted", "entered-in-error", "x"]).map(
    lambda c: {"coding": [{"code": c}]})
ref = st.just({"reference": "Patient/p1"})


def resource(rtype: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"resourceType": st.just(rtype), "id": st.text("abc123", min_size=1, max_size=4),
                                  "subject": ref}, optional=fields)


condition = resource("Condition", code=concept, clinicalStatus=status_cc, verificationStatus=status_cc,
                     onsetDateTime=dates, recordedDate=dates, note=st.just([{"text": "<script>alert(1)</script>"}]))
observation = resource(
    "Observation", code=concept, status=st.sampled_from(["final", "amended", "preliminary", "cancelled", "?"]),
    effectiveDateTime=dates,
    valueQuantity=st.one_of(st.fixed_dictionaries({
        "value": st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-10, 5000), junk),
        "unit": st.sampled_from(["pg/mL", "pmol/L", "ng/L", "g/dL", "g/L", "fL", "%", "??"]),
    }), junk),
    valueCodeableConcept=concept,
)
medication = resource("MedicationRequest", medicationCodeableConcept=concept, authoredOn=dates,
                      medicationReference=st.one_of(st.just({"reference": "#m"}), junk), contained=st.one_of(
                          st.just([{"resourceType": "Medication", "id": "m", "code": {"text": "cyanocobalamin"}}]), junk),
                      reasonCode=st.one_of(concept, st.lists(concept, max_size=2)),
                      status=st.sampled_from(["active", "stopped", "draft", "completed", "entered-in-error", "x"]),
                      intent=st.sampled_from(["order", "plan", "proposal"]))
procedure = resource("Procedure", code=concept, performedDateTime=dates, status=st.sampled_from(["completed", "x"]))
trigger = st.fixed_dictionaries({
    "resourceType": st.just("Condition"), "id": st.just("myalgia"), "subject": ref, "onsetDateTime": recent,
    "code": st.just({"coding": [{"system": "http://snomed.info/sct", "code": "68962001"}], "text": HOSTILE_TEXT[3]}),
    "clinicalStatus": st.just({"coding": [{"code": "active"}]}),
})
metformin = st.fixed_dictionaries({
    "resourceType": st.just("MedicationRequest"), "id": st.just("metformin"), "subject": ref, "authoredOn": recent,
    "status": st.just("active"), "intent": st.just("order"),
    "medicationCodeableConcept": st.just({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "861007"}], "text": HOSTILE_TEXT[4]}),
})
anything = st.one_of(condition, observation, medication, procedure, junk)


def bundle(items: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(items, max_size=6).map(
        lambda rs: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]})


records = st.fixed_dictionaries({
    "patient": st.fixed_dictionaries({"resourceType": st.just("Patient"), "id": st.just("p1")},
                                     optional={"birthDate": st.one_of(st.just("1950-02-03"), dates), "gender": st.sampled_from(["female", "male", "x"])}),
    "conditions": bundle(st.one_of(trigger, condition, anything)),
    "observations": bundle(st.one_of(observation, anything)),
    "medications": bundle(st.one_of(metformin, medication, anything)),
    "medicationStatements": bundle(anything),
    "procedures": bundle(st.one_of(procedure, anything)),
    "b12Orders": bundle(anything),
})


def _add_to_firing(extra: dict[str, Any]) -> dict[str, Any]:
    """The firing fixture's record with the generated resources added to each bundle."""
    merged = copy.deepcopy(FIRING)
    for key, value in extra.items():
        if key in merged and merged[key].get("resourceType") == "Bundle":
            merged[key]["entry"] = merged[key].get("entry", []) + value["entry"]
    return merged


records = st.one_of(records, records.map(_add_to_firing))


def without_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


def answer(hook: str, request: dict[str, Any]) -> tuple[Any, ...]:
    service = next(s for s in SERVICES.values() if s.hook == hook)
    try:
        result = evaluate(service, request, KNOWLEDGE, NOW)
    except CdsError as exc:  # a 4xx the service answers on purpose (e.g. another patient's Patient: 412)
        assert 400 <= exc.status_code < 500
        return exc.code, {"cards": []}, exc.message
    outcome = getattr(result.assessment, "outcome", None)
    cards = without_uuids(result.response.model_dump(mode="json", exclude_none=True))
    return outcome, cards, result.resources, result.skipped


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(prefetch=records, drafts=bundle(st.one_of(medication, resource("ServiceRequest", code=concept,
                                                                     status=st.just("draft")), anything)),
       hook=st.sampled_from(["patient-view", "order-select", "order-sign"]))
def test_engine_never_crashes_and_is_deterministic(prefetch: dict[str, Any], drafts: dict[str, Any], hook: str) -> None:
    context: dict[str, Any] = {"patientId": "p1", "userId": "Practitioner/1"}
    if hook != "patient-view":
        context["draftOrders"] = drafts
        if hook == "order-select":
            named = [e["resource"] for e in drafts["entry"] if isinstance(e["resource"], dict) and "id" in e["resource"]]
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in named[:1]]
    request = {"hook": hook, "hookInstance": "h-1", "context": context, "prefetch": prefetch}
    before = copy.deepcopy(request)
    first = answer(hook, request)
    assert request == before  # evaluation does not change its input
    assert first == answer(hook, copy.deepcopy(request))
    event(f"{hook}: {first[0]}, {len(first[1]['cards'])} card(s)")
    for card in first[1]["cards"]:
        assert "<" not in card["detail"] and len(card["summary"]) < 140


def _fixture_requests() -> list[tuple[str, dict[str, Any]]]:
    scenarios = [load_scenario(path) for path in sorted(FIXTURES.glob("order-*/*.json")) + sorted(FIXTURES.glob("patient-view/*.json"))]
    return [(sc["request"]["hook"], sc["request"]) for sc in scenarios if isinstance(sc["request"].get("hook"), str)]


FIXTURE_REQUESTS = _fixture_requests()


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value, the value itself included."""
    found = [path]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found += _nodes(child, (*path, key))
    return found


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(which=st.integers(0, len(FIXTURE_REQUESTS) - 1), where=st.integers(0, 10**6), replacement=junk)
def test_any_element_of_a_fixture_replaced_by_junk_never_crashes(which: int, where: int, replacement: Any) -> None:
    """Real records with one element, anywhere below `prefetch` or `context`, swapped for another JSON type."""
    hook, original = FIXTURE_REQUESTS[which]
    request = copy.deepcopy(original)
    paths = [p for p in _nodes(request) if len(p) > 1 and p[0] in ("prefetch", "context")]
    path = paths[where % len(paths)]
    parent = request
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement
    event(str(path[0]) + "/" + "/".join(k for k in path[1:] if isinstance(k, str))[:60])
    assert answer(hook, request) == answer(hook, copy.deepcopy(request))
