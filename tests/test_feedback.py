"""POST /cds-services/{id}/feedback over real HTTP, stored in real SQLite and PostgreSQL."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from cds_service.storage import create_db_engine
from cds_service.tables import card_feedback
from tests.conftest import LiveServer
from tests.fixture_files import FIXTURES
from tests.test_report import run

# Captured from the CDS Hooks sandbox (shared/reference/sandbox-requests/feedback-*.json).
SANDBOX_FEEDBACK = sorted((FIXTURES / "sandbox-feedback").glob("feedback-*.json"))
SERVICE = "b12-myalgia-patient-view"
URL = f"/cds-services/{SERVICE}/feedback"


def item(outcome: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {"card": str(uuid.uuid4()), "outcome": outcome, "outcomeTimestamp": "2026-11-25T02:00:14.216Z", **extra}


def stored(settings: Settings) -> int:
    engine = create_db_engine(settings)
    with engine.connect() as connection:
        count: int = connection.execute(select(func.count()).select_from(card_feedback)).scalar_one()
    engine.dispose()
    return count


def test_sandbox_feedback_is_stored_and_reported_after_restart(
    db_settings: Settings, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SANDBOX_FEEDBACK, "the sandbox's captured feedback bodies are missing"
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        for path in SANDBOX_FEEDBACK:
            response = client.post(URL, content=path.read_bytes(), headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            assert response.json() == {}
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        assert client.post(URL, json={"feedback": [item()]}).status_code == 200
    code, out = run(db_settings, monkeypatch, capsys, "report", "--json")
    assert code == 0
    report = json.loads(out)
    [row] = report["rows"]
    assert row["service"] == SERVICE and row["variant"] == "unknown-card"
    # The sandbox accepted card bc168acf… and then overrode it: its latest feedback decides.
    assert (row["accepted"], row["overridden"]) == (2, 1)
    assert row["overrideReasons"] == {"http://example.org/override|not-indicated": 1}


def test_concurrent_feedback_all_lands(db_settings: Settings, knowledge: Knowledge) -> None:
    threads, posts_each, items_each = 20, 10, 2
    with LiveServer(create_app(db_settings, knowledge)) as live:
        def send(_: int) -> list[int]:
            with httpx.Client(base_url=live.url, timeout=30) as client:
                return [
                    client.post(URL, json={"feedback": [item(), item("overridden")]}).status_code
                    for _ in range(posts_each)
                ]

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            codes = [code for batch in pool.map(send, range(threads)) for code in batch]
        elapsed = time.perf_counter() - started
    assert codes == [200] * threads * posts_each
    assert stored(db_settings) == threads * posts_each * items_each
    kind = "postgresql" if db_settings.database_url else "sqlite"
    print(f"\n{len(codes)} feedback posts from {threads} threads on {kind}: {elapsed:.2f} s")


@pytest.mark.parametrize("body, where", [
    (b"not json", None),
    (b"[]", None),
    (b"{}", "feedback"),
    (b'{"feedback": [{"card": "Patient/secret-123\\n", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}',
     "feedback.0.card"),
    (b'{"feedback": [{"card": "secret-' + b"x" * 64 + b'", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}',
     "feedback.0.card"),
    ((b'{"feedback": [{"card": "7e63f8ba-b143-40f8-9065-939f48997563", "outcome": "maybe-secret", '
      b'"outcomeTimestamp": "2026-01-01T00:00:00Z"}]}'), "feedback.0.outcome"),
    (b'{"feedback": [{"card": "7e63f8ba-b143-40f8-9065-939f48997563", "outcome": "accepted"}]}',
     "feedback.0.outcomeTimestamp"),
    ((b'{"feedback": [{"card": "7e63f8ba-b143-40f8-9065-939f48997563", "outcome": "overridden", '
      b'"outcomeTimestamp": "yesterday-secret"}]}'), "feedback.0.outcomeTimestamp"),
])
def test_bad_feedback_is_400_without_echo(client: httpx.Client, body: bytes, where: str | None) -> None:
    response = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "secret" not in response.text
    if where:
        assert where in [d["loc"] for d in response.json()["details"]]


def test_a_card_id_that_is_no_uuid_is_stored_and_reported_as_never_audited(
    db_settings: Settings, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CDS Hooks 2.0 asks only for a string: one item with "card-1" no longer refuses the whole batch.
    64 characters is the most the column holds (PostgreSQL's VARCHAR(64) enforces it)."""
    odd = ["card-1", "urn:oid:1.2.3", "Ünïcödé card", "c" * 64]
    items = [item(), *(item("overridden", card=card) for card in odd)]
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        response = client.post(URL, json={"feedback": items})
        assert response.status_code == 200, response.text
        for card in ("", "   ", "tab\there", 5, None, "c" * 65):
            refused = client.post(URL, json={"feedback": [item(), item(card=card)]})
            assert refused.status_code == 400 and [d["loc"] for d in refused.json()["details"]] == ["feedback.1.card"]
    engine = create_db_engine(db_settings)
    with engine.connect() as connection:
        cards = connection.execute(select(card_feedback.c.card_uuid).order_by(card_feedback.c.id)).scalars().all()
    engine.dispose()
    assert cards == [items[0]["card"], *odd]  # the refused batches stored nothing
    code, out = run(db_settings, monkeypatch, capsys, "report", "--json")
    [row] = json.loads(out)["rows"]
    assert code == 0 and row["variant"] == "unknown-card" and (row["accepted"], row["overridden"]) == (1, 4)


def test_empty_feedback_is_200_and_stores_nothing(db_settings: Settings, knowledge: Knowledge) -> None:
    """The spec's answer to feedback is 200; an empty list has nothing to refuse."""
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        response = client.post(URL, json={"feedback": []})
        assert response.status_code == 200 and response.json() == {}
        assert client.post(URL, json={"feedback": [item()]}).status_code == 200
    assert stored(db_settings) == 1


def test_feedback_for_unknown_service_is_404(client: httpx.Client) -> None:
    response = client.post("/cds-services/no-such-service/feedback", json={"feedback": [item()]})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_feedback_must_be_json(client: httpx.Client) -> None:
    response = client.post(URL, content=b"feedback", headers={"content-type": "text/plain"})
    assert response.status_code == 415
