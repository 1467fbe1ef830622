"""JWT replay protection shared by every worker and host, through the database.

Each process keeps its own cache of used `jti`s (auth.ReplayCache); this ledger adds the
database so that a token used on one worker is refused on every other. The id is stored only
as a SHA-256 of issuer and jti, until the token expires. If the database does not answer
within `db_timeout`, the call goes on with the process's own cache and the outage is logged:
a database outage must not turn away every EHR call.
"""

import asyncio
import hashlib
import logging
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from cds_service.storage import Storage

log = logging.getLogger("cds_service.auth")


class TokenLedger:
    def __init__(self, storage: Storage, timeout: float) -> None:
        self.storage = storage
        self.timeout = timeout
        self.available = True

    async def first_use(self, issuer: str, jti: str, expires: float) -> bool | None:
        """True on the token's first use anywhere, False on a replay, None when the database
        could not say (the caller then relies on its own cache)."""
        key = hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
        expires_at = datetime.fromtimestamp(expires, UTC).replace(tzinfo=None)
        try:
            first = await asyncio.wait_for(asyncio.to_thread(self.storage.claim_token, key, expires_at), self.timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            if self.available:
                log.error("token ledger unavailable (%s): replay checks are per process until it returns",
                          type(exc).__name__)
            self.available = False
            return None
        if not self.available:
            log.warning("token ledger available again: replay checks are shared")
        self.available = True
        return first
