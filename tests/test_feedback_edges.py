"""Feedback and report edge cases over real HTTP, stored in real SQLite (and PostgreSQL where
the database's own rules matter). Each report test gets a fresh database."""

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from cds_service.storage import create_db_engine
from cds_service.tables import card_feedback
from tests.conftest import LiveServer, load_scenario
from tests.postgres import PostgresServer
from tests.test_audit import FIRES, wait_for_audit
from tests.test_report import run

SERVICE = "b12-myalgia-patient-view"
URL = f"/cds-services/{SERVICE}/feedback"
LIMIT = 64_000
DEADLINE = 0.3
REASONS = "https://b12-cds.example.org/fhir/CodeSystem/override-reason"


def item(outcome: str = "accepted", when: str = "2026-11-25T02:00:14.216Z", **extra: Any) -> dict[str, Any]:
    return {"card": str(uuid.uuid4()), "outcome": outcome, "outcomeTimestamp": when, **extra}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("feedback"), patient_hash_key="test-patient-hash-key", max_body_bytes=LIMIT,
                    request_deadline_seconds=DEADLINE, store_user_comments=True)


@pytest.fixture(scope="module")
def live(settings: Settings, knowledge: Knowledge) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, knowledge)) as server:
        yield server


@pytest.fixture()
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10) as c:
        yield c


def rows(settings: Settings, *cards: str) -> list[dict[str, Any]]:
    """Stored feedback rows for these card uuids, in insertion order."""
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            query = select(card_feedback).where(card_feedback.c.card_uuid.in_(cards)).order_by(card_feedback.c.id)
            return [dict(r._mapping) for r in connection.execute(query)]
    finally:
        engine.dispose()


def post(client: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return client.post(URL, json={"feedback": list(items)})


# --- what is stored -----------------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "stored"), [
    ("2026-11-01T00:30:00Z", "2026-11-01 00:30:00"),
    ("2026-11-01T00:30:00+00:00", "2026-11-01 00:30:00"),
    ("2026-11-01T00:30:00+01:00", "2026-10-31 23:30:00"),
    ("2026-10-31T20:30:00-05:00", "2026-11-01 01:30:00"),
    ("2026-11-01T13:45:00+14:00", "2026-10-31 23:45:00"),
    ("2026-11-01T00:30:00", "2026-11-01 00:30:00"),                  # no zone: taken as UTC
    ("2026-11-01T00:30:00.216Z", "2026-11-01 00:30:00.216000"),
    ("2026-11-01T00:30:00.123456789Z", "2026-11-01 00:30:00.123456"),  # Java Instant nanoseconds
])
def test_outcome_timestamps_are_stored_as_utc(client: httpx.Client, settings: Settings, sent: str, stored: str) -> None:
    sent_item = item(when=sent)
    assert post(client, sent_item).status_code == 200
    [row] = rows(settings, sent_item["card"])
    assert str(row["outcome_at"]) == stored


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_timestamp_out_of_range_after_conversion_is_400(client: httpx.Client, settings: Settings, when: str) -> None:
    good, bad = item(), item(when=when)
    response = post(client, good, bad)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert rows(settings, good["card"], bad["card"]) == []


@pytest.mark.parametrize("when", [
    1764120000, "1764120000", 1764120000.5, "2026-11-26", "2026-11-26T", "2026-11-26 02:00:14Z", "20261126T020014Z",
    "2026-11-26T02Z", "2026-11-26T02:00:14+01", "2026-11-26T02:00:14 Z", " 2026-11-26T02:00:14Z",
    "2026-11-26T02:00:14Z\n", "\u0662\u0660\u0662\u0666-11-26T02:00:14Z", "2026-02-30T02:00:14Z",
    "2026-11-26T24:00:00Z", "2026-11-26T23:59:60Z", "0000-01-01T00:00:00Z", "", None, True, [], {},
])
def test_outcome_timestamp_must_be_an_iso_8601_date_time(client: httpx.Client, settings: Settings, when: Any) -> None:
    """Unix seconds, bare dates and impossible times are 400 naming the field; the valid item
    beside them is not stored either."""
    good, bad = item(), item(when=when)
    response = post(client, good, bad)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert [d["loc"] for d in body["details"]] == ["feedback.1.outcomeTimestamp"]
    assert rows(settings, good["card"], bad["card"]) == []


@pytest.mark.parametrize(("sent", "stored"), [
    ("0001-01-01T00:00:00Z", "0001-01-01 00:00:00"),
    ("2026-11-26T02:00Z", "2026-11-26 02:00:00"),                     # minutes only: ISO 8601 reduced precision
    ("2026-11-26T02:00:14,5Z", "2026-11-26 02:00:14.500000"),         # ISO 8601 decimal comma
    ("2026-11-26T02:00:14+0100", "2026-11-26 01:00:14"),
])
def test_iso_8601_date_times_at_the_edges_are_kept(
    client: httpx.Client, settings: Settings, sent: str, stored: str
) -> None:
    sent_item = item(when=sent)
    assert post(client, sent_item).status_code == 200
    [row] = rows(settings, sent_item["card"])
    assert str(row["outcome_at"]) == stored


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59.999999Z", "2099-01-01T00:00:00+14:00"])
def test_an_outcome_later_than_its_arrival_is_stored_as_the_arrival(
    client: httpx.Client, settings: Settings, when: str
) -> None:
    """A client clock running ahead: the outcome cannot postdate its report, and a far-future time
    would stay the card's latest outcome for ever, so the arrival time is stored for both."""
    sent_item = item(when=when)
    assert post(client, sent_item).status_code == 200
    [row] = rows(settings, sent_item["card"])
    assert row["outcome_at"] == row["received_at"]


def test_every_bad_field_is_named_once(client: httpx.Client) -> None:
    bad = {"card": "", "outcome": "maybe", "outcomeTimestamp": "yesterday"}
    response = post(client, item(), bad, item(when="2026-11-26"))
    assert response.status_code == 400
    assert sorted(d["loc"] for d in response.json()["details"]) == [
        "feedback.1.card", "feedback.1.outcome", "feedback.1.outcomeTimestamp", "feedback.2.outcomeTimestamp"]


def test_override_reason_shapes(client: httpx.Client, settings: Settings) -> None:
    comment_only = item("overridden", overrideReason={"userComment": "patient tested at the GP"})
    empty = item("overridden", overrideReason={})
    code_only = item("overridden", overrideReason={"reason": {"code": "other-cause"}})
    full = item("overridden", overrideReason={
        "reason": {"system": REASONS, "code": "patient-declined", "display": "Patient declined"}, "userComment": ""})
    assert post(client, comment_only, empty, code_only, full).status_code == 200
    got = {r["card_uuid"]: (r["outcome"], r["override_system"], r["override_code"], r["user_comment"])
           for r in rows(settings, *(i["card"] for i in (comment_only, empty, code_only, full)))}
    assert got == {
        comment_only["card"]: ("overridden", None, None, "patient tested at the GP"),
        empty["card"]: ("overridden", None, None, None),
        code_only["card"]: ("overridden", None, "other-cause", None),
        full["card"]: ("overridden", REASONS, "patient-declined", ""),
    }


def test_an_outcome_contradicting_itself_is_400_and_nothing_is_stored(client: httpx.Client, settings: Settings) -> None:
    """CDS Hooks 2.0: an override reason belongs to an overridden card, accepted suggestions to an
    accepted one; a record saying both is refused, naming the item (found in the issue audit). An
    accepted outcome with no acceptedSuggestions is taken."""
    accepted_with_reason = item("accepted", overrideReason={"reason": {"system": REASONS, "code": "not-indicated"}})
    overridden_with_suggestion = item("overridden", acceptedSuggestions=[{"id": str(uuid.uuid4())}])
    plain_accept = item("accepted")
    response = post(client, plain_accept, accepted_with_reason, overridden_with_suggestion)
    assert response.status_code == 400
    assert sorted(d["loc"] for d in response.json()["details"]) == ["feedback.1", "feedback.2"]
    assert not rows(settings, plain_accept["card"], accepted_with_reason["card"], overridden_with_suggestion["card"])
    assert post(client, plain_accept).status_code == 200
    assert [r["outcome"] for r in rows(settings, plain_accept["card"])] == ["accepted"]
    # an empty overrideReason, as a client that sends every field writes one, contradicts nothing
    blank = [item("accepted", overrideReason={}), item("accepted", overrideReason={"userComment": " "})]
    assert post(client, *blank).status_code == 200
    assert [r["outcome"] for r in rows(settings, *(b["card"] for b in blank))] == ["accepted", "accepted"]


@pytest.mark.parametrize("reason", [
    {"reason": {"system": REASONS}},           # a Coding without a code
    {"reason": {"system": REASONS, "code": ""}},
    {"reason": "not-indicated"},               # a bare code instead of a Coding
    {"reason": [{"code": "not-indicated"}]},
    "not-indicated",
])
def test_malformed_override_reason_is_400(client: httpx.Client, settings: Settings, reason: Any) -> None:
    bad = item("overridden", overrideReason=reason)
    response = post(client, bad)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert "not-indicated" not in response.text
    assert rows(settings, bad["card"]) == []


@pytest.mark.parametrize(("outcome", "status"), [
    ("accepted", 200), ("overridden", 200), ("Accepted", 400), ("dismissed", 400), ("", 400), (None, 400), (1, 400),
])
def test_outcome_values(client: httpx.Client, outcome: Any, status: int) -> None:
    assert post(client, item(outcome)).status_code == status


def test_comments_are_not_stored_unless_asked_for(tmp_path: Path, knowledge: Knowledge) -> None:
    """A clinician's comment often names the patient ("Jane Doe, MRN ..., already on B12"): by
    default the reason code is kept and the comment is not."""
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    sent = item("overridden", overrideReason={"reason": {"system": REASONS, "code": "tested-elsewhere"},
                                              "userComment": "Jane Doe MRN 4471203 tested at St Mary's"})
    with LiveServer(create_app(settings, knowledge)) as server, httpx.Client(base_url=server.url) as client:
        assert post(client, sent).status_code == 200
    [row] = rows(settings, sent["card"])
    assert (row["override_code"], row["user_comment"]) == ("tested-elsewhere", None)
    with create_db_engine(settings).connect() as connection:
        assert "4471203" not in str([tuple(r) for r in connection.execute(select(card_feedback))])


def test_comment_up_to_4000_characters_is_kept_exactly(client: httpx.Client, settings: Settings) -> None:
    comment = ("Déjà testé 🩸 \u202e <b>x</b> '; DROP TABLE card_feedback; --" * 100)[:4000]
    sent = item("overridden", overrideReason={"userComment": comment})
    assert post(client, sent).status_code == 200
    [row] = rows(settings, sent["card"])
    assert row["user_comment"] == comment


def test_a_long_comment_does_not_lose_the_feedback(client: httpx.Client, settings: Settings) -> None:
    other = item()
    long = item("overridden", overrideReason={"reason": {"system": REASONS, "code": "not-indicated"},
                                              "userComment": "c" * 4001})
    response = post(client, other, long)
    assert response.status_code == 200, response.text
    stored = rows(settings, other["card"], long["card"])
    assert [r["card_uuid"] for r in stored] == [other["card"], long["card"]]
    assert stored[1]["override_code"] == "not-indicated" and stored[1]["user_comment"].startswith("c" * 4000)


@pytest.mark.parametrize(("suggestions", "stored"), [
    ([{"id": "5121e7c4-1e8f-4962-80e0-135cf1ab887e"}], ["5121e7c4-1e8f-4962-80e0-135cf1ab887e"]),
    ([{"id": "a"}, {"id": "b", "extra": 1}], ["a", "b"]),
    ([], []),
    (None, []),
])
def test_accepted_suggestion_shapes(client: httpx.Client, settings: Settings, suggestions: Any, stored: Any) -> None:
    sent = item(acceptedSuggestions=suggestions)
    assert post(client, sent).status_code == 200
    [row] = rows(settings, sent["card"])
    assert row["accepted_suggestions"] == stored


@pytest.mark.parametrize("suggestions", [
    ["5121e7c4-1e8f-4962-80e0-135cf1ab887e"], [{"uuid": "5121e7c4"}], [{"id": ""}], [{"id": "x" * 129}],
    {"id": "a"}, "a",
])
def test_malformed_accepted_suggestions_are_400(client: httpx.Client, suggestions: Any) -> None:
    assert post(client, item(acceptedSuggestions=suggestions)).status_code == 400


def test_accepted_suggestions_up_to_32_but_not_one_more(client: httpx.Client, settings: Settings) -> None:
    most = item(acceptedSuggestions=[{"id": f"s{i}"} for i in range(32)])
    assert post(client, most).status_code == 200
    assert len(rows(settings, most["card"])[0]["accepted_suggestions"]) == 32
    too_many = item(acceptedSuggestions=[{"id": f"s{i}"} for i in range(33)])
    response = post(client, too_many)
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["details"]] == ["feedback.0.acceptedSuggestions"]
    assert rows(settings, too_many["card"]) == []


def test_card_uuid_is_stored_in_canonical_form(client: httpx.Client, settings: Settings) -> None:
    card = uuid.uuid4()
    forms = [str(card).upper(), "{" + str(card) + "}", "urn:uuid:" + str(card), card.hex]
    assert post(client, *[{**item(), "card": f} for f in forms]).status_code == 200
    assert [r["card_uuid"] for r in rows(settings, str(card))] == [str(card)] * 4


def test_duplicate_cards_in_one_call_are_each_stored(client: httpx.Client, settings: Settings) -> None:
    first = item()
    again = {**first, "outcome": "overridden"}
    assert post(client, first, dict(first), again).status_code == 200
    assert [r["outcome"] for r in rows(settings, first["card"])] == ["accepted", "accepted", "overridden"]


def test_a_thousand_items_but_not_one_more(fresh: tuple[Settings, httpx.Client]) -> None:
    settings, client = fresh
    many = [item() for _ in range(1001)]
    assert post(client, *many[:1000]).status_code == 200
    assert len(rows(settings, *(i["card"] for i in many[:1000]))) == 1000
    response = post(client, *many)
    assert response.status_code == 400 and "feedback" in [d["loc"] for d in response.json()["details"]]
    assert len(rows(settings, many[1000]["card"])) == 0


def test_feedback_over_the_body_limit_is_413_and_stores_nothing(client: httpx.Client, settings: Settings) -> None:
    sent = item("overridden", overrideReason={"userComment": "x" * 3000})
    body = json.dumps({"feedback": [sent] * 25}).encode()
    assert len(body) > LIMIT

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    response = client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    assert rows(settings, sent["card"]) == []
    assert post(client, item()).status_code == 200


def test_a_feedback_body_that_never_finishes_is_cut_by_the_deadline(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{".encode())
        sock.settimeout(DEADLINE + 0.7)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""
    assert answer.startswith(b"HTTP/1.1 503") and b"deadline_exceeded" in answer


def test_the_hook_route_cuts_the_same_slow_body(live: LiveServer) -> None:
    """Control for the test above: the hook route does answer 503 at the deadline."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(f"POST /cds-services/{SERVICE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{".encode())
        sock.settimeout(DEADLINE + 0.7)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503") and b"deadline_exceeded" in answer


# --- the report ---------------------------------------------------------------------------------


@pytest.fixture()
def fresh(tmp_path: Path, knowledge: Knowledge) -> Iterator[tuple[Settings, httpx.Client]]:
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    with LiveServer(create_app(settings, knowledge)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield settings, c


def report(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           *args: str) -> list[dict[str, Any]]:
    code, out = run(settings, monkeypatch, capsys, "report", "--json", *args)
    assert code == 0
    result: list[dict[str, Any]] = json.loads(out)["rows"]
    return result


def overridden_with(code: str, when: str) -> dict[str, Any]:
    return item("overridden", when=when, overrideReason={"reason": {"code": code}})


BOUNDARY_FEEDBACK = {
    "before-1": "2026-08-31T23:59:59.999999Z",
    "before-2": "2026-09-01T00:30:00+01:00",       # 2026-08-31 23:30 UTC
    "first-instant": "2026-09-01T00:00:00Z",
    "naive-mid": "2026-09-15T12:00:00",           # no zone: UTC
    "east-in": "2026-09-01T09:00:00+09:00",       # 2026-09-01 00:00 UTC
    "last-instant": "2026-09-30T23:59:59.999999Z",
    "west-in": "2026-09-30T18:59:59-05:00",       # 2026-09-30 23:59:59 UTC
    "after-1": "2026-09-30T20:00:00-05:00",       # 2026-10-01 01:00 UTC
    "after-2": "2026-10-01T00:00:00Z",
}


def test_report_days_are_utc_and_both_ends_included(
    fresh: tuple[Settings, httpx.Client], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, client = fresh
    assert post(client, *[overridden_with(code, when) for code, when in BOUNDARY_FEEDBACK.items()]).status_code == 200

    def counted(*args: str) -> set[str]:
        found = report(settings, monkeypatch, capsys, *args)
        return {reason for r in found for reason in r["overrideReasons"]}

    inside = {"first-instant", "naive-mid", "east-in", "last-instant", "west-in"}
    assert counted("--since", "2026-09-01", "--until", "2026-09-30") == inside
    assert counted("--since", "2026-09-01") == inside | {"after-1", "after-2"}
    assert counted("--until", "2026-09-30") == inside | {"before-1", "before-2"}
    assert counted("--since", "2026-09-30", "--until", "2026-09-30") == {"last-instant", "west-in"}
    assert counted("--since", "2026-10-01", "--until", "2026-10-01") == {"after-1", "after-2"}
    assert counted("--since", "2026-08-31", "--until", "2026-08-31") == {"before-1", "before-2"}
    assert counted() == set(BOUNDARY_FEEDBACK)
    code, text = run(settings, monkeypatch, capsys, "report", "--since", "2027-01-01")
    assert code == 0 and "(nothing in this period)" in text


def test_report_until_the_last_representable_day(
    fresh: tuple[Settings, httpx.Client], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, client = fresh
    assert post(client, overridden_with("late", "9999-12-31T12:00:00Z")).status_code == 200
    found = report(settings, monkeypatch, capsys, "--since", "2026-01-01", "--until", "9999-12-31")
    assert [r["overrideReasons"] for r in found] == [{"late": 1}]


def show_card(client: httpx.Client) -> tuple[dict[str, Any], str]:
    """A card shown and audited, and the time now as an outcomeTimestamp."""
    response = client.post(f"/cds-services/{SERVICE}", json=load_scenario(FIRES)["request"])
    assert response.status_code == 200
    card: dict[str, Any] = response.json()["cards"][0]
    wait_for_audit(client, 1)
    return card, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_feedback_in_any_uuid_spelling_joins_its_card(
    fresh: tuple[Settings, httpx.Client], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, client = fresh
    card, today = show_card(client)
    assert post(client, {**item(when=today), "card": "urn:uuid:" + card["uuid"].upper()}).status_code == 200
    [row] = report(settings, monkeypatch, capsys)
    assert row["variant"] != "unknown-card" and (row["shown"], row["accepted"], row["acceptanceRate"]) == (1, 1, 1.0)


def test_a_retried_feedback_is_counted_once(
    fresh: tuple[Settings, httpx.Client], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, client = fresh
    card, today = show_card(client)
    accepted = {**item(when=today), "card": card["uuid"],
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    assert [post(client, accepted).status_code for _ in range(2)] == [200, 200]
    [row] = report(settings, monkeypatch, capsys)
    assert (row["shown"], row["accepted"]) == (1, 1)
    assert row["acceptanceRate"] is not None and row["acceptanceRate"] <= 1.0


# --- PostgreSQL: what SQLite lets through and PostgreSQL refuses ---------------------------------


@pytest.fixture()
def pg_settings(pg_server: PostgresServer, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=pg_server.new_database(), patient_hash_key="test-patient-hash-key",
                    store_user_comments=True)


def test_nul_in_a_comment_is_dropped_the_same_way_on_every_database(client: httpx.Client, settings: Settings) -> None:
    """PostgreSQL text cannot hold NUL, so it is removed before storing, on SQLite too."""
    sent = item("overridden", overrideReason={"userComment": "before\u0000after"})
    assert post(client, sent).status_code == 200
    assert rows(settings, sent["card"])[0]["user_comment"] == "beforeafter"


def test_nul_in_a_comment_is_not_a_database_outage_on_postgresql(
    pg_settings: Settings, knowledge: Knowledge
) -> None:
    with LiveServer(create_app(pg_settings, knowledge)) as server, httpx.Client(base_url=server.url) as client:
        response = post(client, item("overridden", overrideReason={"userComment": "before\u0000after"}))
        assert response.status_code == 200, response.text
        assert post(client, item()).status_code == 200


def test_one_hostile_hook_instance_does_not_stop_the_report_counting_cards(
    pg_settings: Settings, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = load_scenario(FIRES)["request"]
    with LiveServer(create_app(pg_settings, knowledge)) as server, httpx.Client(base_url=server.url) as client:
        hostile = {**request, "hookInstance": "a\u0000b"}
        answer = client.post(f"/cds-services/{SERVICE}", json=hostile)
        # Refused up front (a hookInstance with control characters), or answered and then its
        # audit row refused by PostgreSQL: either way the next card must still be counted.
        assert answer.status_code == 400 or len(answer.json()["cards"]) == 1, answer.text
        wait_for_audit(client, 1, timeout=0.3)
        assert len(client.post(f"/cds-services/{SERVICE}", json=request).json()["cards"]) == 1
        stats = wait_for_audit(client, 1, timeout=1.0)
        assert stats["database"] == "up" and stats["written"] >= 1, stats
    [row] = report(pg_settings, monkeypatch, capsys)
    assert row["shown"] >= 1
