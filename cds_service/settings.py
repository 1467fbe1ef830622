"""All configuration, read from `CDS_` environment variables."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Validated service settings; every field is documented in the README."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore")

    cards_dir: Path | None = Field(
        default=None,
        description="Directory of knowledge files; defaults to the cards/ shipped with the package.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")


def get_settings() -> Settings:
    """Build settings from the environment (called by the app factory and tests, never at import)."""
    return Settings()
