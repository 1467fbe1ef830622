"""Opens the storage (audit, feedback, token ledger) with the app and closes it with the app."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from cds_service.audit import AuditLog, hash_key
from cds_service.knowledge import Knowledge
from cds_service.replay import TokenLedger
from cds_service.settings import Settings
from cds_service.storage import Storage, describe_db_error

log = logging.getLogger("cds_service.storage")


def attach(app: FastAPI, settings: Settings, knowledge: Knowledge) -> None:
    storage = Storage(settings)
    app.state.storage = storage
    app.state.audit = AuditLog(storage, hash_key(settings), knowledge.version, settings.audit_queue_size)
    if app.state.authenticator.enabled:
        app.state.authenticator.ledger = TokenLedger(storage, settings.db_timeout)


@asynccontextmanager
async def storage_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Migrate at start; a database that is down delays the migration, never the service."""
    storage: Storage = app.state.storage
    audit: AuditLog = app.state.audit
    try:
        storage.ensure_schema()
    except SQLAlchemyError as exc:
        log.error("database unavailable at start (%s); will retry on first write", describe_db_error(exc))
        audit.database_up = False  # /healthz says so until a write succeeds
    audit.start()
    try:
        yield
    finally:
        audit.stop()
        storage.close()
