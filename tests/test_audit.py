"""The audit of cards shown: what it records, what it never records, and database outages."""

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select

from cds_service.app import create_app
from cds_service.audit import AuditLog
from cds_service.evaluation import evaluate
from cds_service.knowledge import Knowledge
from cds_service.services import service_definitions
from cds_service.settings import Settings
from cds_service.storage import Storage, create_db_engine
from cds_service.tables import card_audit, naive_utc
from tests.conftest import LiveServer, load_scenario
from tests.fixture_files import FIXTURES
from tests.postgres import PostgresServer

FIRES = FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json"
SILENT = FIXTURES / "patient-view" / "03-marathon-no-card.json"
SERVICE = "b12-myalgia-patient-view"


def hook(client: httpx.Client, path: Path) -> dict[str, Any]:
    response = client.post(f"/cds-services/{SERVICE}", json=load_scenario(path)["request"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_audit(client: httpx.Client, written: int, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = client.get("/healthz").json()["audit"]
        if stats["written"] >= written or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def audit_rows(settings: Settings) -> list[dict[str, Any]]:
    engine = create_db_engine(settings)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(select(card_audit))]
    engine.dispose()
    return rows


def test_every_card_is_audited_without_patient_id(db_settings: Settings, knowledge: Knowledge) -> None:
    request = load_scenario(FIRES)["request"]
    with LiveServer(create_app(db_settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        cards = hook(client, FIRES)["cards"]
        assert hook(client, SILENT)["cards"] == []
        assert wait_for_audit(client, 1)["written"] == 1
    [row] = audit_rows(db_settings)
    assert row["card_uuid"] == cards[0]["uuid"]
    assert row["service_id"] == SERVICE
    assert row["hook_instance"] == request["hookInstance"]
    assert row["knowledge_version"] == knowledge.version
    assert "risk:metformin" in row["criteria"] and row["variant"]
    key = db_settings.patient_hash_key.get_secret_value().encode() if db_settings.patient_hash_key else b""
    patient = request["context"]["patientId"]
    assert row["patient_hash"] == hmac.new(key, patient.encode(), hashlib.sha256).hexdigest()
    assert patient not in repr(row)


def test_generated_hash_key_is_kept_in_data_dir(tmp_path: Path, knowledge: Knowledge) -> None:
    settings = Settings(data_dir=tmp_path)
    for _ in range(2):  # a restart hashes the same patient the same way
        with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
            hook(client, FIRES)
            wait_for_audit(client, 1)
    first, second = audit_rows(settings)
    assert first["patient_hash"] == second["patient_hash"]
    assert (tmp_path / "patient-hash.key").stat().st_mode & 0o777 == 0o600


# A worker process: reads a data directory per line, answers with the key hash_key() gives there.
_KEY_READER = """
import sys
from pathlib import Path
from cds_service.audit import hash_key
from cds_service.settings import Settings
print("ready", flush=True)
for line in sys.stdin:
    print(hash_key(Settings(data_dir=Path(line.strip()))).hex(), flush=True)
"""


def test_workers_starting_together_share_one_generated_key(tmp_path: Path) -> None:
    """`serve --workers N` starts N processes that each read (or make) the key file at once. Before,
    one could open the file another had just created and not yet written, and hash every patient
    id of its life under an empty key: guessable, and unlike its sibling's hashes."""
    env = {k: v for k, v in os.environ.items() if k != "CDS_PATIENT_HASH_KEY"}
    workers = [subprocess.Popen([sys.executable, "-c", _KEY_READER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env) for _ in range(6)]
    try:
        assert all(w.stdout and w.stdout.readline().strip() == "ready" for w in workers)
        for attempt in range(30):
            data_dir = tmp_path / f"start-{attempt}"
            for w in workers:  # every process is told at (nearly) the same moment
                assert w.stdin
                w.stdin.write(f"{data_dir}\n")
                w.stdin.flush()
            keys = {w.stdout.readline().strip() for w in workers if w.stdout}
            assert len(keys) == 1 and "" not in keys, f"start {attempt}: {len(keys)} different keys"
            assert bytes.fromhex(keys.pop()).decode() == (data_dir / "patient-hash.key").read_text().strip()
            assert [p.name for p in data_dir.iterdir()] == ["patient-hash.key"]  # no draft left behind
    finally:
        for w in workers:
            w.kill()
            w.wait()


def test_an_empty_key_file_stops_the_service_instead_of_hashing_with_no_key(tmp_path: Path) -> None:
    (tmp_path / "patient-hash.key").write_text("")
    env = {**os.environ, "CDS_DATA_DIR": str(tmp_path)}
    env.pop("CDS_PATIENT_HASH_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "0"], env=env, timeout=60,
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 2
    [line] = [ln for ln in proc.stderr.splitlines() if not ln.startswith("{")]  # one line besides the JSON log
    assert line.startswith("cds-service: configuration error: CDS_DATA_DIR: ") and "patient-hash.key is empty" in line


def test_database_outage_never_fails_a_hook_call(
    pg_server: PostgresServer, tmp_path: Path, knowledge: Knowledge
) -> None:
    """PostgreSQL stops: hooks still answer at once, feedback says 503, the audit buffers up to
    its bound and counts what it drops; PostgreSQL returns: the buffer is written."""
    settings = Settings(data_dir=tmp_path, database_url=pg_server.new_database(), audit_queue_size=3,
                        patient_hash_key="test-patient-hash-key", db_timeout=1)
    with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        hook(client, FIRES)
        wait_for_audit(client, 1)
        pg_server.stop()
        try:
            started = time.perf_counter()
            assert len(hook(client, FIRES)["cards"]) == 1
            # Once the writer has seen the outage it holds that record and retries it; the queue
            # (3) then fills and the next records are dropped, whatever the thread timing.
            deadline = time.monotonic() + 10
            while client.get("/healthz").json()["audit"]["database"] != "down" and time.monotonic() < deadline:
                time.sleep(0.02)
            for _ in range(4):
                assert len(hook(client, FIRES)["cards"]) == 1
            hooks_took = time.perf_counter() - started
            started = time.perf_counter()
            feedback = client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [
                {"card": "7e63f8ba-b143-40f8-9065-939f48997563", "outcome": "accepted",
                 "outcomeTimestamp": "2026-11-25T02:00:14Z"}]}, timeout=30)
            feedback_took = time.perf_counter() - started
            assert feedback.status_code == 503
            assert feedback.json()["error"] == "database_unavailable"
            stats = client.get("/healthz").json()["audit"]
            assert stats["database"] == "down"
            assert stats["dropped"] >= 1 and stats["written"] == 1
        finally:
            pg_server.start()
        stats = wait_for_audit(client, 1 + 5 - stats["dropped"])
        assert stats["database"] == "up" and stats["queued"] == 0
    assert len(audit_rows(settings)) == stats["written"] == 6 - stats["dropped"]
    print(f"\n5 hook calls during the outage: {hooks_took:.3f} s; feedback 503 after {feedback_took:.2f} s")


def test_read_only_database_never_fails_a_hook_call(tmp_path: Path, knowledge: Knowledge) -> None:
    """The database file is migrated, then opened read-only (root ignores chmod, so SQLite's
    mode=ro stands in): hooks answer 200 with their cards at once and the audit queues, feedback
    says 503 within CDS_DB_TIMEOUT + 1 s; reopened writable, the retried feedback is kept and
    reported."""
    db = tmp_path / "cds.sqlite3"
    writable = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key", db_timeout=1)
    storage = Storage(writable)
    storage.ensure_schema()
    storage.close()
    read_only = writable.model_copy(update={"database_url": f"sqlite:///file:{db}?mode=ro&uri=true"})
    with LiveServer(create_app(read_only, knowledge)) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        started = time.perf_counter()
        cards = [hook(client, FIRES)["cards"] for _ in range(3)]
        hooks_took = time.perf_counter() - started
        assert all(len(c) == 1 for c in cards) and hooks_took < 1.5
        started = time.perf_counter()
        refused = client.post(f"/cds-services/{SERVICE}/feedback", json=_feedback(cards[0][0]["uuid"]))
        feedback_took = time.perf_counter() - started
        assert refused.status_code == 503 and refused.json()["error"] == "database_unavailable"
        assert feedback_took < read_only.db_timeout + 1
        deadline = time.monotonic() + 5
        while (stats := client.get("/healthz").json()["audit"])["database"] != "down" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats == {"queued": 3, "written": 0, "dropped": 0, "database": "down"}
    with LiveServer(create_app(writable, knowledge)) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        stored = client.post(f"/cds-services/{SERVICE}/feedback", json=_feedback(cards[0][0]["uuid"]))
        assert stored.status_code == 200 and stored.json() == {}
    env = {**os.environ, "CDS_DATA_DIR": str(tmp_path), "CDS_PATIENT_HASH_KEY": "test-patient-hash-key"}
    env.pop("CDS_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "cds_service", "report", "--json"], env=env, timeout=60,
                          check=False, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    [row] = json.loads(proc.stdout)["rows"]  # the audit queued while read-only was lost at stop
    assert (row["service"], row["variant"], row["accepted"]) == (SERVICE, "unknown-card", 1)
    print(f"\n3 hook calls on a read-only database: {hooks_took:.3f} s; feedback 503 after {feedback_took:.2f} s")


def _feedback(card: str) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-11-25T02:00:14Z"}]}


def test_a_record_the_database_refuses_as_data_is_dropped_alone(pg_server: PostgresServer, tmp_path: Path) -> None:
    """A row PostgreSQL refuses (a NUL in text, put straight on the queue past record()'s cleaning)
    is dropped and counted; the rest of its batch is written and the writer carries on."""
    settings = Settings(data_dir=tmp_path, database_url=pg_server.new_database(), patient_hash_key="test-patient-hash-key")
    storage = Storage(settings)
    audit = AuditLog(storage, b"k", "test", 100)
    row = {"service_id": "b12-myalgia-patient-view", "shown_at": naive_utc(datetime.now(UTC)), "variant": "test-b12",
           "criteria": [], "knowledge_version": "test", "patient_hash": "0" * 64}
    for i, hook_instance in enumerate(["ok-1", "bad\u0000one", "ok-2"]):
        audit.queue.put({**row, "hook_instance": hook_instance, "card_uuid": f"card-{i}"})
    audit.start()
    try:
        deadline = time.monotonic() + 10
        while audit.stats()["written"] + audit.stats()["dropped"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert audit.stats() == {"queued": 0, "written": 2, "dropped": 1, "database": "up"}
    finally:
        audit.stop()
        storage.close()
    assert sorted(r["hook_instance"] for r in audit_rows(settings)) == ["ok-1", "ok-2"]


class _CountingStorage(Storage):
    """A real SQLite Storage that counts the transactions the audit writer opens."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.batches: list[int] = []

    def add_audit(self, rows: list[dict[str, Any]]) -> None:
        self.batches.append(len(rows))
        super().add_audit(rows)


def test_records_arriving_together_are_written_in_few_transactions(tmp_path: Path) -> None:
    """Cards returned at hundreds a second are gathered for a moment and written together (one
    transaction each would cost the serving process), and stopping flushes what is queued."""
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    storage = _CountingStorage(settings)
    audit = AuditLog(storage, b"k", "test", 1_000)
    row = {"service_id": "b12-myalgia-patient-view", "hook_instance": "h", "variant": "test-b12",
           "criteria": [], "knowledge_version": "test", "patient_hash": "0" * 64}
    audit.start()
    try:
        for i in range(300):  # a steady stream (about 800 a second), as from a server under load
            audit.queue.put({**row, "shown_at": naive_utc(datetime.now(UTC)), "card_uuid": f"card-{i}"})
            time.sleep(0.001)
    finally:
        audit.stop()
        storage.close()
    assert audit.stats()["written"] == 300 and audit.stats()["dropped"] == 0
    assert sum(storage.batches) == 300 and len(storage.batches) <= 30, storage.batches
    assert len(audit_rows(settings)) == 300


class _FailingOnceStorage(Storage):
    """Fails the first write with what is not a database error (a schema a newer release wrote,
    a bug in a driver): the writer must live on and retry, as for an outage."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.failed = False

    def add_audit(self, rows: list[dict[str, Any]]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unforeseen")
        super().add_audit(rows)


def test_the_writer_survives_a_failure_that_is_not_a_database_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    storage = _FailingOnceStorage(settings)
    audit = AuditLog(storage, b"k", "test", 1_000)
    row = {"service_id": "b12-myalgia-patient-view", "hook_instance": "h", "variant": "test-b12", "criteria": [],
           "knowledge_version": "test", "patient_hash": "0" * 64, "shown_at": naive_utc(datetime.now(UTC))}
    audit.start()
    try:
        audit.queue.put({**row, "card_uuid": "card-1"})
        deadline = time.monotonic() + 10
        while audit.stats()["written"] < 1 and time.monotonic() < deadline:  # retried after RETRY_MIN
            time.sleep(0.05)
    finally:
        audit.stop()
        storage.close()
    assert storage.failed and audit.stats()["written"] == 1 and audit.stats()["dropped"] == 0
    assert len(audit_rows(settings)) == 1


def test_a_write_that_hangs_loses_nothing_uncounted(tmp_path: Path) -> None:
    """A database that stops answering without an error (a frozen host, a cut network): the batch
    being written is still counted as queued, health says down once the write has waited past the
    database timeout, and stopping counts every record not written as lost."""
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key", db_timeout=0.3)
    storage = Storage(settings)
    storage.engine.dispose()
    storage.engine = create_engine(storage.engine.url, connect_args={"timeout": 60})  # SQLite waits out the lock
    storage.ensure_schema()
    blocker = sqlite3.connect(str(tmp_path / "cds.sqlite3"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer's insert waits
    audit = AuditLog(storage, b"k", "test", 1_000)
    row = {"service_id": "b12-myalgia-patient-view", "hook_instance": "h", "variant": "test-b12", "criteria": [],
           "knowledge_version": "test", "patient_hash": "0" * 64, "shown_at": naive_utc(datetime.now(UTC))}
    audit.start()
    try:
        for i in range(20):
            audit.queue.put({**row, "card_uuid": f"card-{i}"})
        deadline = time.monotonic() + 10
        while audit.queue.qsize() and time.monotonic() < deadline:  # the writer has taken them
            time.sleep(0.02)
        time.sleep(0.5)
        assert audit.queue.qsize() == 0
        assert audit.stats() == {"queued": 20, "written": 0, "dropped": 0, "database": "down"}
        audit.stop(timeout=0.2)
        assert audit.stats()["dropped"] == 20
    finally:
        blocker.rollback()
        blocker.close()


def test_health_tells_of_a_database_that_failed_at_start_and_of_a_removed_sqlite_file(
    tmp_path: Path, knowledge: Knowledge
) -> None:
    """A data directory the service cannot write: down from the start, not 'up' until the first card.
    The SQLite file removed while running (SQLite writes on into the deleted file, lost at restart): missing."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory's database should go")
    unusable = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key", db_timeout=1,
                        database_url=f"sqlite:///{blocked}/cds.sqlite3")
    with LiveServer(create_app(unusable, knowledge)) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        assert client.get("/healthz").json()["audit"]["database"] == "down"
    fine = Settings(data_dir=tmp_path / "data", patient_hash_key="test-patient-hash-key", db_timeout=1)
    (tmp_path / "data").mkdir()
    with LiveServer(create_app(fine, knowledge)) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        assert client.get("/healthz").json()["audit"]["database"] == "up"
        for path in (tmp_path / "data").glob("cds.sqlite3*"):
            path.unlink()
        assert client.get("/healthz").json()["audit"]["database"] == "missing"
        # feedback acknowledged now would vanish at the next start: refused, so the client retries
        feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                                  "outcomeTimestamp": "2026-11-27T10:00:00Z"}]}
        refused = client.post("/cds-services/b12-myalgia-patient-view/feedback", json=feedback)
        assert refused.status_code == 503 and refused.json()["error"]


def test_an_order_select_card_lists_each_criterion_once(knowledge: Knowledge) -> None:
    """The order's outcome, what was ordered, then the pattern's criteria, none twice (found in the
    issue audit: the pattern's own 'outcome:card' followed the order's)."""
    service = service_definitions(knowledge)["b12-myalgia-order-select"]
    request = load_scenario(FIXTURES / "order-select" / "01-ibuprofen-for-pattern-patient-card.json")["request"]
    result = evaluate(service, request, knowledge, datetime.now().astimezone())
    assert result.response.cards and result.assessment is not None
    criteria = result.assessment.criteria
    assert criteria[0] == "outcome:card" and criteria.count("outcome:card") == 1
    assert len(criteria) == len(set(criteria)) and "ordered:analgesic" in criteria
    assert any(c.startswith("trigger:") for c in criteria)
