"""Schema migrations on real SQLite and PostgreSQL, including many workers starting at once."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from cds_service.settings import Settings
from cds_service.storage import create_db_engine, sqlite_file

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


def test_sqlite_lock_file_sits_beside_the_database_for_plain_paths_and_uris() -> None:
    assert sqlite_file(make_url("sqlite:////srv/cds/cds.sqlite3")) == "/srv/cds/cds.sqlite3"
    assert sqlite_file(make_url("sqlite:///file:/srv/cds/cds.sqlite3?mode=ro&uri=true")) == "/srv/cds/cds.sqlite3"
    assert sqlite_file(make_url("sqlite://")) is None
    assert sqlite_file(make_url("sqlite:///:memory:")) is None
    assert sqlite_file(make_url("postgresql+psycopg://u@h/db")) is None
