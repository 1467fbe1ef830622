"""All configuration, read from `CDS_` environment variables."""

import re
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cds_service.allowlist import is_loopback_url, is_usable_base

_ORIGIN = re.compile(r"https?://[^\s/?#@]+", re.IGNORECASE)  # host[:port]


def _fhir_bases(urls: list[str]) -> list[str]:
    """Checked at start, so a typo stops the service with one line rather than at its first call."""
    for i, url in enumerate(urls):
        if not is_usable_base(url):
            raise ValueError(f"entry {i + 1} is not an http(s) FHIR base URL without a query")
    return urls


class TrustedIssuer(BaseModel):
    """One EHR allowed to call: where its public keys are, and which FHIR servers it may name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    jwks: str = Field(min_length=1, description="https URL (http only for loopback) or local file path of a JWKS.")
    fhir_servers: list[str] = Field(default_factory=list, alias="fhirServers")

    @field_validator("jwks")
    @classmethod
    def _jwks_url_is_https(cls, value: str) -> str:
        """Keys fetched over plain http could be swapped in transit: http is for loopback only."""
        if value.lower().startswith("http://") and not is_loopback_url(value):
            raise ValueError("a JWKS URL must be https (http only on loopback)")
        return value

    _servers = field_validator("fhir_servers")(_fhir_bases)


class Settings(BaseSettings):
    """Validated service settings; every field is documented in the README."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", allow_inf_nan=False)  # inf: no bound at all

    cards_dir: Path | None = Field(
        default=None,
        description="Directory of knowledge files; defaults to the cards/ shipped with the package.",
    )
    log_level: str = Field(
        default="INFO",
        description="Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    )
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
        description="HMAC key for patient ids in the audit (16 characters or more); unset means a key file in data_dir.",
    )
    db_timeout: float = Field(
        default=2.0, gt=0, description="Seconds a feedback write may wait for the database."
    )
    store_user_comments: bool = Field(
        default=False,
        description="Store feedback's overrideReason.userComment (free text that may name the patient); off, "
        "the reason code is stored and the comment is not.",
    )
    audit_queue_size: int = Field(
        default=10_000, ge=1, description="Audit records buffered while the database is down."
    )

    # Connecting to EHRs (docs/connecting-ehrs.md)
    fhir_allowed_servers: list[str] = Field(
        default_factory=list,
        description="FHIR base URLs any caller may name as fhirServer; empty means no fetching (prefetch only).",
    )
    prefetch_date_tokens: bool = Field(
        default=True,
        description="Bound the observations and administrations prefetch searches with {{today() - N days}}, "
        "which the CDS Hooks sandbox fills but CDS Hooks 2.0 does not define; false for clients that fill only "
        "2.0's tokens (they ask for every date; the rule applies its own look-backs).",
    )
    fhir_deadline_seconds: float = Field(default=2.0, gt=0, le=60, description="Budget for all FHIR fetches of one call.")
    fhir_max_pages: int = Field(default=10, ge=1, le=100, description="Bundle pages followed per query.")
    fhir_max_body_bytes: int = Field(
        default=20_000_000, ge=1024, description="Largest FHIR response body read; larger fails the query."
    )
    fhir_max_total_bytes: int = Field(
        default=50_000_000, ge=1024,
        description="All FHIR response bodies of one call together; the query that passes it fails.",
    )
    trusted_issuers: dict[str, TrustedIssuer] = Field(
        default_factory=dict, description="iss -> JWKS (string) or {jwks, fhirServers}; empty turns JWT checks off."
    )
    public_base_url: str | None = Field(default=None, description="External base URL, for the JWT aud behind a proxy.")
    jwt_leeway_seconds: float = Field(default=5.0, ge=0, le=60, description="Clock skew allowed on iat/exp/nbf.")
    jwt_max_lifetime_seconds: float = Field(
        default=300.0, gt=0, le=86_400,
        description="Longest JWT lifetime (exp - iat) accepted: a local policy (SMART Backend Services' 5 minutes); "
        "CDS Hooks 2.0 sets no cap.",
    )
    jwks_refresh_seconds: float = Field(
        default=60.0, ge=0, description="Least time between JWKS reloads on an unknown kid or a signature that fails."
    )
    jwks_max_age_seconds: float = Field(
        default=3600.0, gt=0, le=86_400,
        description="Cached JWKS keys older than this are reloaded before use, so a key the issuer withdrew stops "
        "counting; a reload that fails keeps them.",
    )
    cors_origins: list[str] = Field(default_factory=lambda: ["*"], description="Origins browsers may call from.")
    cors_private_network: bool = Field(
        default=True,
        description="Answer Chrome's Private Network Access preflight, so a public page (the CDS Hooks "
        "sandbox) may call this service on a private or loopback address.",
    )

    # Hardening (docs/security.md)
    max_body_bytes: int = Field(
        default=10_000_000, ge=1024, description="Largest request body accepted; larger answers 413."
    )
    request_deadline_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Budget for one hook call: reading, gathering, evaluating; past it, 503."
    )
    log_format: str = Field(default="json", description="json: one JSON object per line.")

    # Clinical dates
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of the clinics served (America/Chicago, Europe/London): the date there is "
        "'today' for every look-back window and age, so an evening call is not judged by tomorrow's date in UTC.",
    )

    _allowed = field_validator("fhir_allowed_servers")(_fhir_bases)

    @field_validator("cors_origins")
    @classmethod
    def _origins_as_browsers_send_them(cls, origins: list[str]) -> list[str]:
        """A browser's Origin is scheme://host[:port], nothing after: an entry with a path or a trailing
        slash would match no request, and every preflight would fail with no word at start."""
        for i, origin in enumerate(origins):
            if origin != "*" and not (origin.isascii() and _ORIGIN.fullmatch(origin)):
                raise ValueError(f"entry {i + 1} is not * or an origin such as https://ehr.example.org (scheme, host, "
                                 "optional port; no path or trailing slash; a non-ASCII host in its xn-- form)")
        # as browsers send them: lower case, no default port
        return [o.lower().removesuffix(":443") if o.lower().startswith("https:") else o.lower().removesuffix(":80")
                for o in origins]

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.lower() not in ("json", "text"):
            raise ValueError("must be json or text")
        return value.lower()

    @field_validator("patient_hash_key")
    @classmethod
    def _key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")  # never how many it has: that tells of a secret
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a folder of zones
            raise ValueError("must be an IANA time zone name such as UTC, America/Chicago or Europe/London") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("public_base_url")
    @classmethod
    def _public_base_is_a_url(cls, value: str | None) -> str | None:
        """The JWT aud is this plus the path: without a scheme or with a query, no token could match."""
        if value is not None and (not is_usable_base(value) or "?" in value or value != value.strip()):
            raise ValueError("must be the service's external http(s) base URL, without query or fragment")
        return value

    @field_validator("trusted_issuers", mode="before")
    @classmethod
    def _plain_jwks_form(cls, value: object) -> object:
        """Accept `{"iss": "jwks"}` as shorthand for `{"iss": {"jwks": "jwks"}}`."""
        if isinstance(value, dict):
            return {iss: {"jwks": v} if isinstance(v, str) else v for iss, v in value.items()}
        return value


def unknown_setting_names(environ: Mapping[str, str]) -> list[str]:
    """CDS_ variables that name no setting: a misspelt one (CDS_DATABSE_URL) is otherwise silently
    ignored, and the service runs on its default (here, a local SQLite file instead of the shared database)."""
    known = {f"CDS_{name.upper()}" for name in Settings.model_fields} | set(TOOLING_VARIABLES)
    return sorted(k for k in environ if k.upper().startswith("CDS_") and k.upper() not in known)


# read by the soak test (tests/test_soak.py, docs/security.md), not by the service
TOOLING_VARIABLES = ("CDS_SOAK_SECONDS",)


def get_settings() -> Settings:
    """Build settings from the environment (called by the app factory and tests, never at import)."""
    return Settings()
