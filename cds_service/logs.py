"""Structured logs: one JSON object per line, tagged with the request id, hookInstance and service
(or, with CDS_LOG_FORMAT=text, one plain line per record with non-printable characters escaped).

Log lines carry identifiers of the call, never of the patient. httpx and httpcore are held at
WARNING because their INFO lines print request URLs, and FHIR query URLs hold the patient id.
"""

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
access = logging.getLogger("cds_service.access")
QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "alembic.runtime.plugins")  # the last: start-up noise
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
hook_instance: ContextVar[str | None] = ContextVar("hook_instance", default=None)
service_id: ContextVar[str | None] = ContextVar("service_id", default=None)


def safe_id(value: object) -> str | None:
    """An id fit for a log line or header: short and plain, else None (it is not echoed)."""
    text = value if isinstance(value, str) else str(value) if type(value) is int else ""  # never str() of a container
    return text if _SAFE_ID.fullmatch(text) else None


def bind_call(service: str, hook_instance_value: object) -> None:
    """Tag the rest of this request's log lines with its service and hookInstance."""
    service_id.set(service)
    hook_instance.set(safe_id(hook_instance_value))


def one_line(text: str) -> str:
    """Control and other non-printable characters as escapes: text from a caller (a path, an id)
    cannot start a forged line in the plain-text log. JSON lines escape them already."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _frames(record: logging.LogRecord) -> list[str]:
    """file:line of the innermost frames of the record's exception."""
    tb = record.exc_info[2] if record.exc_info else None
    frames = []
    while tb is not None:
        frames.append(f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
        tb = tb.tb_next
    return frames[-8:]


class TextFormatter(logging.Formatter):
    """`time level logger message` on one line, escaped; exceptions by type and place only, as in JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name} [{record.process}] {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" exception={record.exc_info[0].__name__} frames={','.join(_frames(record))}"
        return one_line(line)


class JsonFormatter(logging.Formatter):
    """time, level, logger, pid (which worker of `--workers N`), message, requestId, hookInstance,
    service; exceptions by type and place only."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, var in (("requestId", request_id), ("hookInstance", hook_instance), ("service", service_id)):
            if (value := var.get()) is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type and the frames, not the exception text: that text may quote input.
            entry["exception"] = record.exc_info[0].__name__
            entry["frames"] = _frames(record)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, fmt: str = "json", stream: IO[str] | None = None) -> None:
    """Root logging for `serve`: one handler (stderr unless told) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class CallTraceMiddleware:
    """Traces each call: a request id (the client's X-Request-ID if it is a plain short id, else a
    new one) echoed in the response header and put on every log line of the call, and one log line
    for every call answered with an error (a 401 from a bad token, a 413, a 503 past the deadline):
    the hooks log their own answers, and without it a refused EHR left no trace. Refusals at INFO
    (401 and 403 at WARNING: a client that cannot authenticate), 5xx at ERROR."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = safe_id(Headers(scope=scope).get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
        token = request_id.set(rid)

        async def traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
                if (status := message["status"]) >= 400:
                    level = logging.ERROR if status >= 500 else logging.WARNING if status in (401, 403) else logging.INFO
                    access.log(level, "request refused status=%d method=%s path=%s ms=%.1f", status, scope["method"],
                               scope["path"][:200], (time.perf_counter() - started) * 1e3)
            await send(message)

        try:
            await self.app(scope, receive, traced)
        finally:
            request_id.reset(token)
