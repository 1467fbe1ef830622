"""The database behind the audit and feedback: one SQLAlchemy engine, SQLite or PostgreSQL.

SQLite in `data_dir` unless `database_url` names another database. Every connection is
bounded by `db_timeout`, so a database that is down costs a feedback call at most that.
"""

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock
from sqlalchemy import Engine, Table, create_engine, delete, event, insert, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import NullPool

from cds_service.errors import ConfigurationError
from cds_service.settings import Settings
from cds_service.tables import card_audit, card_feedback, token_use

log = logging.getLogger("cds_service.storage")

_CONNECTION_ERRORS = ("OperationalError", "InterfaceError")
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                 "tcp_user_timeout": 30_000}


def describe_db_error(exc: BaseException) -> str:
    """A database failure as an operator can act on it, with nothing a row held: a connection-level
    error keeps the driver's first line (refused, password failed, no such database, read-only file;
    names of hosts and users, never values), any other only its class and SQLSTATE (a constraint
    error's detail would quote the row)."""
    name = type(exc).__name__
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    state = f", SQLSTATE {sqlstate}" if isinstance(sqlstate, str) else ""
    if name in _CONNECTION_ERRORS and orig is not None:
        first = next((line.strip() for line in str(orig).splitlines() if line.strip()), "")
        return f"{name}{state}: {first[:200]}" if first else f"{name}{state}"
    return f"{name}{state}"


MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK_KEY = 0x0B12CD5  # any constant shared by every instance of this service
MIGRATION_LOCK_TIMEOUT = 60.0  # seconds; a migration is a handful of DDL statements
TOKEN_PURGE_SECONDS = 60.0  # how often expired token ids are deleted


class DatabaseUrlError(ConfigurationError):
    """CDS_DATABASE_URL cannot make an engine: not a URL, or a database with no driver installed.
    The message never quotes the URL (it may hold a password)."""


def database_url(settings: Settings) -> URL:
    """The configured URL; a bare `postgresql://` means psycopg 3, the driver we ship."""
    if not settings.database_url:
        return make_url(f"sqlite:///{(settings.data_dir / 'cds.sqlite3').resolve()}")
    try:
        url = make_url(settings.database_url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseUrlError("CDS_DATABASE_URL: not a database URL (dialect://user:password@host:port/database)") from None
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL lets the hook's audit writer and feedback writers share the file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def storable(text: str | None) -> str | None:
    """Text as both databases can hold it: PostgreSQL refuses NUL characters in text."""
    return text.replace("\x00", "") if text is not None else None


def create_db_engine(settings: Settings, *, bounded: bool = True) -> Engine:
    """The engine (no connection is opened yet); DatabaseUrlError when the URL cannot make one.

    `bounded`: on PostgreSQL every statement is cut at `db_timeout`, as the service needs (a
    feedback write answers within it). The operator's commands (`report`, `db upgrade`) pass
    False: a report over months of cards, or a migration, may take longer than a write may wait.
    Connecting is bounded either way."""
    url = database_url(settings)
    try:
        return _engine(url, settings, bounded)
    except (NoSuchModuleError, ImportError):
        raise DatabaseUrlError(f"CDS_DATABASE_URL: no driver for {url.drivername} is installed (postgresql:// uses psycopg 3, "
                               "which is shipped)") from None


def _engine(url: URL, settings: Settings, bounded: bool) -> Engine:
    timeout = settings.db_timeout
    if url.get_backend_name() == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": max(2, math.ceil(timeout)),  # libpq's floor is 2 s
                        # a host that vanishes (network cut, failover) sends no error: TCP keepalives and
                        # a cap on unacknowledged data end the connection in about 30 s, not the kernel's
                        # 15 minutes, so the audit writer can retry and health can tell
                        **PG_KEEPALIVES}
        if bounded:
            connect_args["options"] = f"-c statement_timeout={int(timeout * 1000)}"
    return create_engine(url, pool_pre_ping=True, pool_timeout=timeout, connect_args=connect_args)


def upgrade(engine: Engine, busy_timeout: float = 5.0) -> None:
    """Apply the Alembic migrations shipped in the package up to head, one migrator at a time.

    Workers and hosts that start together would otherwise race to create the same tables; the
    loser fails. PostgreSQL serialises them with an advisory lock held for the transaction,
    SQLite (one host by nature) with a lock file beside the database.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        if _schema_current(engine, config):  # the usual start: a read, no write lock taken
            return
    except CommandError as exc:
        raise OperationalError("read the schema version", None, exc) from exc
    # a file's migration in one transaction; an in-memory database lives in its one connection
    sqlite = engine.dialect.name == "sqlite" and sqlite_file(engine.url) is not None
    migrator = _transactional_sqlite(engine, busy_timeout) if sqlite else engine
    try:
        with _sqlite_migration_lock(engine.url), migrator.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except CommandError as exc:  # e.g. a revision this release does not know: a newer release migrated it
        raise OperationalError("apply the migrations", None, exc) from exc
    finally:
        if sqlite:
            migrator.dispose()


def _schema_current(engine: Engine, config: Config) -> bool:
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == set(ScriptDirectory.from_config(config).get_heads())


def _transactional_sqlite(engine: Engine, busy_timeout: float) -> Engine:
    """An engine on the same SQLite file whose transactions hold DDL too: Python's sqlite3 commits
    each CREATE on its own, so a migration cut short (disk full) would leave half a schema that
    every later upgrade trips over. SQLAlchemy's recipe: the driver issues no BEGIN of its own,
    the engine issues one (IMMEDIATE: the write lock first) when a transaction begins."""
    migrator = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": busy_timeout})

    @event.listens_for(migrator, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        _sqlite_pragmas(dbapi_connection, record)

    @event.listens_for(migrator, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migrator


@contextmanager
def _sqlite_migration_lock(url: URL) -> Iterator[None]:
    path = sqlite_file(url)
    if path is None:
        yield
        return
    lock = FileLock(f"{path}.migrate.lock", timeout=MIGRATION_LOCK_TIMEOUT)
    try:
        lock.acquire()
    except OSError as exc:  # unwritable directory, or filelock.Timeout: the database is unusable too
        raise OperationalError("acquire the SQLite migration lock", None, exc) from exc
    try:
        yield
    finally:
        lock.release()


def sqlite_file(url: URL) -> str | None:
    """The file of an SQLite URL (plain path or `file:` URI), None for memory or other databases."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = url.database
    if path.startswith("file:"):
        path = path.removeprefix("file:").split("?", 1)[0]
    return path or None


class WriteHandoff:
    """Between a caller that may stop waiting and the thread writing for it: the write commits only
    while the caller still waits, and a caller that stops waiting learns whether it already began
    to commit (then it waits for that outcome). A 503 then always means nothing was stored, so
    the client's retry stores its feedback once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "waiting"

    def commit_allowed(self) -> bool:
        """Called by the writer just before it commits."""
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "committing"
            return True

    def abandon(self) -> bool:
        """Called by the caller that stops waiting: False when the commit has already begun."""
        with self._lock:
            if self._state == "committing":
                return False
            self._state = "abandoned"
            return True


class Storage:
    """The engine plus a schema check done once, retried while the database is unreachable."""

    def __init__(self, settings: Settings, *, bounded: bool = True) -> None:
        self.engine = create_db_engine(settings, bounded=bounded)
        self.timeout = settings.db_timeout
        file = sqlite_file(self.engine.url)
        self._file = Path(file) if file else None
        self._ready = False
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def file_missing(self) -> bool:
        """Whether the SQLite file was removed while the service runs: SQLite goes on writing to the
        deleted file, and everything written since is gone at the next start."""
        return self._file is not None and self._ready and not self._file.exists()

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                upgrade(self.engine, self.timeout)
                self._ready = True

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.ensure_schema()
        with self.engine.begin() as connection:
            connection.execute(insert(table), rows)

    def add_audit(self, rows: list[dict[str, Any]]) -> None:
        self._insert(card_audit, rows)

    def add_feedback(self, rows: list[dict[str, Any]], handoff: WriteHandoff | None = None) -> bool:
        """All rows in one transaction; False (nothing stored) when the caller stopped waiting first."""
        if self.file_missing():  # acknowledged now, the rows would vanish at the next start: 503, retried
            raise OperationalError("write feedback", None, FileNotFoundError(
                "the SQLite database file was removed while the service runs; restart the service"))
        if not rows:
            return handoff.commit_allowed() if handoff is not None else True
        self.ensure_schema()
        with self.engine.connect() as connection, connection.begin() as transaction:
            connection.execute(insert(card_feedback), rows)
            if handoff is not None and not handoff.commit_allowed():
                transaction.rollback()
                return False
        return True

    def claim_token(self, token_hash: str, expires_at: datetime) -> bool:
        """Record a token's first use; False when any instance recorded it before."""
        self.ensure_schema()
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(token_use), {"token_hash": token_hash, "expires_at": expires_at})
        except IntegrityError:
            return False
        return True

    def token_purge_due(self) -> bool:
        """Whether expired token ids are due to be deleted (at most every TOKEN_PURGE_SECONDS); True
        once per period, so one caller purges."""
        if time.monotonic() < self._next_purge:
            return False
        self._next_purge = time.monotonic() + TOKEN_PURGE_SECONDS
        return True

    def purge_expired_tokens(self) -> None:
        """Delete the token ids whose tokens have expired: a replay of them is refused by `exp` anyway."""
        with self.engine.begin() as connection:
            now = datetime.now(UTC).replace(tzinfo=None)  # stored times are naive UTC
            connection.execute(delete(token_use).where(token_use.c.expires_at < now))

    def close(self) -> None:
        self.engine.dispose()
