"""Client JWT verification over real HTTP with real keys (EC P-384, RSA) signed by PyJWT."""

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import logging
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from cds_service.app import create_app
from cds_service.auth import JWKS_FETCH_TIMEOUT, MAX_JWKS_BYTES, Authenticator, InvalidToken
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from tests.conftest import LiveServer, _free_port, load_scenario
from tests.fhir_server import FhirState
from tests.fixture_files import FIXTURES

FILE_ISS = "https://ehr-file.example.org"
URL_ISS = "https://ehr-url.example.org"
EC_KID, RSA_KID, LATE_KID = "ec-1", "rsa-1", "rsa-late"
SERVICE = "/cds-services/b12-myalgia-patient-view"


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        EC_KID: ec.generate_private_key(ec.SECP384R1()),
        RSA_KID: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        LATE_KID: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


class JwksHost:
    """Serves a JWKS over HTTP on loopback and counts the loads."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys, self.hits = keys, 0

    async def jwks(self, _: Request) -> JSONResponse:
        self.hits += 1
        return JSONResponse({"keys": self.keys})


@pytest.fixture(scope="module")
def jwks_host(keys: dict[str, Any]) -> Iterator[tuple[LiveServer, JwksHost]]:
    host = JwksHost([_jwk(keys[RSA_KID], RSA_KID, "RS256")])
    with LiveServer(Starlette(routes=[Route("/.well-known/jwks.json", host.jwks)])) as live:
        yield live, host


@pytest.fixture(scope="module")
def service(
    knowledge: Knowledge, keys: dict[str, Any], jwks_host: tuple[LiveServer, JwksHost],
    fhir: tuple[LiveServer, FhirState], tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    jwks_file = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [_jwk(keys[EC_KID], EC_KID, "ES384")]}))
    settings = Settings(trusted_issuers={  # type: ignore[arg-type]
        FILE_ISS: str(jwks_file),
        URL_ISS: {"jwks": f"{jwks_host[0].url}/.well-known/jwks.json", "fhirServers": [fhir[0].url + "/fhir"]},
    }, jwks_refresh_seconds=0.5)
    with LiveServer(create_app(settings, knowledge)) as live:
        yield live


def token(key: Any, aud: str, *, iss: str = FILE_ISS, kid: str = EC_KID, alg: str = "ES384",
          headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = time.time()
    payload = {"iss": iss, "aud": aud, "iat": round(now), "exp": round(now) + 300, "jti": str(uuid.uuid4()), **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, **(headers or {})})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def call(server: LiveServer, path: str, tok: str | None, body: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    if body is None:
        return httpx.get(server.url + path, headers=headers)
    return httpx.post(server.url + path, headers=headers, json=body)


def test_good_tokens_pass_for_every_path(service: LiveServer, keys: dict[str, Any]) -> None:
    assert call(service, "/cds-services", token(keys[EC_KID], service.url + "/cds-services")).status_code == 200
    request = load_scenario(FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json")["request"]
    # fetching is on (URL_ISS registered a FHIR server), so FILE_ISS must prefetch every essential key
    request["prefetch"]["b12Administrations"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    ok = call(service, SERVICE, token(keys[EC_KID], service.url + SERVICE), request)
    assert ok.status_code == 200 and ok.json()["cards"]
    rsa_ok = call(service, SERVICE, token(keys[RSA_KID], service.url + SERVICE, iss=URL_ISS, kid=RSA_KID, alg="RS256"), request)
    assert rsa_ok.status_code == 200


def test_sandbox_iat_half_a_second_ahead_passes(service: LiveServer, keys: dict[str, Any]) -> None:
    aud = service.url + "/cds-services"
    tok = token(keys[EC_KID], aud, iat=int(time.time()) + 1)  # Math.round(Date.now()/1000) can be 1 s ahead
    assert call(service, "/cds-services", tok).status_code == 200


def test_healthz_stays_open(service: LiveServer) -> None:
    assert httpx.get(service.url + "/healthz").status_code == 200


BAD: dict[str, Any] = {
    "no token": lambda k, aud: None,
    "expired": lambda k, aud: token(k[EC_KID], aud, iat=round(time.time()) - 600, exp=round(time.time()) - 300),
    "wrong aud": lambda k, aud: token(k[EC_KID], aud + "-other"),
    "aud of another service": lambda k, aud: token(k[EC_KID], aud.rsplit("/", 1)[0]),
    "unknown issuer": lambda k, aud: token(k[EC_KID], aud, iss="https://evil.example.org"),
    "unknown kid": lambda k, aud: token(k[EC_KID], aud, kid="nope"),
    "key of another issuer": lambda k, aud: token(k[RSA_KID], aud, kid=RSA_KID, alg="RS256"),
    "no exp": lambda k, aud: token(k[EC_KID], aud, exp=None),
    "no iat": lambda k, aud: token(k[EC_KID], aud, iat=None),
    "no jti": lambda k, aud: token(k[EC_KID], aud, jti=None),
    "iat far in the future": lambda k, aud: token(k[EC_KID], aud, iat=round(time.time()) + 60),
    "lifetime over 5 minutes": lambda k, aud: token(k[EC_KID], aud, exp=round(time.time()) + 3600),
    "foreign jku with a key from it": lambda k, aud: token(
        k[RSA_KID], aud, kid=RSA_KID, alg="RS256", headers={"jku": "https://evil.example.org/jwks.json"}),
    "alg none": lambda k, aud: jwt.encode(
        {"iss": FILE_ISS, "aud": aud, "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "x"},
        None, algorithm="none", headers={"kid": EC_KID}),
    "tampered payload": lambda k, aud: _tamper(token(k[EC_KID], aud)),
    "HMAC with the public key as secret": lambda k, aud: _hs256_with_public_key(k[EC_KID], aud),
    "garbage": lambda k, aud: "not.a.jwt",
}


def _tamper(tok: str) -> str:
    head, payload, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["iss"], claims["extra"] = FILE_ISS, "admin"
    return ".".join([head, _b64(json.dumps(claims).encode()), sig])


def _hs256_with_public_key(key: Any, aud: str) -> str:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": EC_KID}).encode())
    body = _b64(json.dumps({"iss": FILE_ISS, "aud": aud, "iat": int(time.time()),
                            "exp": int(time.time()) + 60, "jti": str(uuid.uuid4())}).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
@pytest.mark.parametrize("path", ["/cds-services", SERVICE, SERVICE + "/feedback"])
def test_bad_tokens_get_401_with_challenge(case: str, path: str, service: LiveServer, keys: dict[str, Any]) -> None:
    tok = BAD[case](keys, service.url + path)
    response = call(service, path, tok, None if path == "/cds-services" else {"feedback": []})
    assert response.status_code == 401, (case, response.text)
    assert response.json()["error"] == "invalid_token"
    challenge = response.headers["www-authenticate"]
    if tok is None:  # RFC 6750 3.1: a request without credentials gets a challenge with no error code
        assert challenge == 'Bearer realm="cds-services"'
    else:
        assert challenge.startswith('Bearer error="invalid_token", error_description="')
    if tok:
        assert tok not in response.text and tok not in challenge


def test_replayed_jti_is_refused(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys[EC_KID], service.url + "/cds-services")
    assert call(service, "/cds-services", tok).status_code == 200
    replay = call(service, "/cds-services", tok)
    assert replay.status_code == 401 and "jti" in replay.headers["www-authenticate"]


def test_sandbox_shaped_token_with_unreachable_jku_uses_the_static_jwks(service: LiveServer, keys: dict[str, Any]) -> None:
    """The sandbox names its public jku; offline the configured file must still verify it."""
    jku = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
    tok = token(keys[EC_KID], service.url + "/cds-services", headers={"jku": jku, "typ": "JWT"})
    assert call(service, "/cds-services", tok).status_code == 200


def test_jku_equal_to_the_registered_url_is_fine(service: LiveServer, keys: dict[str, Any],
                                                 jwks_host: tuple[LiveServer, JwksHost]) -> None:
    jku = f"{jwks_host[0].url}/.well-known/jwks.json"
    tok = token(keys[RSA_KID], service.url + "/cds-services", iss=URL_ISS, kid=RSA_KID, alg="RS256", headers={"jku": jku})
    assert call(service, "/cds-services", tok).status_code == 200


def test_new_kid_is_picked_up_by_a_rate_limited_refresh(
    service: LiveServer, keys: dict[str, Any], jwks_host: tuple[LiveServer, JwksHost]
) -> None:
    host = jwks_host[1]

    def make() -> str:
        return token(keys[LATE_KID], service.url + "/cds-services", iss=URL_ISS, kid=LATE_KID, alg="RS256")

    time.sleep(0.6)
    assert call(service, "/cds-services", make()).status_code == 401  # unknown: one reload
    hits = host.hits
    for _ in range(5):  # unknown kids inside the refresh interval do not reload
        assert call(service, "/cds-services", make()).status_code == 401
    assert host.hits == hits
    host.keys.append(_jwk(keys[LATE_KID], LATE_KID, "RS256"))
    time.sleep(0.6)
    assert call(service, "/cds-services", make()).status_code == 200
    assert host.hits == hits + 1


def test_fhir_servers_follow_the_verified_issuer(
    service: LiveServer, keys: dict[str, Any], fhir: tuple[LiveServer, FhirState]
) -> None:
    """URL_ISS registered the FHIR server, FILE_ISS did not: only URL_ISS's calls may fetch."""
    scenario = load_scenario(FIXTURES / "patient-view" / "01-metformin-paresthesia-critical.json")
    request = scenario["request"]
    fhir[1].load(request.pop("prefetch"))
    request["fhirServer"] = fhir[0].url + "/fhir"
    aud = service.url + SERVICE
    allowed = call(service, SERVICE, token(keys[RSA_KID], aud, iss=URL_ISS, kid=RSA_KID, alg="RS256"), request)
    assert allowed.status_code == 200 and allowed.json()["cards"]
    refused = call(service, SERVICE, token(keys[EC_KID], aud), request)
    assert refused.status_code == 412 and "not allowed" in refused.json()["message"]


def test_public_base_url_sets_the_audience(knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys[EC_KID], EC_KID, "ES384")]}))
    settings = Settings(trusted_issuers={FILE_ISS: str(jwks)},  # type: ignore[arg-type]
                        public_base_url="https://cds.example.org/b12/")
    with LiveServer(create_app(settings, knowledge)) as live:
        assert call(live, "/cds-services", token(keys[EC_KID], "https://cds.example.org/b12/cds-services")).status_code == 200
        assert call(live, "/cds-services", token(keys[EC_KID], live.url + "/cds-services")).status_code == 401


def test_a_root_path_or_a_mount_does_not_open_the_door(knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path) -> None:
    """Served under a prefix, the ASGI path carries it: the token is still required, and its
    audience is the public base URL (which holds the prefix) plus the route, the prefix once."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys[EC_KID], EC_KID, "ES384")]}))
    base = "https://cds.example.org/b12"

    def settings() -> Settings:
        return Settings(trusted_issuers={FILE_ISS: str(jwks)}, public_base_url=base,  # type: ignore[arg-type]
                        data_dir=tmp_path / "data")

    with LiveServer(create_app(settings(), knowledge), root_path="/b12") as live:
        assert call(live, "/cds-services", None).status_code == 401
        assert call(live, SERVICE, None, {"hook": "patient-view"}).status_code == 401
        assert call(live, "/cds-services", token(keys[EC_KID], base + "/b12/cds-services")).status_code == 401
        assert call(live, "/cds-services", token(keys[EC_KID], base + "/cds-services")).status_code == 200
    outer = Starlette(routes=[Mount("/b12", app=create_app(settings(), knowledge))])
    with LiveServer(outer) as live:
        assert call(live, "/b12/cds-services", None).status_code == 401
        assert call(live, "/b12/cds-services", token(keys[EC_KID], base + "/cds-services")).status_code == 200


def test_without_a_public_base_url_only_a_call_to_loopback_is_verified(
    service: LiveServer, keys: dict[str, Any]
) -> None:
    """With no CDS_PUBLIC_BASE_URL the audience is the URL as received, whose host is the caller's Host
    header: a token minted for another service (aud on its host) sent with Host set to that host is
    refused, as is any call addressed to a host other than loopback; a call to 127.0.0.1 or localhost
    is verified as before (found in the issue audit: the spoofed Host passed)."""
    path = "/cds-services"
    other = token(keys[EC_KID], "http://other-cds.example/cds-services")
    refused = httpx.get(service.url + path, headers={"Authorization": f"Bearer {other}", "Host": "other-cds.example"})
    assert refused.status_code == 401 and "CDS_PUBLIC_BASE_URL" in refused.json()["message"]
    assert "WWW-Authenticate" in refused.headers
    port = service.url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", "localhost"):
        mine = token(keys[EC_KID], f"http://{host}:{port}{path}")
        ok = httpx.get(service.url + path, headers={"Authorization": f"Bearer {mine}", "Host": f"{host}:{port}"})
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(("arrived_on", "host", "forwarded", "verified"), [
    ("127.0.0.1", "localhost:9999", None, True), ("::1", "[::1]:9999", None, True),
    ("10.0.0.5", "localhost:9999", None, False),  # reached on the network, a Host header saying localhost
    ("127.0.0.1", "cds.example.org", None, False),
    ("127.0.0.1", "localhost:9999", b"x-forwarded-for", False),  # a proxy on the same host forwarded it
    ("127.0.0.1", "localhost:9999", b"forwarded", False),
])
def test_without_a_public_base_url_loopback_is_judged_by_where_the_call_arrived(
    tmp_path: Path, arrived_on: str, host: str, forwarded: bytes | None, verified: bool
) -> None:
    """The Host header is the caller's: a call that reached the service on its network address with
    Host set to localhost is no call to loopback, nor is one a proxy forwarded to loopback (found in
    the reviews of the issue audit's changes)."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    auth = Authenticator(Settings(trusted_issuers={FILE_ISS: str(jwks)}, data_dir=tmp_path))  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/cds-services", "root_path": "",
             "query_string": b"", "headers": [(b"host", host.encode())], "server": (arrived_on, 9999)}
    if forwarded is not None:
        scope["headers"].append((forwarded, b"203.0.113.9"))
    if verified:
        assert auth.audience(Request(scope)) == f"http://{host}/cds-services"
    else:
        with pytest.raises(InvalidToken, match="CDS_PUBLIC_BASE_URL"):
            auth.audience(Request(scope))


@pytest.mark.parametrize("base", [None, "https://cds.example.org/b12/"])
def test_start_warns_when_the_audience_comes_from_the_host_header(
    knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture, base: str | None
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys[EC_KID], EC_KID, "ES384")]}))
    with caplog.at_level(logging.WARNING):
        create_app(Settings(trusted_issuers={FILE_ISS: str(jwks)}, public_base_url=base), knowledge)  # type: ignore[arg-type]
    warned = [r for r in caplog.records if "CDS_PUBLIC_BASE_URL is not set" in r.getMessage()]
    assert len(warned) == (1 if base is None else 0)


def test_start_warns_of_a_plain_http_fhir_server_off_loopback(
    knowledge: Knowledge, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    issuers = {FILE_ISS: {"jwks": str(jwks), "fhirServers": ["http://fhir.internal.example/r4", "http://127.0.0.1:9/fhir"]}}
    for allowed, warned in ((["https://fhir.example.org/r4"], 1), (["http://fhir:8080/fhir"], 2)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            create_app(Settings(trusted_issuers=issuers, fhir_allowed_servers=allowed,  # type: ignore[arg-type]
                                public_base_url="https://cds.example.org"), knowledge)
        lines = [r.getMessage() for r in caplog.records if "plain http off loopback" in r.getMessage()]
        assert lines == [(f"{warned} allowed FHIR server(s) use plain http off loopback: the access token and the "
                          "patient's data cross the network unencrypted; use https in production")]


@pytest.mark.parametrize(("origins", "allowed", "warned"), [
    (["*"], ["https://fhir.internal.example/r4"], 1),
    (["https://sandbox.cds-hooks.org"], ["https://fhir.internal.example/r4"], 0),
    (["*"], [], 0),  # nothing is fetched: a page can read only what it sends
])
def test_start_warns_when_any_web_page_could_read_the_fhir_server_through_the_service(
    knowledge: Knowledge, caplog: pytest.LogCaptureFixture, origins: list[str], allowed: list[str], warned: int
) -> None:
    with caplog.at_level(logging.WARNING):
        create_app(Settings(cors_origins=origins, fhir_allowed_servers=allowed), knowledge)
    lines = [r.getMessage() for r in caplog.records if "CORS admits every origin" in r.getMessage()]
    assert len(lines) == warned
    assert all("set CDS_TRUSTED_ISSUERS, or CDS_CORS_ORIGINS" in line for line in lines)


@pytest.mark.parametrize("jwks", ["http://jwks.example.org/jwks.json"])
def test_plain_http_jwks_only_on_loopback(jwks: str) -> None:
    with pytest.raises(ValueError, match="https"):
        create_app(Settings(trusted_issuers={FILE_ISS: jwks}))  # type: ignore[dict-item]


def test_preflight_needs_no_token_and_401_carries_cors(service: LiveServer) -> None:
    preflight = httpx.options(service.url + SERVICE, headers={
        "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200
    refused = httpx.get(service.url + "/cds-services", headers={"Origin": "http://127.0.0.1:8080"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"


REFRESH = 0.3  # CDS_JWKS_REFRESH_SECONDS in the outage tests


class FlakyJwksHost:
    """A JWKS on loopback that can be stopped and started again on the same port, answer an
    error status, or stall without answering."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys, self.status, self.stall, self.hits = keys, 200, False, 0
        self.body: bytes | None = None  # answered as is, in place of the keys
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self.live: LiveServer | None = None

    async def jwks(self, _: Request) -> Response:
        self.hits += 1
        while self.stall:
            await asyncio.sleep(0.05)
        if self.status != 200:
            return JSONResponse({"error": "down"}, status_code=self.status)
        if self.body is not None:
            return Response(self.body, media_type="application/json")
        return JSONResponse({"keys": self.keys})

    def start(self) -> None:
        self.live = LiveServer(Starlette(routes=[Route("/.well-known/jwks.json", self.jwks)]), port=self.port)
        self.live.__enter__()

    def stop(self) -> None:
        self.stall = False
        if self.live is not None:
            self.live.__exit__()
            self.live = None


def timed_call(server: LiveServer, tok: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.get(server.url + "/cds-services", headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    return response, time.perf_counter() - started


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


@pytest.fixture()
def flaky_jwks(keys: dict[str, Any]) -> Iterator[FlakyJwksHost]:
    host = FlakyJwksHost([_jwk(keys[RSA_KID], RSA_KID, "RS256")])
    yield host
    host.stop()


@contextmanager
def _trusting(host: FlakyJwksHost, knowledge: Knowledge, max_age: float = 3600) -> Iterator[LiveServer]:
    """The service on loopback, trusting URL_ISS with its JWKS served by `host` (started here)."""
    host.start()
    settings = Settings(trusted_issuers={URL_ISS: host.url}, jwks_refresh_seconds=REFRESH,  # type: ignore[dict-item]
                        jwks_max_age_seconds=max_age)
    with LiveServer(create_app(settings, knowledge)) as live:
        yield live


def _url_issuer_token(key: Any, live: LiveServer, kid: str) -> str:
    return token(key, live.url + "/cds-services", iss=URL_ISS, kid=kid, alg="RS256")


@pytest.mark.parametrize("outage", ["stopped", "500", "stalled"])
def test_jwks_outage_keeps_cached_keys_then_recovers(
    outage: str, flaky_jwks: FlakyJwksHost, knowledge: Knowledge, keys: dict[str, Any]
) -> None:
    """Keys loaded before the outage keep verifying; a new kid gets a quick 401 (never a 500 or
    a hang); once the JWKS is back with the new key and the refresh interval has passed, it verifies."""
    host = flaky_jwks
    with _trusting(host, knowledge) as live:
        def signed(kid: str) -> str:
            return _url_issuer_token(keys[kid], live, kid)

        assert timed_call(live, signed(RSA_KID))[0].status_code == 200  # the keys are now cached
        if outage == "stopped":
            host.stop()
        elif outage == "500":
            host.status = 500
        else:
            host.stall = True
        time.sleep(REFRESH + 0.1)  # a reload is due on the next unknown kid

        hits = host.hits
        result: dict[str, tuple[httpx.Response, float]] = {}
        unknown = threading.Thread(target=lambda: result.update(late=timed_call(live, signed(LATE_KID))))
        unknown.start()
        time.sleep(0.2)  # the reload is in flight (stalled) or already failed
        cached, cached_took = timed_call(live, signed(RSA_KID))
        assert cached.status_code == 200 and cached_took < 1  # never waits for a reload
        unknown.join(timeout=JWKS_FETCH_TIMEOUT + 5)
        late, late_took = result["late"]
        assert_invalid_token(late)
        assert late_took < (JWKS_FETCH_TIMEOUT + 1 if outage == "stalled" else 1)
        assert host.hits == hits + (0 if outage == "stopped" else 1)

        if outage != "stalled":  # (a second stall would only cost another JWKS_FETCH_TIMEOUT)
            time.sleep(REFRESH + 0.1)  # a second failed reload still keeps the cached keys
            assert_invalid_token(timed_call(live, signed(LATE_KID))[0])
            assert timed_call(live, signed(RSA_KID))[0].status_code == 200

        host.keys.append(_jwk(keys[LATE_KID], LATE_KID, "RS256"))
        host.status, host.stall = 200, False
        if outage == "stopped":
            host.start()
        time.sleep(REFRESH + 0.1)
        assert timed_call(live, signed(LATE_KID))[0].status_code == 200
        assert timed_call(live, signed(RSA_KID))[0].status_code == 200


MAX_AGE = 0.6  # CDS_JWKS_MAX_AGE_SECONDS in the key-withdrawal tests


def test_a_withdrawn_key_stops_verifying_once_the_cache_is_older_than_its_max_age(
    flaky_jwks: FlakyJwksHost, knowledge: Knowledge, keys: dict[str, Any]
) -> None:
    """The issuer drops a compromised key and keeps another: no token carries an unknown kid, so
    only the cache's age can make the withdrawal count."""
    host = flaky_jwks
    host.keys.append(_jwk(keys[LATE_KID], LATE_KID, "RS256"))
    with _trusting(host, knowledge, max_age=MAX_AGE) as live:
        assert timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0].status_code == 200
        host.keys = [_jwk(keys[LATE_KID], LATE_KID, "RS256")]
        assert timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0].status_code == 200  # still young
        time.sleep(MAX_AGE + 0.1)
        assert_invalid_token(timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0])
        assert timed_call(live, _url_issuer_token(keys[LATE_KID], live, LATE_KID))[0].status_code == 200
        assert host.hits == 2


def test_an_old_cache_is_kept_while_the_jwks_is_down(
    flaky_jwks: FlakyJwksHost, knowledge: Knowledge, keys: dict[str, Any]
) -> None:
    host = flaky_jwks
    with _trusting(host, knowledge, max_age=MAX_AGE) as live:
        assert timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0].status_code == 200
        host.status = 500
        time.sleep(MAX_AGE + 0.1)
        assert timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0].status_code == 200
        assert host.hits == 2  # it tried, failed, and kept the keys


def test_a_key_replaced_under_its_kid_verifies_after_one_reload(
    flaky_jwks: FlakyJwksHost, knowledge: Knowledge, keys: dict[str, Any]
) -> None:
    """Rotated key material under the same kid: a signature the cached key does not verify reloads
    the JWKS (at most every CDS_JWKS_REFRESH_SECONDS), so genuine tokens are not refused until restart."""
    host = flaky_jwks
    with _trusting(host, knowledge) as live:
        assert timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0].status_code == 200
        host.keys = [_jwk(keys[LATE_KID], RSA_KID, "RS256")]  # new key, old kid
        time.sleep(REFRESH + 0.1)
        assert timed_call(live, _url_issuer_token(keys[LATE_KID], live, RSA_KID))[0].status_code == 200
        assert host.hits == 2
        # the old key's signatures now fail, and a stream of them reloads at most once per interval
        for _ in range(5):
            assert_invalid_token(timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0])
        assert host.hits == 2
        time.sleep(REFRESH + 0.1)
        assert_invalid_token(timed_call(live, _url_issuer_token(keys[RSA_KID], live, RSA_KID))[0])
        assert host.hits == 3


def test_jwks_down_at_start_is_401_then_works_once_up(
    flaky_jwks: FlakyJwksHost, knowledge: Knowledge, keys: dict[str, Any]
) -> None:
    settings = Settings(trusted_issuers={URL_ISS: flaky_jwks.url}, jwks_refresh_seconds=REFRESH)  # type: ignore[dict-item]
    with LiveServer(create_app(settings, knowledge)) as live:
        def signed() -> str:
            return token(keys[RSA_KID], live.url + "/cds-services", iss=URL_ISS, kid=RSA_KID, alg="RS256")

        refused, took = timed_call(live, signed())  # the first call ever: nothing cached, nothing listening
        assert_invalid_token(refused)
        assert took < 1
        # the EHR's admin is pointed at the JWKS this service could not load, not at the token's kid
        assert "its JWKS could not be loaded by this service" in refused.headers["www-authenticate"]
        flaky_jwks.start()
        assert_invalid_token(timed_call(live, signed())[0])  # inside the refresh interval: no reload yet
        time.sleep(REFRESH + 0.1)
        assert timed_call(live, signed())[0].status_code == 200
        assert flaky_jwks.hits == 1


NESTED = b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # past any JSON parser's depth


def test_a_jwks_of_deeply_nested_json_is_a_401_and_keeps_the_cached_keys(
    flaky_jwks: FlakyJwksHost, knowledge: Knowledge, keys: dict[str, Any]
) -> None:
    """Python's json raised RecursionError on it, which no handler caught: every token with a new
    kid answered 500. Now it is one more JWKS that cannot be read."""
    host = flaky_jwks
    with _trusting(host, knowledge) as live:
        def signed(kid: str) -> str:
            return _url_issuer_token(keys[kid], live, kid)

        assert timed_call(live, signed(RSA_KID))[0].status_code == 200
        host.body = NESTED
        time.sleep(REFRESH + 0.1)
        hits = host.hits
        assert_invalid_token(timed_call(live, signed(LATE_KID))[0])
        assert host.hits == hits + 1
        assert timed_call(live, signed(RSA_KID))[0].status_code == 200


class HugeJwksHost:
    """A JWKS of `size` bytes streamed in 64 KiB chunks, or sent as a gzip bomb (compressed once,
    here) that inflates to it; `sent` counts the streamed bytes that went out before the client
    hung up."""

    def __init__(self, size: int, gzipped: bool = False) -> None:
        self.size, self.sent = size, 0
        self.bomb = gzip.compress(b'{"keys": [], "pad": "' + b"x" * size + b'"}', 1) if gzipped else None

    async def jwks(self, request: Request) -> Response:
        if self.bomb is not None:
            return Response(self.bomb, media_type="application/json", headers={"Content-Encoding": "gzip"})

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"keys": [], "pad": "'
            while self.sent < self.size:
                if await request.is_disconnected():
                    return
                self.sent += 65536
                yield b"x" * 65536
            yield b'"}'

        return StreamingResponse(chunks(), media_type="application/json")


@pytest.mark.parametrize("gzipped", [False, True], ids=["streamed", "gzip bomb"])
def test_a_huge_jwks_is_refused_while_it_streams(gzipped: bool, knowledge: Knowledge, keys: dict[str, Any]) -> None:
    """Read whole, a JWKS of hundreds of MB took gigabytes of memory and held the worker seconds past
    the fetch timeout (parsing is CPU no timeout cancels). Now it stops at MAX_JWKS_BYTES, and a
    compressed one (identity was asked for) is never inflated: a quick 401."""
    host = HugeJwksHost(100_000_000 if gzipped else 500_000_000, gzipped)
    with LiveServer(Starlette(routes=[Route("/jwks.json", host.jwks)])) as jwks_live:
        settings = Settings(trusted_issuers={URL_ISS: jwks_live.url + "/jwks.json"})  # type: ignore[dict-item]
        with LiveServer(create_app(settings, knowledge)) as live:
            tok = token(keys[RSA_KID], live.url + "/cds-services", iss=URL_ISS, kid=RSA_KID, alg="RS256")
            tracemalloc.start()  # the service runs in this process: its allocations are counted too
            try:
                refused, took = timed_call(live, tok)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    assert_invalid_token(refused)
    assert took < 1
    assert peak < 20 * MAX_JWKS_BYTES, peak  # never held past the cap, streamed or inflated
    assert host.sent < 20 * MAX_JWKS_BYTES  # the read stopped near the cap (socket buffers hold the rest)


def test_a_jwks_file_of_deeply_nested_json_is_named_at_start_not_a_crash(
    knowledge: Knowledge, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(NESTED)
    with caplog.at_level(logging.ERROR):
        create_app(Settings(data_dir=tmp_path, trusted_issuers={FILE_ISS: str(path)}), knowledge)  # type: ignore[dict-item]
    assert "not a JSON file" in caplog.text


def test_jwks_reload_keeps_good_keys_through_empty_or_partly_broken_sets(tmp_path: Path, keys: dict[str, Any]) -> None:
    """A JWKS that comes back empty keeps the cached keys; one malformed key spoils no other."""
    import asyncio

    from cds_service.auth import JwksSource

    path = tmp_path / "jwks.json"
    good = _jwk(keys[EC_KID], EC_KID, "ES384")
    path.write_text(json.dumps({"keys": [good]}))
    source = JwksSource(str(path), refresh=0.0)
    assert asyncio.run(source.key(EC_KID, None)) is not None
    path.write_text(json.dumps({"keys": []}))
    assert asyncio.run(source.key("unknown-kid", None)) is None  # forces a reload: empty set
    assert asyncio.run(source.key(EC_KID, None)) is not None
    broken = {"kty": "EC", "kid": "broken", "crv": "P-384", "x": "not-base64!", "y": "??"}
    rsa = _jwk(keys[RSA_KID], RSA_KID, "RS256")
    path.write_text(json.dumps({"keys": [broken, rsa]}))
    assert asyncio.run(source.key(RSA_KID, None)) is not None
    assert asyncio.run(source.key("broken", None)) is None
