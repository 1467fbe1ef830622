"""Exceptions that become 4xx answers with a JSON body naming the problem (never patient data)."""

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

# builds the JSON error response (status, code, message, details, headers); middleware is given one
ErrorResponder = Callable[[int, str, str, list[dict[str, Any]] | None, dict[str, str] | None], Response]


class ConfigurationError(Exception):
    """A CDS_ setting that parses but cannot work; the message starts with the setting's name and
    never quotes a secret. `cds-service` prints it on one line and exits 2."""


class CdsError(Exception):
    """Base: an HTTP status, a short machine-readable code and a plain message."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(CdsError):
    status_code, code = 400, "invalid_request"


class Unauthorized(CdsError):
    status_code, code = 401, "unauthorized"


class NotFound(CdsError):
    status_code, code = 404, "not_found"


class PreconditionFailed(CdsError):
    status_code, code = 412, "missing_fhir_data"


class PayloadTooLarge(CdsError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMediaType(CdsError):
    status_code, code = 415, "unsupported_media_type"


class ServiceUnavailable(CdsError):
    status_code, code = 503, "database_unavailable"


class DeadlineExceeded(CdsError):
    status_code, code = 503, "deadline_exceeded"
