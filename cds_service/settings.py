"""All configuration, read from `CDS_` environment variables."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Validated service settings; every field is documented in the README."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore")

    cards_dir: Path | None = Field(
        default=None,
        description="Directory of knowledge files; defaults to the cards/ shipped with the package.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    data_dir: Path = Field(
        default=Path("data"),
        description="Directory for the SQLite database and the generated patient-hash key.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the audit/feedback database; unset means SQLite in data_dir.",
    )
    patient_hash_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for patient ids in the audit; unset means a key file in data_dir.",
    )
    db_timeout: float = Field(
        default=2.0, gt=0, description="Seconds a feedback write may wait for the database."
    )
    audit_queue_size: int = Field(
        default=10_000, ge=1, description="Audit records buffered while the database is down."
    )


def get_settings() -> Settings:
    """Build settings from the environment (called by the app factory and tests, never at import)."""
    return Settings()
