"""`cds-service report` and `cds-service db upgrade` over audited cards and their feedback."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.app import create_app
from cds_service.cli import main
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from tests.conftest import LiveServer, load_scenario
from tests.postgres import PostgresServer
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


def test_each_card_counts_once_by_its_latest_feedback(
    db_settings: Settings, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Changed minds and retries: the latest outcomeTimestamp decides (a tie: the later received),
    and the card counts in the period it was shown, whenever the feedback came."""
    system = "http://example.org/override"
    today = time.strftime("%Y-%m-%d", time.gmtime())
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))  # outcomes later than now are taken as now

    def reason(code: str) -> dict[str, Any]:
        return {"overrideReason": {"reason": {"system": system, "code": code}}}

    def rows(*args: str) -> list[tuple[Any, ...]]:
        out = run(db_settings, monkeypatch, capsys, "report", "--json", *args)[1]
        return [(r["shown"], r["accepted"], r["overridden"], r["overrideReasons"], r["acceptanceRate"])
                for r in json.loads(out)["rows"]]

    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        card = client.post(f"/cds-services/{SERVICE}", json=load_scenario(FIRES)["request"]).json()["cards"][0]
        wait_for_audit(client, 1)
        url, uuid = f"/cds-services/{SERVICE}/feedback", card["uuid"]
        posts = [
            feedback(uuid, "accepted", f"{yesterday}T10:00:00Z"),
            feedback(uuid, "accepted", f"{yesterday}T10:01:00Z"),
            feedback(uuid, "overridden", f"{yesterday}T10:02:00Z", **reason("first-reason")),
            feedback(uuid, "overridden", f"{yesterday}T10:03:00Z", **reason("latest-reason")),
            feedback(uuid, "accepted", f"{yesterday}T00:00:00Z"),  # arrives last, but is the oldest
        ]
        assert [client.post(url, json=p).status_code for p in posts] == [200] * 5
        overridden = (1, 0, 1, {f"{system}|latest-reason": 1}, 0.0)
        assert rows() == rows("--since", today, "--until", today) == [overridden]
        assert rows("--since", tomorrow) == []

        same_time = f"{yesterday}T10:03:00Z"  # a tie on outcomeTimestamp: the one received later wins
        assert client.post(url, json=feedback(uuid, "accepted", same_time)).status_code == 200
        assert rows() == [(1, 1, 0, {}, 1.0)]
        assert client.post(url, json=feedback(uuid, "overridden", same_time, **reason("again"))).status_code == 200
        assert rows() == [(1, 0, 1, {f"{system}|again": 1}, 0.0)]


def test_feedback_counts_under_the_service_that_returned_the_card(
    db_settings: Settings, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Feedback posted to another service's endpoint is attributed through the audit; feedback
    for a card never audited is still kept, under the service it was posted to."""
    other = "b12-myalgia-order-sign"
    unknown = "00000000-0000-4000-8000-000000000000"
    today = time.strftime("%Y-%m-%d", time.gmtime())
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        card = client.post(f"/cds-services/{SERVICE}", json=load_scenario(FIRES)["request"]).json()["cards"][0]
        wait_for_audit(client, 1)
        for body in (feedback(card["uuid"], "accepted", f"{today}T10:00:00Z"),
                     feedback(unknown, "overridden", f"{today}T10:00:00Z")):
            assert client.post(f"/cds-services/{other}/feedback", json=body).status_code == 200
    out = run(db_settings, monkeypatch, capsys, "report", "--json")[1]
    found = [(r["service"], r["variant"] == "unknown-card", r["shown"], r["accepted"], r["overridden"])
             for r in json.loads(out)["rows"]]
    assert found == [(other, True, 0, 0, 1), (SERVICE, False, 1, 1, 0)]


def test_sqlite_and_postgresql_print_the_same_json_report(
    pg_server: PostgresServer, tmp_path: Path, knowledge: Knowledge, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same cards and feedback give the same bytes on either database. Before, the override
    reasons came in the order each database grouped them (PostgreSQL put '(no reason given)' last,
    SQLite first), so a diff of two reports, or of one report before and after a migration, showed
    changes where there were none."""
    system = "https://b12-cds.example.org/fhir/CodeSystem/override-reason"
    outputs = []
    for url in (None, pg_server.new_database()):
        settings = Settings(data_dir=tmp_path / ("pg" if url else "sqlite"), database_url=url,
                            patient_hash_key="test-patient-hash-key")
        with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
            cards = [client.post(f"/cds-services/{SERVICE}", json=load_scenario(FIRES)["request"]).json()["cards"][0]
                     for _ in range(4)]
            wait_for_audit(client, 4)
            reasons = [{"overrideReason": {"reason": {"system": system, "code": code}}}
                       for code in ("patient-declined", "other-cause")] + [{}, {}]
            for card, reason in zip(cards, reasons, strict=True):
                body = feedback(card["uuid"], "overridden", "2026-11-25T10:00:00Z", **reason)
                assert client.post(f"/cds-services/{SERVICE}/feedback", json=body).status_code == 200
        monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
        outputs.append(run(settings, monkeypatch, capsys, "report", "--json")[1])
    assert outputs[0] == outputs[1]
    [row] = json.loads(outputs[0])["rows"]
    assert list(row["overrideReasons"].items()) == [
        ("(no reason given)", 2), (f"{system}|other-cause", 1), (f"{system}|patient-declined", 1)]


def test_report_and_db_upgrade_may_take_longer_than_the_feedback_write_timeout(
    pg_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CDS_DB_TIMEOUT bounds the service's own statements on PostgreSQL; it bounded the operator's
    commands too, so `report` over a few million cards (11 s here) failed after 2 s with 'database
    error (OperationalError); is it up and upgraded'. Here a statement is held past the timeout by
    a lock another session keeps for 1.5 s: both commands wait for it and succeed."""
    import threading

    import psycopg

    from cds_service.storage import MIGRATION_LOCK_KEY

    url = pg_server.new_database()
    settings = Settings(data_dir=tmp_path, database_url=url, patient_hash_key="test-patient-hash-key", db_timeout=0.5)
    monkeypatch.setenv("CDS_DB_TIMEOUT", "0.5")
    assert run(settings, monkeypatch, capsys, "db", "upgrade")[0] == 0
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    for lock, command in (("LOCK TABLE card_audit IN ACCESS EXCLUSIVE MODE", ["report"]),
                          (f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})", ["db", "upgrade"])):
        held = threading.Event()

        def hold(statement: str = lock, held: threading.Event = held) -> None:
            with psycopg.connect(conninfo) as connection, connection.transaction():
                connection.execute(statement)
                held.set()
                time.sleep(1.5)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
        started = time.monotonic()
        code = run(settings, monkeypatch, capsys, *command)[0]
        holder.join()
        assert code == 0, lock
        assert time.monotonic() - started > 1.0  # it did wait past CDS_DB_TIMEOUT


def test_report_on_a_database_never_upgraded_says_so(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    (tmp_path / "cds.sqlite3").touch()  # a database, never upgraded (none at all: test_report_where_no_database_is)
    assert main(["report"]) == 4
    assert "cds-service db upgrade" in capsys.readouterr().err


def test_text_report_names_override_reasons_as_the_card_worded_them() -> None:
    from cds_service.report import Report, ReportRow, format_report

    system = "https://b12-cds.example.org/fhir/CodeSystem/override-reason"
    row = ReportRow(service=SERVICE, variant="test-b12", shown=2, overridden=1,
                    overrideReasons={f"{system}|patient-declined": 1}, acceptanceRate=0.0)
    text = format_report(Report(since=None, until=None, rows=[row]), {f"{system}|patient-declined": "Patient declined"})
    assert f"overridden: Patient declined ({system}|patient-declined) x1" in text


def test_a_period_that_ends_before_it_starts_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty report would read as 'no cards shown'; swapped dates are a mistake to say, not to answer."""
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    assert run(settings, monkeypatch, capsys, "db", "upgrade")[0] == 0
    with pytest.raises(SystemExit) as exited:
        main(["report", "--since", "2026-11-02", "--until", "2026-11-01"])
    assert exited.value.code == 2
    assert "--since 2026-11-02 is after --until 2026-11-01" in capsys.readouterr().err
    code, out = run(settings, monkeypatch, capsys, "report", "--since", "2026-11-01", "--until", "2026-11-01")
    assert code == 0 and "2026-11-01 .. 2026-11-01" in out


def test_report_where_no_database_is_creates_none(tmp_path: Path) -> None:
    """Run from the wrong directory: it says where it looked, and leaves no empty database behind
    (which `db upgrade`, suggested before, would have filled with an empty schema)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    proc = subprocess.run([sys.executable, "-m", "cds_service", "report"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 4 and "no database at" in proc.stderr and "CDS_DATA_DIR" in proc.stderr
    assert list(tmp_path.iterdir()) == []
