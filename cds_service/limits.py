"""Limits on what one call may cost: body size (checked while the body streams) and a deadline.

The body limit is an ASGI middleware so that it holds for every route, whether the client sends
an honest Content-Length, a false one, or none at all (chunked): the bytes are counted as they
arrive and the read fails with 413 the moment the limit is passed. The deadline bounds a whole hook
call: its async part (reading the body, fetching from fhirServer) by cancellation, its evaluation
by a check the evaluation calls as it goes; and the body read of a feedback call. Past it the call
answers 503, never a made-up empty card list.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.errors import DeadlineExceeded, ErrorResponder, PayloadTooLarge
from cds_service.textmatch import TimeCheck


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit at once, else when the streamed bytes pass it."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_error: ErrorResponder) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            exc = too_large(self.max_bytes)
            await self.on_error(exc.status_code, exc.code, exc.message, None, None)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)  # raised inside the route's body read: a 413 JSON answer
            return message

        await self.app(scope, counted, send)


def _late(seconds: float) -> DeadlineExceeded:
    return DeadlineExceeded(f"The call did not finish within {seconds:g} s; try again.")


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Cancel the enclosed awaits after `seconds` and answer 503 (other TimeoutErrors pass through)."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            yield
    except TimeoutError:
        if not scope.expired():
            raise
        raise _late(seconds) from None


def time_limit(seconds: float) -> TimeCheck:
    """A check that raises DeadlineExceeded (503) once `seconds` have passed from now. The
    evaluation is CPU work no await can cancel: it calls the check between records and text
    mentions, so one hostile request cannot hold a worker past the call's deadline."""
    stop_at = time.monotonic() + seconds

    def check() -> None:
        if time.monotonic() > stop_at:
            raise _late(seconds)

    return check
