"""Alembic environment: runs on the connection that `storage.upgrade` hands over."""

from alembic import context
from sqlalchemy.engine import Connection

from cds_service.tables import metadata

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
