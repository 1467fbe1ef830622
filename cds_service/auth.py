"""Verifies the JWT an EHR sends with every /cds-services call (CDS Hooks 2.0 "Trusting CDS Clients").

Only issuers in CDS_TRUSTED_ISSUERS are accepted, only with asymmetric algorithms, only with a
key from that issuer's configured JWKS (a `jku` header is never followed).
`aud` must be the URL called, and `exp`, `iat` and a not-yet-seen `jti` are required; `typ`, when
present, must be `JWT`; `exp - iat` may not pass CDS_JWT_MAX_LIFETIME_SECONDS (a local policy).
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cds_service.allowlist import LOOPBACK_HOSTS, FhirAllowList, is_loopback_url
from cds_service.errors import ErrorResponder, Unauthorized
from cds_service.replay import TokenLedger
from cds_service.settings import Settings, TrustedIssuer

log = logging.getLogger("cds_service.auth")

ASYMMETRIC_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
MIN_RSA_BITS = 2048  # RFC 7518 3.3
REPLAY_PURGE_SECONDS = 60.0
MAX_TOKEN_CHARS = 16_384  # far above any real CDS Hooks JWT; larger is refused before decoding
JWKS_FETCH_TIMEOUT = 3.0
MAX_JWKS_BYTES = 1_000_000  # a real JWKS is a few KB; larger is refused while it streams
_DESCRIPTIONS: dict[type[Exception], str] = {
    jwt.ExpiredSignatureError: "token expired",
    jwt.ImmatureSignatureError: "token not yet valid",
    jwt.InvalidAudienceError: "aud is not the URL called",
    jwt.InvalidIssuedAtError: "iat is not valid",
    jwt.InvalidSignatureError: "signature does not verify",
    jwt.MissingRequiredClaimError: "a required claim (exp, iat, jti, aud, iss) is missing",
    jwt.DecodeError: "token is malformed",
}


class InvalidToken(Unauthorized):
    """401 with the RFC 6750 challenge; the description names the check, never the token."""

    code = "invalid_token"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{self.message}"'}


class MissingToken(InvalidToken):
    """No Bearer token at all: RFC 6750 section 3.1 says the challenge then carries no error code."""

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="cds-services"'}


@dataclass
class JwksSource:
    """One issuer's public keys by kid, from a file or URL. Reloaded on an unknown kid or a signature
    a known kid's key does not verify (the issuer replaced the key under its kid), at most every
    `refresh` s, and before use once older than `max_age` s: an issuer that withdraws a compromised
    key while keeping others sends no unknown kid, so only an age limit makes the withdrawal count."""

    location: str
    refresh: float
    max_age: float = 3600.0
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    algs: dict[str, str] = field(default_factory=dict)  # the alg a key declares, when it does
    loaded_at: float | None = None
    load_failed: bool = False  # the last load failed: an unknown kid may only mean the keys never came
    _loading: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.is_url and not (self.location.lower().startswith("https://") or is_loopback_url(self.location)):
            raise ValueError(f"JWKS URL must be https (http only on loopback): {self.location!r}")

    @property
    def is_url(self) -> bool:
        return self.location.lower().startswith(("https://", "http://"))

    async def key(self, kid: str, client: httpx.AsyncClient | None) -> jwt.PyJWK | None:
        if kid in self.keys and self._older_than(self.max_age) and not self._loading.locked():
            async with self._loading:  # calls that come while it reloads use the keys they have
                if self._older_than(self.max_age):
                    await self._load(client)
        if kid not in self.keys:
            async with self._loading:  # concurrent calls wait for the one load, never see it half done
                if kid not in self.keys and self._older_than(self.refresh):
                    await self._load(client)
        return self.keys.get(kid)

    async def reload_for(self, kid: str, client: httpx.AsyncClient | None) -> jwt.PyJWK | None:
        """The key for `kid` after a reload, when the cached one did not verify a signature; None
        when no reload was due (once every `refresh` s) or the kid is gone."""
        async with self._loading:
            if not self._older_than(self.refresh):
                return None
            await self._load(client)
        return self.keys.get(kid)

    def _older_than(self, seconds: float) -> bool:
        return self.loaded_at is None or time.monotonic() - self.loaded_at >= seconds

    async def _load(self, client: httpx.AsyncClient | None) -> None:
        self.loaded_at = time.monotonic()  # also rate-limits retries after a failure
        try:
            async with asyncio.timeout(JWKS_FETCH_TIMEOUT):  # in all, not per read
                raw = await self._read(client)
            keys, algs = self._usable_keys(raw)
            self.load_failed = False
            if keys or not self.keys:
                self.keys, self.algs = keys, algs
            else:  # an empty answer is far likelier a publishing fault than a revocation of every key
                log.warning("JWKS %s returned no usable keys; keeping %d cached keys", self.location, len(self.keys))
        except (OSError, ValueError, TypeError, httpx.HTTPError, jwt.PyJWTError, TimeoutError) as exc:
            self.load_failed = True
            log.warning("could not load JWKS %s: %s (keeping %d cached keys)", self.location, type(exc).__name__, len(self.keys))

    def _usable_keys(self, raw: dict[str, Any]) -> tuple[dict[str, jwt.PyJWK], dict[str, str]]:
        """The signing keys (EC or RSA of a safe size) by kid, and the alg each declares."""
        keys: dict[str, jwt.PyJWK] = {}
        algs: dict[str, str] = {}
        for k in raw.get("keys", []) if isinstance(raw, dict) and isinstance(raw.get("keys"), list) else []:
            if isinstance(k, dict) and "kid" in k and k.get("kty") in ("EC", "RSA") and k.get("use", "sig") == "sig":
                try:  # one malformed key must not take the issuer's other keys with it
                    jwk = jwt.PyJWK.from_dict(k)
                    if k["kty"] == "RSA" and jwk.key.key_size < MIN_RSA_BITS:
                        raise ValueError("RSA key too short")
                    keys[str(k["kid"])] = jwk
                    if isinstance(k.get("alg"), str):
                        algs[str(k["kid"])] = k["alg"]
                except (ValueError, TypeError, KeyError, AttributeError, jwt.PyJWTError):
                    log.warning("JWKS %s: skipped an unusable key", self.location)
        return keys, algs

    def file_problem(self) -> str | None:
        """For a JWKS given as a local file: why it gives no usable key (checked at start, so a wrong
        path is a start-up error, not a 401 on every call); None when it is fine or a URL."""
        if self.is_url:
            return None
        try:
            raw = orjson.loads(Path(self.location).read_bytes())
        except OSError as exc:
            return exc.strerror or type(exc).__name__
        except ValueError:
            return "not a JSON file"
        return None if self._usable_keys(raw)[0] else "no usable signing key (EC or RSA with a kid)"

    async def _read(self, client: httpx.AsyncClient | None) -> dict[str, Any]:
        # orjson, not json: JSON nested past 1024 levels is a ValueError, where json's RecursionError
        # escaped every handler and answered 500
        if not self.is_url:
            data = orjson.loads(Path(self.location).read_bytes())
        elif client is not None:
            # Streamed and capped: read whole, a JWKS of gigabytes (or a gzip bomb) filled memory and
            # held the event loop parsing it, well past JWKS_FETCH_TIMEOUT, which bounds only the awaits.
            body = bytearray()
            async with client.stream("GET", self.location, timeout=JWKS_FETCH_TIMEOUT) as response:
                response.raise_for_status()
                if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
                    # identity was asked for (fhir_fetch.new_client): one compressed chunk could inflate
                    # to a thousand times its size before any count
                    raise ValueError("compressed JWKS")
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError("JWKS larger than MAX_JWKS_BYTES")
            data = orjson.loads(body)
        else:
            async with httpx.AsyncClient(follow_redirects=False) as own:
                return await self._read(own)
        if not isinstance(data, dict):
            raise TypeError("JWKS is not a JSON object")
        return data


@dataclass(frozen=True)
class Caller:
    """A verified client: its issuer and the FHIR servers registered for it."""

    issuer: str
    fhir_servers: FhirAllowList


class ReplayCache:
    """jti values seen, kept until their token expires, in this process (replay.TokenLedger
    shares them across processes through the database)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self._next_purge = 0.0

    def check_and_add(self, issuer: str, jti: str, expires: float) -> bool:
        now = time.time()
        if now >= self._next_purge:  # expired entries go once a minute: cost stays flat under load
            self.seen = {k: exp for k, exp in self.seen.items() if exp > now}
            self._next_purge = now + REPLAY_PURGE_SECONDS
        key = (issuer, jti)
        if self.seen.get(key, 0) > now:
            return False
        self.seen[key] = expires
        return True


class Authenticator:
    """Holds the trusted issuers, their key caches and the replay cache for the process."""

    def __init__(self, settings: Settings) -> None:
        self.issuers: dict[str, TrustedIssuer] = settings.trusted_issuers
        self.sources = {iss: JwksSource(cfg.jwks, settings.jwks_refresh_seconds, settings.jwks_max_age_seconds)
                        for iss, cfg in self.issuers.items()}
        self.servers = {iss: FhirAllowList(cfg.fhir_servers) for iss, cfg in self.issuers.items()}
        self.leeway = settings.jwt_leeway_seconds
        self.max_lifetime = settings.jwt_max_lifetime_seconds
        self.public_base_url = settings.public_base_url
        self.replays = ReplayCache()
        self.ledger: TokenLedger | None = None  # shared across processes; set when storage is attached
        self.client: httpx.AsyncClient | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)

    def jwks_file_problems(self) -> list[str]:
        """One line per issuer whose JWKS file cannot give a key; empty when all can."""
        return [f"{iss}: JWKS file {src.location}: {problem}"
                for iss, src in self.sources.items() if (problem := src.file_problem())]

    def audience(self, request: Request) -> str:
        if self.public_base_url:  # it holds any path prefix the service is served under
            return self.public_base_url.rstrip("/") + route_path(request.scope)
        called = str(request.url.replace(query="", fragment=""))
        # Without it the URL's host is the caller's Host header: a token minted for another service
        # would pass with Host set to that service's. Only a call to loopback (a developer's machine,
        # the sandbox pointed at localhost) is verified so, and only one that reached the service on
        # a loopback address: a Host header saying localhost proves nothing of where the call came in.
        # Nor one a proxy forwarded (it says so in Forwarded or X-Forwarded-*): it reaches loopback
        # whoever called it.
        server = request.scope.get("server")
        arrived_on = server[0] if isinstance(server, tuple | list) and server else None
        proxied = any(h in request.headers for h in ("forwarded", "x-forwarded-for", "x-forwarded-host"))
        if not is_loopback_url(called) or arrived_on not in LOOPBACK_HOSTS or proxied:
            raise InvalidToken("this service cannot check the token's audience: its public URL is not "
                               "configured (CDS_PUBLIC_BASE_URL)")
        return called

    async def verify(self, token: str, audience: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidToken("token is malformed") from None
        alg, kid, issuer = header.get("alg"), header.get("kid"), claims.get("iss")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise InvalidToken("alg must be an asymmetric algorithm (ES*, RS*, PS*)")
        # CDS Hooks 2.0 requires typ "JWT" (media types are case-insensitive, RFC 7515 4.1.9). Lenient on
        # purpose: an absent typ is taken (RFC 7519 makes it optional; the token is still a signed JWT);
        # any other type (an OAuth access token, at+jwt) is not a client's authentication JWT.
        # "application/jwt" is the same media type written in full (RFC 7515 4.1.9 lets the prefix go)
        typ = header.get("typ", "JWT")
        if not isinstance(typ, str) or typ.upper().removeprefix("APPLICATION/") != "JWT":
            raise InvalidToken("typ must be JWT")
        if not isinstance(issuer, str) or issuer not in self.sources:
            raise InvalidToken("issuer is not trusted")
        source = self.sources[issuer]
        # A `jku` is never followed: keys come only from the issuer's configured JWKS, so a jku equal
        # to it changes nothing and any other jku is ignored (the sandbox's offline case).
        if not isinstance(kid, str):
            raise InvalidToken("kid is missing")
        key = await source.key(kid, self.client)
        if key is None and source.load_failed:  # the EHR's admin should look at the JWKS URL, not the kid
            raise InvalidToken("kid is not among the issuer's keys: its JWKS could not be loaded by this service")
        if key is None:
            raise InvalidToken("kid is not in the issuer's JWKS")
        try:
            try:
                verified = self._decode(token, key, source, kid, alg, audience, issuer)
            except jwt.InvalidSignatureError:
                # the issuer may have replaced the key under the same kid: one reload, then it stands
                if (fresh := await source.reload_for(kid, self.client)) is None:
                    raise
                verified = self._decode(token, fresh, source, kid, alg, audience, issuer)
        except jwt.PyJWTError as exc:
            description = next((d for t, d in _DESCRIPTIONS.items() if isinstance(exc, t)), "token is not valid")
            raise InvalidToken(description) from None
        except (TypeError, ValueError):  # e.g. an RS* alg naming an EC key: the key cannot verify it
            raise InvalidToken("alg does not fit the key") from None
        if not isinstance(verified["jti"], str) or not verified["jti"]:
            raise InvalidToken("jti must be a non-empty string")
        try:
            exp, iat = _numeric_date(verified["exp"]), _numeric_date(verified["iat"])
        except (TypeError, ValueError, OverflowError):
            raise InvalidToken("exp and iat must be numeric dates") from None
        # A local policy, not CDS Hooks 2.0 (which sets no cap): SMART Backend Services' five minutes by
        # default, so a leaked token is short-lived. Both from the issuer's clock: no skew to allow for.
        if exp - iat > self.max_lifetime:
            raise InvalidToken(f"token lifetime (exp - iat) exceeds {self.max_lifetime:g} seconds")
        expires = exp + self.leeway
        if not self.replays.check_and_add(issuer, verified["jti"], expires):
            raise InvalidToken("jti has been used before")
        if self.ledger is not None and await self.ledger.first_use(issuer, verified["jti"], expires) is False:
            raise InvalidToken("jti has been used before")
        return Caller(issuer, self.servers[issuer])


    def _decode(self, token: str, key: jwt.PyJWK, source: JwksSource, kid: str, alg: str, audience: str,
                issuer: str) -> dict[str, Any]:
        if source.algs.get(kid, alg) != alg:  # RFC 8725 3.1: a key is used with its one algorithm
            raise InvalidToken("alg is not the algorithm the key is published for")
        verified: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=[alg], audience=audience, issuer=issuer, leeway=self.leeway,
            options={"require": ["exp", "iat", "jti", "iss", "aud"]},
        )
        return verified


def _numeric_date(value: Any) -> float:
    """A JWT NumericDate: a JSON number (RFC 7519 2), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number



class ClientJwtMiddleware:
    """Every /cds-services path (discovery, services, feedback, unknown ids) needs a valid token.

    A middleware rather than a route dependency so that routes added later are covered too, and
    so a caller without a token learns nothing (not even a 404). CORS sits outside it, so browser
    preflights (which carry no token) are answered. /healthz stays open.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator, on_error: ErrorResponder) -> None:
        self.app = app
        self.auth = authenticator
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.enabled or not route_path(scope).startswith("/cds-services"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise MissingToken("a Bearer token is required")
            if len(token) > MAX_TOKEN_CHARS:
                raise InvalidToken("token is too large")
            request.state.caller = await self.auth.verify(token.strip(), self.auth.audience(request))
        except InvalidToken as exc:
            response = self.on_error(exc.status_code, exc.code, exc.message, None, exc.headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path the router matches: under a root path (`uvicorn --root-path /b12`, or mounted in
    another app) the ASGI path carries the prefix, and a check of the raw path let every call past."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):]
    return path


def caller_servers(request: Request) -> FhirAllowList | None:
    """The FHIR servers registered for the verified caller, if auth is on and one was verified."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller.fhir_servers if caller else None
