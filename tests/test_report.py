"""`cds-service report` and `cds-service db upgrade` over audited cards and their feedback."""

import json
import time
from typing import Any

import httpx
import pytest

from cds_service.app import create_app
from cds_service.cli import main
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from tests.conftest import LiveServer, load_scenario
from tests.test_audit import FIRES, SERVICE, wait_for_audit


def run(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str]:
    monkeypatch.setenv("CDS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("CDS_DATABASE_URL", settings.database_url)
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def feedback(card: str, outcome: str, when: str, **extra: Any) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": outcome, "outcomeTimestamp": when, **extra}]}


def test_report_counts_shown_accepted_overridden(
    db_settings: Settings, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(db_settings, monkeypatch, capsys, "db", "upgrade")[0] == 0
    reason = {"reason": {"system": "http://example.org/override", "code": "already-tested"}}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        request = load_scenario(FIRES)["request"]
        cards = [client.post(f"/cds-services/{SERVICE}", json=request).json()["cards"][0] for _ in range(4)]
        wait_for_audit(client, 4)
        url = f"/cds-services/{SERVICE}/feedback"
        suggestion = cards[0]["suggestions"][0]["uuid"]
        posts = [
            feedback(cards[0]["uuid"], "accepted", f"{today}T10:00:00Z", acceptedSuggestions=[{"id": suggestion}]),
            feedback(cards[1]["uuid"], "overridden", f"{today}T10:00:00+02:00", overrideReason=reason),
            feedback(cards[2]["uuid"], "overridden", f"{today}T11:00:00Z"),
            feedback("00000000-0000-4000-8000-000000000000", "accepted", "2020-01-01T00:00:00Z"),
        ]
        assert [client.post(url, json=p).status_code for p in posts] == [200] * 4

    code, out = run(db_settings, monkeypatch, capsys, "report", "--json", "--since", today)
    assert code == 0
    [row] = json.loads(out)["rows"]
    variant = row["variant"]
    assert row == {
        "service": SERVICE, "variant": variant, "shown": 4, "accepted": 1, "overridden": 2,
        "overrideReasons": {"http://example.org/override|already-tested": 1, "(no reason given)": 1},
        "acceptanceRate": 0.25,
    }
    everything = json.loads(run(db_settings, monkeypatch, capsys, "report", "--json")[1])["rows"]
    assert {(r["variant"], r["accepted"]) for r in everything} == {(variant, 1), ("unknown-card", 1)}
    old = json.loads(run(db_settings, monkeypatch, capsys, "report", "--json", "--until", "2020-01-01")[1])
    assert [(r["variant"], r["shown"], r["accepted"]) for r in old["rows"]] == [("unknown-card", 0, 1)]

    code, text = run(db_settings, monkeypatch, capsys, "report")
    assert code == 0 and variant in text and "25%" in text and "already-tested x1" in text


def test_report_on_a_database_never_upgraded_says_so(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    assert main(["report"]) == 4
    assert "cds-service db upgrade" in capsys.readouterr().err


def test_text_report_names_override_reasons_as_the_card_worded_them() -> None:
    from cds_service.report import Report, ReportRow, format_report

    system = "https://b12-cds.example.org/fhir/CodeSystem/override-reason"
    row = ReportRow(service=SERVICE, variant="test-b12", shown=2, overridden=1,
                    overrideReasons={f"{system}|patient-declined": 1}, acceptanceRate=0.0)
    text = format_report(Report(since=None, until=None, rows=[row]), {f"{system}|patient-declined": "Patient declined"})
    assert f"overridden: Patient declined ({system}|patient-declined) x1" in text
