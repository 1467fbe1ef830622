"""JWT replay protection shared by every worker and host, through the database.

Each process keeps its own cache of used `jti`s (auth.ReplayCache); this ledger adds the
database so that a token used on one worker is refused on every other. The id is stored only
as a SHA-256 of issuer and jti, until the token expires. If the database does not answer
within `WAIT_SECONDS` (or `db_timeout`, if shorter), the call goes on with the process's own
cache and the outage is logged: a database outage must not turn away or hold up every EHR call.
While it lasts, calls do not wait for the database at all; every `RETRY_SECONDS` one call's
claim is tried again in the background, and its success ends the outage.
"""

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from cds_service.storage import Storage, describe_db_error

log = logging.getLogger("cds_service.auth")

WAIT_SECONDS = 0.5  # a healthy claim takes milliseconds; a call waits no longer than this for it
RETRY_SECONDS = 5.0  # while the database is out, one claim is tried (in the background) this often


class TokenLedger:
    def __init__(self, storage: Storage, timeout: float) -> None:
        self.storage = storage
        self.timeout = min(timeout, WAIT_SECONDS)
        self.available = True
        self._retry_at = 0.0
        self._probe: asyncio.Task[bool | None] | None = None
        self._purge: asyncio.Task[None] | None = None  # held: a task nobody references may be collected

    async def first_use(self, issuer: str, jti: str, expires: float) -> bool | None:
        """True on the token's first use anywhere, False on a replay, None when the database
        could not say (the caller then relies on its own cache)."""
        key = hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
        expires_at = datetime.fromtimestamp(expires, UTC).replace(tzinfo=None)
        if not self.available:  # out: this call does not wait; now and then one claim tries again
            now = time.monotonic()
            if now >= self._retry_at and (self._probe is None or self._probe.done()):
                self._retry_at = now + RETRY_SECONDS
                self._probe = asyncio.create_task(self._claim(key, expires_at))
            return None
        return await self._claim(key, expires_at)

    async def _claim(self, key: str, expires_at: datetime) -> bool | None:
        try:
            first = await asyncio.wait_for(asyncio.to_thread(self.storage.claim_token, key, expires_at), self.timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            if self.available:
                log.error("token ledger unavailable (%s): replay checks are per process until it returns",
                          describe_db_error(exc))
            self.available = False
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return None
        if not self.available:
            log.warning("token ledger available again: replay checks are shared")
        self.available = True
        if self.storage.token_purge_due():  # off the call's path: a slow DELETE must not look like an outage
            self._purge = asyncio.create_task(self._purge_expired())
        return first

    async def _purge_expired(self) -> None:
        try:
            await asyncio.to_thread(self.storage.purge_expired_tokens)
        except (SQLAlchemyError, OSError) as exc:  # tried again next period
            log.warning("expired token ids not deleted (%s)", describe_db_error(exc))
