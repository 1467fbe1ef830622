"""Schema migrations on real SQLite and PostgreSQL, including many workers starting at once."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from cds_service.errors import ServiceUnavailable
from cds_service.feedback import feedback_rows, parse_feedback, store_feedback
from cds_service.settings import Settings
from cds_service.storage import Storage, WriteHandoff, create_db_engine, describe_db_error, sqlite_file
from cds_service.tables import card_feedback
from tests.fixture_files import FIXTURES

STARTERS = 6


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        env["CDS_DATABASE_URL"] = settings.database_url
    return env


def test_concurrent_first_starts_all_upgrade(db_settings: Settings) -> None:
    """`--workers N` and several hosts start together on an empty database: every one succeeds."""
    command = [sys.executable, "-m", "cds_service", "db", "upgrade"]

    def start(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, check=False, env=_env(db_settings), capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(STARTERS) as pool:
        results = list(pool.map(start, range(STARTERS)))
    failures = [r.stderr[-400:] for r in results if r.returncode != 0]
    assert failures == []
    engine = create_db_engine(db_settings)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"card_audit", "card_feedback", "alembic_version"} <= tables
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert len(versions) == 1
    finally:
        engine.dispose()


def test_a_migration_cut_short_leaves_no_half_schema(db_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """All or nothing on both databases: Python's sqlite3 would commit each CREATE on its own, and a
    first start that failed midway (disk full) left tables every later upgrade tripped over."""
    from alembic.operations import Operations

    real = Operations.create_index
    calls = 0

    def failing_second_index(self: Operations, *args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk full (simulated)")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Operations, "create_index", failing_second_index)
    storage = Storage(db_settings)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            storage.ensure_schema()
        assert inspect(storage.engine).get_table_names() == []
        monkeypatch.setattr(Operations, "create_index", real)
        storage.ensure_schema()  # the next start applies the whole schema
        assert {"card_audit", "card_feedback", "token_use", "alembic_version"} <= set(inspect(storage.engine).get_table_names())
    finally:
        storage.close()


def test_a_database_a_newer_release_migrated_is_a_database_error(db_settings: Settings) -> None:
    """An unknown revision is reported as the database being unusable (503s, the writer retries), not
    as an unforeseen failure that stopped the audit writer and answered feedback with a 500."""
    storage = Storage(db_settings)
    try:
        storage.ensure_schema()
        with storage.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        storage._ready = False
        with pytest.raises(OperationalError) as raised:
            storage.ensure_schema()
        assert "9999" in describe_db_error(raised.value)
    finally:
        storage.close()


def test_an_in_memory_sqlite_database_gets_its_schema(tmp_path: Path) -> None:
    """The migration runs on the engine's own connection: a second engine on `sqlite://` would be
    another, empty database (found in the diff review)."""
    storage = Storage(Settings(data_dir=tmp_path, database_url="sqlite://", patient_hash_key="test-patient-hash-key"))
    try:
        storage.ensure_schema()
        assert storage.claim_token("a" * 64, datetime.now(UTC) + timedelta(minutes=5)) is True
    finally:
        storage.close()


def test_a_current_schema_is_confirmed_without_the_write_lock(tmp_path: Path) -> None:
    """Every worker confirms the schema at start: while another process holds SQLite's write lock,
    a current schema is read and confirmed, not waited on (found in the diff review: it waited the
    busy timeout and could fail)."""
    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key", db_timeout=0.5)
    first = Storage(settings)
    first.ensure_schema()
    first.close()
    writer = sqlite3.connect(str(tmp_path / "cds.sqlite3"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        second = Storage(settings)
        started = time.monotonic()
        second.ensure_schema()
        assert time.monotonic() - started < 0.5
        second.close()
    finally:
        writer.rollback()
        writer.close()


def test_sqlite_lock_file_sits_beside_the_database_for_plain_paths_and_uris() -> None:
    assert sqlite_file(make_url("sqlite:////srv/cds/cds.sqlite3")) == "/srv/cds/cds.sqlite3"
    assert sqlite_file(make_url("sqlite:///file:/srv/cds/cds.sqlite3?mode=ro&uri=true")) == "/srv/cds/cds.sqlite3"
    assert sqlite_file(make_url("sqlite://")) is None
    assert sqlite_file(make_url("sqlite:///:memory:")) is None
    assert sqlite_file(make_url("postgresql+psycopg://u@h/db")) is None


def _rows() -> list[dict[str, object]]:
    body = (FIXTURES / "sandbox-feedback" / "feedback-overridden-dismiss.json").read_bytes()
    return feedback_rows("b12-myalgia-patient-view", parse_feedback(body))


def _stored(storage: Storage) -> int:
    with storage.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(card_feedback)).scalar_one())


def test_a_write_its_caller_stopped_waiting_for_is_rolled_back(db_settings: Settings) -> None:
    storage = Storage(db_settings)
    try:
        handoff = WriteHandoff()
        assert handoff.abandon()
        assert storage.add_feedback(_rows(), handoff) is False and _stored(storage) == 0
        committing = WriteHandoff()
        assert storage.add_feedback(_rows(), committing) is True and _stored(storage) == 1
        assert committing.abandon() is False  # too late to abandon: the caller waits for it instead
    finally:
        storage.close()


class _HeldUp(Storage):
    """A database that answers only once released: a write queued behind others, or a lock held."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = threading.Event()
        self.done = threading.Event()

    def add_feedback(self, rows: list[dict[str, object]], handoff: WriteHandoff | None = None) -> bool:
        self.release.wait(10)
        try:
            return super().add_feedback(rows, handoff)
        finally:
            self.done.set()


def test_feedback_answered_503_is_never_stored_later(db_settings: Settings) -> None:
    """Found by the attacker review: under load, a call timed out with 503 while its write, still
    queued, committed afterwards, so the client's retry stored the feedback twice."""
    storage = _HeldUp(db_settings)
    storage.timeout = 0.2
    try:
        with pytest.raises(ServiceUnavailable):
            asyncio.run(store_feedback(storage, _rows()))
        storage.release.set()
        assert storage.done.wait(10)
        assert _stored(storage) == 0
    finally:
        storage.close()


def test_a_database_failure_names_its_cause_and_no_values(tmp_path: Path) -> None:
    """`db upgrade` against a server that refuses: the driver's reason, not a circular hint; a
    constraint failure: its class and SQLSTATE only, never the row it quotes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_DATABASE_URL"] = "postgresql+psycopg://cds@127.0.0.1:1/cds"  # port 1: nothing listens
    proc = subprocess.run([sys.executable, "-m", "cds_service", "db", "upgrade"], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert "Connection refused" in proc.stderr and "db upgrade" not in proc.stderr, proc.stderr
    engine = create_db_engine(Settings(data_dir=tmp_path))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
            connection.execute(text("INSERT INTO t VALUES ('Maria Metformin')"))
        with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES ('Maria Metformin')"))
    finally:
        engine.dispose()
    assert describe_db_error(raised.value) == "IntegrityError"
