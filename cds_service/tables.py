"""The audit, feedback and token-use tables, as SQLAlchemy Core; migrations/ creates them.

Times are stored as naive UTC so SQLite and PostgreSQL compare them the same way.
No column holds a patient identifier in clear (`patient_hash` is an HMAC), except a clinician's
free-text `user_comment`, stored only when CDS_STORE_USER_COMMENTS asks for it.
"""

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

card_audit = Table(
    "card_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("hook_instance", String(128), nullable=False),
    Column("shown_at", DateTime, nullable=False, index=True),
    Column("variant", String(64), nullable=True),
    Column("criteria", JSON, nullable=False),
    Column("knowledge_version", String(128), nullable=False),
    Column("patient_hash", String(64), nullable=False),
)

card_feedback = Table(
    "card_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", JSON, nullable=False),
    Column("override_system", String(512), nullable=True),
    Column("override_code", String(256), nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_at", DateTime, nullable=False, index=True),
    Column("received_at", DateTime, nullable=False),
)

# A JWT id (jti) once used, hashed with its issuer, kept until the token expires: replay protection
# that holds across worker processes and hosts.
token_use = Table(
    "token_use",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("expires_at", DateTime, nullable=False, index=True),
)


def naive_utc(moment: datetime) -> datetime:
    """The storage form of a time: UTC without tzinfo (a naive input is taken as UTC)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
