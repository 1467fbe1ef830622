"""Client JWT edges, attacked over real HTTP: algorithm and key confusion, kid tricks, claim types,
the Authorization header, audience derivation, replay, JWKS loading under load and misbehaviour,
401 hygiene, CORS around authentication, auth off, and the sandbox's real captured tokens.
"""

import asyncio
import base64
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import jwt.api_jws
import jwt.api_jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import cds_service.auth
from cds_service.app import create_app
from cds_service.auth import ReplayCache
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
from tests.conftest import LiveServer

ISS = "https://ehr-a.example.org"
ISS_B = "https://ehr-b.example.org"
ISS_URL = "https://ehr-url.example.org"
DISCOVERY = "/cds-services"
SERVICE = "/cds-services/b12-myalgia-patient-view"
OTHER_SERVICE = "/cds-services/b12-myalgia-order-select"
FEEDBACK = SERVICE + "/feedback"
EHR_ORIGIN = "https://ehr.example.org"
SANDBOX_DIR = Path(__file__).parent / "sandbox"  # the captures of shared/reference/sandbox-requests
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
# The public half of the sandbox's signing key (github cds-hooks/sandbox, keys/jwk-keypair.json).
SANDBOX_JWK = {
    "kty": "EC", "crv": "P-384", "use": "sig", "alg": "ES384",
    "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
    "x": "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB",
    "y": "Sm3mLE-n1zYNla_aiE3cb3nZsL51RbC7ysw3q8aJLxGm-hx79RPMYpITDjp7kgzy",
}
# RFC 6750: an invalid token gets an error code; no token at all (section 3.1) gets none
CHALLENGE = re.compile(r'^Bearer error="invalid_token", error_description="[^"\\]*"$|^Bearer realm="cds-services"$')


# --- keys, tokens, calls -------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk(key: Any, kid: str, alg: str, *, private: bool = False, **extra: Any) -> dict[str, Any]:
    source = key if private else key.public_key()
    data: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(source))
    return {**data, "kid": kid, "alg": alg, "use": "sig", **extra}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "ec": ec.generate_private_key(ec.SECP384R1()),
        "ec-b": ec.generate_private_key(ec.SECP384R1()),
        "ec-private": ec.generate_private_key(ec.SECP384R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa-weak": rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "attacker": ec.generate_private_key(ec.SECP384R1()),
    }


def token(key: Any, aud: str, *, iss: str = ISS, kid: str = "ec-1", alg: str = "ES384",
          headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = round(time.time())
    payload = {"iss": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    # signed at the JWS level, so that claims PyJWT would refuse to encode (a list as iss) can be sent
    return jwt.api_jws.encode(json.dumps(payload).encode(), key, algorithm=alg,
                              headers={"typ": "JWT", "kid": kid, **(headers or {})})


def unsigned(header: dict[str, Any], aud: str, iss: str = ISS, signature: bytes = b"\x00" * 96) -> str:
    """A token whose signature is junk: everything it reaches happens before any key is proven."""
    now = round(time.time())
    claims = {"iss": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


def call(server: LiveServer, path: str, tok: str | None, *, method: str | None = None,
         headers: dict[str, str] | None = None, auth: str = "Bearer") -> httpx.Response:
    sent = {**({"Authorization": f"{auth} {tok}"} if tok is not None else {}), **(headers or {})}
    verb = method or ("GET" if path.split("?", maxsplit=1)[0] == DISCOVERY else "POST")
    body: dict[str, Any] | None = {"feedback": []} if verb == "POST" else None
    return httpx.request(verb, server.url + path, headers=sent, json=body, timeout=30)


def assert_refused(response: httpx.Response, *secrets: str) -> None:
    """401, the JSON error body, one well-formed RFC 6750 challenge, and nothing echoed back."""
    assert response.status_code == 401, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "invalid_token"
    challenges = response.headers.get_list("www-authenticate")
    assert len(challenges) == 1 and CHALLENGE.match(challenges[0]), challenges
    for secret in secrets:
        assert secret not in response.text and secret not in challenges[0]


class JwksHost:
    """A JWKS on loopback that counts loads and can answer slowly."""

    def __init__(self, keys: list[dict[str, Any]], delay: float = 0.0) -> None:
        self.keys, self.delay, self.hits = keys, delay, 0

    async def jwks(self, _: Request) -> JSONResponse:
        self.hits += 1
        await asyncio.sleep(self.delay)
        return JSONResponse({"keys": self.keys})

    def serve(self) -> LiveServer:
        return LiveServer(Starlette(routes=[Route("/jwks.json", self.jwks)]))


@pytest.fixture(scope="module")
def jwks_host(keys: dict[str, Any]) -> Iterator[tuple[LiveServer, JwksHost]]:
    host = JwksHost([_jwk(keys["ec"], "url-1", "ES384")])
    with host.serve() as live:
        yield live, host


@pytest.fixture(scope="module")
def service(knowledge: Knowledge, keys: dict[str, Any], jwks_host: tuple[LiveServer, JwksHost],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("edges")
    file_a, file_b = folder / "a.json", folder / "b.json"
    file_a.write_text(json.dumps({"keys": [
        _jwk(keys["ec"], "ec-1", "ES384"),
        _jwk(keys["rsa"], "rsa-1", "RS256"),
        _jwk(keys["rsa-weak"], "rsa-weak", "RS256"),
        _jwk(keys["rsa"], "rsa-enc", "RS256", use="enc"),
        _jwk(keys["ec-private"], "ec-private", "ES384", private=True),
        _jwk(keys["ec"], "shared", "ES384"),
        {"kty": "oct", "kid": "hmac-1", "k": _b64(b"a shared secret of the issuer"), "alg": "HS256"},
        {"kty": "EC", "crv": "P-384", "x": SANDBOX_JWK["x"], "y": SANDBOX_JWK["y"]},  # no kid: unusable
    ]}))
    file_b.write_text(json.dumps({"keys": [_jwk(keys["ec-b"], "shared", "ES384")]}))
    settings = Settings(data_dir=folder, jwks_refresh_seconds=60, trusted_issuers={
        ISS: str(file_a), ISS_B: str(file_b), ISS_URL: f"{jwks_host[0].url}/jwks.json"})
    with LiveServer(create_app(settings, knowledge)) as live:
        yield live


# --- the sandbox's own tokens ----------------------------------------------------------------------

def _captured(name: str) -> tuple[str, str, str, dict[str, Any]]:
    capture = json.loads((SANDBOX_DIR / f"{name}-headers-and-jwt.json").read_text())
    method, url = capture["request_line"].split()
    scheme, tok = capture["headers"]["authorization"].split(" ", 1)
    assert scheme == "Bearer"
    return method, url, tok, capture["jwt_payload"]


@pytest.mark.parametrize("base", ["http://127.0.0.1:8082", "http://127.0.0.1:8082/"])
def test_sandbox_captured_tokens_verify_with_its_published_public_key(
    base: str, knowledge: Knowledge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every captured token (discovery and a service call, ES384, jku to the internet) verifies
    offline against the static public JWK, with the clock set to one second after its iat
    (the captures have since expired). The service call's id is from the sandbox's own demo, so
    passing authentication leads to a 404, never a 401."""
    jwks = tmp_path / "sandbox-jwks.json"
    jwks.write_text(json.dumps({"keys": [SANDBOX_JWK]}))
    settings = Settings(data_dir=tmp_path, trusted_issuers={SANDBOX_ISS: str(jwks)},
                        public_base_url=base)
    captures = [_captured("discovery"), _captured("service-call")]
    issued_at = captures[0][3]["iat"]

    class SandboxClock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> "SandboxClock":
            return cls.fromtimestamp(issued_at + 1, tz)

    with LiveServer(create_app(settings, knowledge)) as live:
        if time.time() > max(c[3]["exp"] for c in captures) + 60:  # today, they are simply expired
            for method, url, tok, _ in captures:
                expired = httpx.request(method, live.url + url.split(":8082", 1)[1],
                                        headers={"Authorization": f"Bearer {tok}"}, json={} if method == "POST" else None)
                assert_refused(expired, tok)
                assert "expired" in expired.json()["message"]
        monkeypatch.setattr(jwt.api_jwt, "datetime", SandboxClock)
        method, url, tok, claims = captures[0]
        assert (method, claims["aud"], claims["iss"]) == ("GET", url, SANDBOX_ISS)
        discovery = httpx.get(live.url + "/cds-services", headers={"Authorization": f"Bearer {tok}"})
        assert discovery.status_code == 200 and discovery.json()["services"]
        method, url, tok, claims = captures[1]
        assert method == "POST" and claims["aud"] == url
        hook = httpx.post(live.url + url.split(":8082", 1)[1], headers={"Authorization": f"Bearer {tok}"}, json={})
        assert hook.status_code == 404 and hook.json()["error"] == "not_found"


def test_captured_sandbox_token_is_refused_when_another_key_is_registered(
    knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys["attacker"], SANDBOX_JWK["kid"], "ES384")]}))
    settings = Settings(data_dir=tmp_path, trusted_issuers={SANDBOX_ISS: str(jwks)},
                        public_base_url="http://127.0.0.1:8082")
    _, _, tok, claims = _captured("discovery")

    class SandboxClock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> "SandboxClock":
            return cls.fromtimestamp(claims["iat"] + 1, tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", SandboxClock)
    with LiveServer(create_app(settings, knowledge)) as live:
        refused = httpx.get(live.url + "/cds-services", headers={"Authorization": f"Bearer {tok}"})
    assert_refused(refused, tok)
    assert "signature" in refused.json()["message"]


# --- algorithm and key confusion -------------------------------------------------------------------

CONFUSED_HEADERS: dict[str, dict[str, Any]] = {
    "alg as a list": {"alg": ["ES384"], "kid": "ec-1"},
    "alg as an object": {"alg": {"name": "ES384"}, "kid": "ec-1"},
    "RS256 on the EC key": {"alg": "RS256", "kid": "ec-1"},
    "PS384 on the EC key": {"alg": "PS384", "kid": "ec-1"},
    "ES384 on the RSA key": {"alg": "ES384", "kid": "rsa-1"},
}


@pytest.mark.parametrize("case", CONFUSED_HEADERS, ids=list(CONFUSED_HEADERS))
def test_alg_confusion_before_any_signature_is_a_401_not_a_500(case: str, service: LiveServer) -> None:
    tok = unsigned(CONFUSED_HEADERS[case], service.url + DISCOVERY)
    assert_refused(call(service, DISCOVERY, tok), tok)


REFUSED_HEADERS: dict[str, dict[str, Any]] = {
    "alg missing": {"kid": "ec-1"},
    "alg null": {"alg": None, "kid": "ec-1"},
    "alg as a number": {"alg": 384, "kid": "ec-1"},
    "alg lower case": {"alg": "es384", "kid": "ec-1"},
    "alg with a space": {"alg": "ES384 ", "kid": "ec-1"},
    "alg none": {"alg": "none", "kid": "ec-1"},
    "EdDSA": {"alg": "EdDSA", "kid": "ec-1"},
    "ES256K": {"alg": "ES256K", "kid": "ec-1"},
    "ES256 on the P-384 key": {"alg": "ES256", "kid": "ec-1"},
    "ES512 on the P-384 key": {"alg": "ES512", "kid": "ec-1"},
    "HS256 on the oct key": {"alg": "HS256", "kid": "hmac-1"},
    "RS256 naming the oct key": {"alg": "RS256", "kid": "hmac-1"},
    "kid missing": {"alg": "ES384"},
    "kid as a number": {"alg": "ES384", "kid": 1},
    "kid empty": {"alg": "ES384", "kid": ""},
    "kid path-like": {"alg": "ES384", "kid": "../../../../etc/passwd"},
    "kid 8 KB long": {"alg": "ES384", "kid": "k" * 8192},
    "kid with quotes": {"alg": "ES384", "kid": 'x", error_description="ok'},
    "unknown crit extension": {"alg": "ES384", "kid": "ec-1", "crit": ["exp"], "exp": 1},
    "crit b64 false": {"alg": "ES384", "kid": "ec-1", "crit": ["b64"], "b64": False},
    "crit not a list": {"alg": "ES384", "kid": "ec-1", "crit": "b64"},
}


@pytest.mark.parametrize("case", REFUSED_HEADERS, ids=list(REFUSED_HEADERS))
def test_unusable_headers_are_refused(case: str, service: LiveServer) -> None:
    tok = unsigned(REFUSED_HEADERS[case], service.url + DISCOVERY)
    assert_refused(call(service, DISCOVERY, tok), tok, "etc/passwd", "k" * 64, "x\"")


def test_embedded_and_remote_keys_in_the_header_are_never_used(service: LiveServer, keys: dict[str, Any]) -> None:
    """An attacker signs with their own key and offers it in `jwk`, `jku`, `x5u` or as an
    unregistered kid: none of it is a trusted key."""
    aud = service.url + DISCOVERY
    attacker = keys["attacker"]
    offered = _jwk(attacker, "evil", "ES384")
    offers: list[dict[str, Any]] = [{"jwk": offered}, {"jku": "https://evil.example.org/jwks.json"},
                                     {"x5u": "https://evil.example.org/cert.pem"}, {"jwk": {**offered, "kid": "ec-1"}}]
    for headers in offers:
        kid = headers["jwk"]["kid"] if "jwk" in headers else "evil"
        tok = token(attacker, aud, kid=kid, headers=headers)
        assert_refused(call(service, DISCOVERY, tok), tok)


def test_same_kid_under_two_issuers_keeps_the_keys_apart(service: LiveServer, keys: dict[str, Any]) -> None:
    aud = service.url + DISCOVERY
    assert call(service, DISCOVERY, token(keys["ec-b"], aud, iss=ISS_B, kid="shared")).status_code == 200
    assert call(service, DISCOVERY, token(keys["ec"], aud, iss=ISS, kid="shared")).status_code == 200
    crossed = token(keys["ec"], aud, iss=ISS_B, kid="shared")  # A's key, claiming to be B
    assert_refused(call(service, DISCOVERY, crossed), crossed)
    other = token(keys["rsa"], aud, iss=ISS_B, kid="rsa-1", alg="RS256")  # A's kid, not in B's JWKS
    assert_refused(call(service, DISCOVERY, other), other)


@pytest.mark.parametrize("alg", ["PS256", "RS384", "RS512"])
def test_a_key_verifies_only_the_algorithm_its_jwk_names(alg: str, service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["rsa"], service.url + DISCOVERY, kid="rsa-1", alg=alg)
    assert_refused(call(service, DISCOVERY, tok), tok)


def test_the_key_with_its_own_algorithm_verifies(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["rsa"], service.url + DISCOVERY, kid="rsa-1", alg="RS256")
    assert call(service, DISCOVERY, tok).status_code == 200


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")
def test_weak_rsa_key_in_the_jwks_is_not_trusted(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["rsa-weak"], service.url + DISCOVERY, kid="rsa-weak", alg="RS256")
    assert_refused(call(service, DISCOVERY, tok), tok)


def test_encryption_key_in_the_jwks_does_not_verify_signatures(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["rsa"], service.url + DISCOVERY, kid="rsa-enc", alg="RS256")
    assert_refused(call(service, DISCOVERY, tok), tok)


def test_private_jwk_in_the_jwks_still_verifies_by_its_public_half(service: LiveServer, keys: dict[str, Any]) -> None:
    """An operator who pastes a whole keypair (as the sandbox publishes it) still gets verification,
    not a 500; the signature check uses the public half."""
    aud = service.url + DISCOVERY
    assert call(service, DISCOVERY, token(keys["ec-private"], aud, kid="ec-private")).status_code == 200
    forged = token(keys["attacker"], aud, kid="ec-private")
    assert_refused(call(service, DISCOVERY, forged), forged)


# --- typ -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typ", ["JWT", "jwt", "Jwt", "application/jwt", ""])  # "": PyJWT leaves typ out
def test_typ_jwt_in_any_case_or_left_out_passes(typ: str, service: LiveServer, keys: dict[str, Any]) -> None:
    """CDS Hooks 2.0 requires typ JWT; media types are case-insensitive and may be written in full
    (application/jwt, RFC 7515), and an absent typ is taken (leniency)."""
    tok = token(keys["ec"], service.url + DISCOVERY, headers={"typ": typ})
    assert jwt.get_unverified_header(tok).get("typ", "") == typ
    assert call(service, DISCOVERY, tok).status_code == 200


@pytest.mark.parametrize("typ", ["at+jwt", "JOSE", "application/at+jwt", "JWT ", "dpop+jwt", 1, ["JWT"]])
def test_another_typ_is_refused_though_signed_by_a_trusted_key(
    typ: Any, service: LiveServer, keys: dict[str, Any]
) -> None:
    tok = token(keys["ec"], service.url + DISCOVERY, headers={"typ": typ})
    response = call(service, DISCOVERY, tok)
    assert_refused(response, tok)
    assert 'error_description="typ must be JWT"' in response.headers["www-authenticate"]


# --- claims ----------------------------------------------------------------------------------------

def _now() -> int:
    return round(time.time())


BAD_CLAIMS: dict[str, Callable[[str], dict[str, Any]]] = {
    "iss as a list": lambda aud: {"iss": [ISS]},
    "iss with a trailing slash": lambda aud: {"iss": ISS + "/"},
    "iss differing in case": lambda aud: {"iss": ISS.upper()},
    "aud with a trailing slash": lambda aud: {"aud": aud + "/"},
    "aud list without this URL": lambda aud: {"aud": [aud + "/other", "https://evil.example.org"]},
    "aud list with a non-string": lambda aud: {"aud": [aud, 1]},
    "aud an object": lambda aud: {"aud": {"url": aud}},
    "aud empty": lambda aud: {"aud": ""},
    "no aud": lambda aud: {"aud": None},
    "no iss": lambda aud: {"iss": None},
    "exp missing": lambda aud: {"exp": None},
    "iat missing": lambda aud: {"iat": None},
    "exp in the past": lambda aud: {"iat": _now() - 400, "exp": _now() - 100},
    "exp NaN": lambda aud: {"exp": float("nan")},
    "exp Infinity": lambda aud: {"exp": float("inf")},
    "exp not a number": lambda aud: {"exp": "soon"},
    "exp true": lambda aud: {"exp": True},
    "exp 1e300": lambda aud: {"exp": 1e300},
    "iat negative": lambda aud: {"iat": -1},
    "iat a minute ahead": lambda aud: {"iat": _now() + 60, "exp": _now() + 120},
    "nbf a minute ahead": lambda aud: {"nbf": _now() + 60},
    "nbf not a number": lambda aud: {"nbf": "later"},
    "lifetime an hour": lambda aud: {"exp": _now() + 3600},
    "jti a number": lambda aud: {"jti": 12345},
    "jti empty": lambda aud: {"jti": ""},
    "jti null": lambda aud: {"jti": None},
    "jti a list": lambda aud: {"jti": ["a"]},
}


@pytest.mark.parametrize("case", BAD_CLAIMS, ids=list(BAD_CLAIMS))
def test_bad_claims_are_refused(case: str, service: LiveServer, keys: dict[str, Any]) -> None:
    claims: dict[str, Any] = {"aud": service.url + DISCOVERY}
    claims.update(BAD_CLAIMS[case](claims["aud"]))
    tok = token(keys["ec"], claims.pop("aud"), **claims)
    assert_refused(call(service, DISCOVERY, tok), tok)


GOOD_CLAIMS: dict[str, Callable[[str], dict[str, Any]]] = {
    "aud list holding this URL": lambda aud: {"aud": ["https://other.example.org/cds-services", aud]},
    "iat and exp as floats": lambda aud: {"iat": time.time() + 0.4, "exp": time.time() + 290.4},
    "iat rounded up, sandbox style": lambda aud: {"iat": _now() + 1, "exp": _now() + 301},
    "lifetime exactly 300 s": lambda aud: {"iat": _now(), "exp": _now() + 300},
    "nbf now": lambda aud: {"nbf": _now()},
    "sub and tenant": lambda aud: {"sub": "client-1", "tenant": "t-1"},
    "2 KB jti": lambda aud: {"jti": "j" * 2048},
    "unicode jti": lambda aud: {"jti": "jti-\u00e9\u4e2d-" + uuid.uuid4().hex},
}


@pytest.mark.parametrize("case", GOOD_CLAIMS, ids=list(GOOD_CLAIMS))
def test_unusual_but_valid_claims_pass(case: str, service: LiveServer, keys: dict[str, Any]) -> None:
    claims: dict[str, Any] = {"aud": service.url + DISCOVERY}
    claims.update(GOOD_CLAIMS[case](claims["aud"]))
    assert call(service, DISCOVERY, token(keys["ec"], claims.pop("aud"), **claims)).status_code == 200


def test_exp_beyond_a_double_is_a_401_not_a_500(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["ec"], service.url + DISCOVERY, exp=10**400)
    assert_refused(call(service, DISCOVERY, tok), tok)


def test_numeric_dates_as_strings_are_refused(service: LiveServer, keys: dict[str, Any]) -> None:
    now = _now()
    tok = token(keys["ec"], service.url + DISCOVERY, iat=str(now), exp=str(now + 300))
    assert_refused(call(service, DISCOVERY, tok), tok)


def test_lifetime_just_over_five_minutes_is_refused(service: LiveServer, keys: dict[str, Any]) -> None:
    """CDS_JWT_MAX_LIFETIME_SECONDS defaults to 300 (a local policy; CDS Hooks 2.0 sets no cap)."""
    now = _now()
    tok = token(keys["ec"], service.url + DISCOVERY, iat=now, exp=now + 304)
    response = call(service, DISCOVERY, tok)
    assert_refused(response, tok)
    assert "lifetime (exp - iat) exceeds 300 seconds" in response.headers["www-authenticate"]


def test_the_lifetime_cap_is_a_setting(knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path) -> None:
    """An EHR issuing hour-long tokens is served once CDS_JWT_MAX_LIFETIME_SECONDS allows them."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys["ec"], "ec-1", "ES384")]}))
    settings = Settings(data_dir=tmp_path, trusted_issuers={ISS: str(jwks)}, jwt_max_lifetime_seconds=3600)
    with LiveServer(create_app(settings, knowledge)) as live:
        aud, now = live.url + DISCOVERY, _now()
        assert call(live, DISCOVERY, token(keys["ec"], aud, iat=now, exp=now + 3600)).status_code == 200
        over = token(keys["ec"], aud, iat=now, exp=now + 3601)
        response = call(live, DISCOVERY, over)
        assert_refused(response, over)
        assert "exceeds 3600 seconds" in response.headers["www-authenticate"]


# --- the Authorization header ----------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer   "])
def test_scheme_is_case_insensitive_and_extra_spaces_are_fine(
    scheme: str, service: LiveServer, keys: dict[str, Any]
) -> None:
    tok = token(keys["ec"], service.url + DISCOVERY)
    assert call(service, DISCOVERY, tok, auth=scheme).status_code == 200


@pytest.mark.parametrize("value", ["", "Bearer", "Basic dXNlcjpwYXNz", "Token abc.def.ghi",
                                   "Bearer\tabc.def.ghi", "Bearer a.b", "Bearer ...", "Bearer a.b.c.d"])
def test_malformed_authorization_values_are_refused(value: str, service: LiveServer) -> None:
    response = httpx.get(service.url + DISCOVERY, headers={"Authorization": value})
    assert_refused(response)


def test_non_ascii_header_bytes_are_a_401(service: LiveServer) -> None:
    response = httpx.get(service.url + DISCOVERY, headers=[(b"Authorization", b"Bearer \xff\xfe.\xe9.x")])
    assert_refused(response)


def test_deeply_nested_json_in_the_token_is_a_401(service: LiveServer) -> None:
    head = _b64(json.dumps({"alg": "ES384", "kid": "ec-1"}).encode())
    for tok in (f"{_b64(b'[' * 50_000)}.{_b64(b'{}')}.AA", f"{head}.{_b64(b'[' * 50_000)}.AA"):
        assert_refused(call(service, DISCOVERY, tok), tok)


def test_two_authorization_headers_use_the_first_and_never_500(service: LiveServer, keys: dict[str, Any]) -> None:
    aud = service.url + DISCOVERY
    good = token(keys["ec"], aud)
    junk_first = httpx.get(aud, headers=[("Authorization", "Bearer junk"), ("Authorization", f"Bearer {good}")])
    assert_refused(junk_first, good)
    good_first = httpx.get(aud, headers=[("Authorization", f"Bearer {token(keys['ec'], aud)}"),
                                         ("Authorization", "Bearer junk")])
    assert good_first.status_code == 200


def test_an_authorization_header_far_larger_than_any_jwt_is_refused_unread(service: LiveServer) -> None:
    head = _b64(json.dumps({"alg": "ES384", "kid": "ec-1"}).encode())
    huge = f"{head}.{'A' * 16_000_000}.AA"
    try:
        response = httpx.get(service.url + DISCOVERY, headers={"Authorization": f"Bearer {huge}"}, timeout=30)
    except httpx.TransportError:
        return  # the connection was closed on the oversized header: refused unread
    assert response.status_code in (400, 401, 431), response.status_code
    if response.status_code == 401:  # refused on its length, before any decoding
        assert "too large" in response.headers["www-authenticate"]


# --- audience --------------------------------------------------------------------------------------

def test_aud_ignores_the_query_string_of_the_call(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["ec"], service.url + DISCOVERY)
    assert call(service, DISCOVERY + "?tenant=a&x=%2F", tok).status_code == 200


def test_a_token_is_bound_to_its_endpoint(service: LiveServer, keys: dict[str, Any]) -> None:
    """discovery, a service, its feedback, another service's feedback: each needs its own aud."""
    for made_for, used_on in [(DISCOVERY, SERVICE), (SERVICE, FEEDBACK), (FEEDBACK, SERVICE),
                              (FEEDBACK, OTHER_SERVICE + "/feedback"), (SERVICE, OTHER_SERVICE),
                              (DISCOVERY, "/cds-services/unknown-id")]:
        tok = token(keys["ec"], service.url + made_for)
        assert_refused(call(service, used_on, tok), tok)


def test_refused_token_is_not_spent(service: LiveServer, keys: dict[str, Any]) -> None:
    """A token sent to the wrong URL first (401) still works once on the right one."""
    tok = token(keys["ec"], service.url + DISCOVERY)
    assert_refused(call(service, SERVICE, tok), tok)
    assert call(service, DISCOVERY, tok).status_code == 200
    assert_refused(call(service, DISCOVERY, tok), tok)


@pytest.mark.parametrize("base", ["https://cds.example.org", "https://cds.example.org/", "https://cds.example.org/b12"])
def test_public_base_url_fixes_the_audience_whatever_the_host_header(
    base: str, knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys["ec"], "ec-1", "ES384")]}))
    settings = Settings(data_dir=tmp_path, trusted_issuers={ISS: str(jwks)},
                        public_base_url=base, cors_origins=[EHR_ORIGIN])
    public = base.rstrip("/")
    with LiveServer(create_app(settings, knowledge)) as live:
        for path in (DISCOVERY, SERVICE, FEEDBACK):
            tok = token(keys["ec"], public + path)
            answer = call(live, path, tok, headers={"Host": "attacker.example.org"})
            assert answer.status_code != 401, (path, answer.text)  # auth passed (400 for the empty feedback)
        spoofed = token(keys["ec"], "http://attacker.example.org/cds-services")  # minted for another service
        assert_refused(call(live, DISCOVERY, spoofed, headers={"Host": "attacker.example.org"}), spoofed)
        for aud in (public.replace("cds.", "CDS.") + DISCOVERY, public.replace(".org", ".org:443") + DISCOVERY,
                    public + DISCOVERY + "/", live.url + DISCOVERY):
            tok = token(keys["ec"], aud)  # aud compared as a string (RFC 7519), no canonicalisation
            assert_refused(call(live, DISCOVERY, tok), tok)
        # a 401 seen by a browser from an allowed origin carries CORS, so the page can read it
        refused = call(live, DISCOVERY, None, headers={"Origin": EHR_ORIGIN})
        assert_refused(refused)
        assert refused.headers["access-control-allow-origin"] == EHR_ORIGIN
        assert "origin" in refused.headers.get("vary", "").lower()
        assert "access-control-allow-credentials" not in refused.headers
        other = call(live, DISCOVERY, None, headers={"Origin": "https://evil.example.org"})
        assert_refused(other)
        assert "access-control-allow-origin" not in other.headers
        preflight = httpx.options(live.url + SERVICE, headers={
            "Origin": "https://evil.example.org", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers


# --- replay ----------------------------------------------------------------------------------------

def test_concurrent_replays_of_one_token_pass_exactly_once(service: LiveServer, keys: dict[str, Any]) -> None:
    tok = token(keys["ec"], service.url + DISCOVERY)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: call(service, DISCOVERY, tok).status_code, range(8)))
    assert sorted(codes) == [200] + [401] * 7


def test_same_jti_from_two_issuers_is_two_tokens(service: LiveServer, keys: dict[str, Any]) -> None:
    aud = service.url + DISCOVERY
    jti = str(uuid.uuid4())
    assert call(service, DISCOVERY, token(keys["ec"], aud, jti=jti)).status_code == 200
    assert call(service, DISCOVERY, token(keys["ec-b"], aud, iss=ISS_B, kid="shared", jti=jti)).status_code == 200
    again = token(keys["ec"], aud, jti=jti)  # a new token, but the issuer's jti was used
    assert_refused(call(service, DISCOVERY, again), again)


def test_replay_cache_cost_does_not_grow_with_live_tokens() -> None:
    """The sweep of expired jti values runs at most once a purge interval, not on every call: with
    100k live tokens held, the next calls are dictionary look-ups (the table is not rebuilt)."""
    cache = ReplayCache()
    expires = time.time() + 300
    cache.seen = {(ISS, f"live-{i}"): expires for i in range(100_000)}  # 100k unexpired tokens held
    assert cache.check_and_add(ISS, "new-0", expires)  # the first call sweeps
    swept = cache.seen
    for i in range(1, 20):
        assert cache.check_and_add(ISS, f"new-{i}", expires)
    assert cache.seen is swept and len(swept) == 100_020
    assert not cache.check_and_add(ISS, "live-7", expires)


# --- JWKS loading ----------------------------------------------------------------------------------

def test_a_storm_of_unknown_kids_loads_the_jwks_once(
    service: LiveServer, keys: dict[str, Any], jwks_host: tuple[LiveServer, JwksHost]
) -> None:
    """40 tokens with random kids, half of them at once: one load inside the refresh interval;
    the issuer's real key, loaded by that one load, then verifies without another."""
    host = jwks_host[1]
    aud = service.url + DISCOVERY
    before = host.hits

    def unknown(_: int) -> httpx.Response:
        return call(service, DISCOVERY, token(keys["attacker"], aud, iss=ISS_URL, kid=uuid.uuid4().hex))

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(unknown, range(20)))
    responses += [unknown(i) for i in range(20)]
    for response in responses:
        assert_refused(response)
    assert host.hits - before <= 1
    assert call(service, DISCOVERY, token(keys["ec"], aud, iss=ISS_URL, kid="url-1")).status_code == 200
    assert host.hits - before <= 1


def test_concurrent_first_calls_wait_for_the_jwks_load(
    knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path
) -> None:
    slow = JwksHost([_jwk(keys["ec"], "url-1", "ES384")], delay=0.5)
    with slow.serve() as host:
        settings = Settings(data_dir=tmp_path, trusted_issuers={ISS_URL: f"{host.url}/jwks.json"})
        with LiveServer(create_app(settings, knowledge)) as live:
            aud = live.url + DISCOVERY
            codes: list[int] = []

            def first_call() -> None:
                codes.append(call(live, DISCOVERY, token(keys["ec"], aud, iss=ISS_URL, kid="url-1")).status_code)

            threads = [threading.Thread(target=first_call) for _ in range(3)]
            for thread in threads:
                thread.start()
                time.sleep(0.05)
            for thread in threads:
                thread.join(timeout=10)
    assert slow.hits == 1
    assert codes == [200, 200, 200]


def test_a_trickling_jwks_cannot_hold_a_call_past_the_fetch_timeout(
    knowledge: Knowledge, keys: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps({"keys": [_jwk(keys["ec"], "url-1", "ES384")]}).encode()

    async def trickle(_: Request) -> StreamingResponse:
        async def chunks() -> Any:
            step = len(body) // 10 + 1
            for i in range(0, len(body), step):
                await asyncio.sleep(0.15)  # each read well inside the timeout; the whole 1.5 s
                yield body[i:i + step]
        return StreamingResponse(chunks(), media_type="application/json")

    monkeypatch.setattr(cds_service.auth, "JWKS_FETCH_TIMEOUT", 0.3)
    with LiveServer(Starlette(routes=[Route("/jwks.json", trickle)])) as host:
        settings = Settings(data_dir=tmp_path, trusted_issuers={ISS_URL: f"{host.url}/jwks.json"})
        with LiveServer(create_app(settings, knowledge)) as live:
            started = time.perf_counter()
            response = call(live, DISCOVERY, token(keys["ec"], live.url + DISCOVERY, iss=ISS_URL, kid="url-1"))
            took = time.perf_counter() - started
    assert took < 1.0, f"the call waited {took:.1f} s for a JWKS with a 0.3 s timeout"
    assert_refused(response)


def test_jwks_url_scheme_is_checked_case_insensitively() -> None:
    with pytest.raises(ValueError, match="https"):
        create_app(Settings(trusted_issuers={ISS: "HTTP://jwks.example.org/jwks.json"}))


# --- 401 hygiene -----------------------------------------------------------------------------------

def test_401_never_echoes_token_issuer_kid_or_claims(service: LiveServer, keys: dict[str, Any]) -> None:
    aud = service.url + DISCOVERY
    marker = "SECRET-" + uuid.uuid4().hex
    for tok in (token(keys["attacker"], aud, kid=marker, sub=marker),
                token(keys["ec"], aud, iss="https://" + marker.lower() + ".example.org"),
                token(keys["ec"], aud + marker),
                token(keys["attacker"], aud, jti=marker),
                marker):
        response = call(service, DISCOVERY, tok, headers={"X-Request-ID": "probe-1"})
        assert_refused(response, tok, marker, marker.lower())
        assert response.headers["x-request-id"] == "probe-1"
        assert set(response.json()) <= {"error", "message", "details"}


def test_every_cds_path_and_method_needs_a_token(service: LiveServer) -> None:
    for method, path in [("GET", DISCOVERY), ("HEAD", DISCOVERY), ("POST", SERVICE), ("POST", FEEDBACK),
                         ("GET", SERVICE), ("PUT", SERVICE), ("DELETE", FEEDBACK), ("POST", "/cds-services/nope"),
                         ("POST", "/cds-services/nope/feedback"), ("GET", "/%63ds-services"),
                         ("OPTIONS", SERVICE), ("GET", "/cds-services/")]:
        response = httpx.request(method, service.url + path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"] == 'Bearer realm="cds-services"'  # RFC 6750 3.1: no error code
    for path in ("/healthz", "/openapi.json"):
        assert httpx.get(service.url + path).status_code == 200


# --- CORS around authentication --------------------------------------------------------------------

def test_preflight_for_every_endpoint_needs_no_token(service: LiveServer, keys: dict[str, Any]) -> None:
    listed = call(service, DISCOVERY, token(keys["ec"], service.url + DISCOVERY)).json()["services"]
    paths = [DISCOVERY] + [f"/cds-services/{s['id']}{tail}" for s in listed for tail in ("", "/feedback")]
    assert len(paths) == 1 + 2 * len(listed) and len(listed) >= 3
    for path in paths + ["/cds-services/unknown-id"]:
        method = "GET" if path == DISCOVERY else "POST"
        preflight = httpx.options(service.url + path, headers={
            "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type"})
        assert preflight.status_code == 200, (path, preflight.text)
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in preflight.headers
        allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
    refused = httpx.options(service.url + SERVICE, headers={
        "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "DELETE"})
    assert refused.status_code == 400


def test_wildcard_cors_never_allows_credentials(service: LiveServer, keys: dict[str, Any]) -> None:
    response = call(service, DISCOVERY, token(keys["ec"], service.url + DISCOVERY),
                    headers={"Origin": "https://evil.example.org", "Cookie": "session=1"})
    assert response.status_code == 200
    assert response.headers.get("access-control-allow-credentials") != "true"
    assert "x-request-id" in response.headers.get("access-control-expose-headers", "").lower()


def test_browser_clients_may_send_their_request_id(service: LiveServer) -> None:
    preflight = httpx.options(service.url + SERVICE, headers={
        "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-request-id"})
    assert preflight.status_code == 200


# --- auth off --------------------------------------------------------------------------------------

def test_with_auth_off_the_authorization_header_is_ignored(server: LiveServer) -> None:
    """No issuers configured: no token needed, and a hostile one cannot turn a call into a 401 or 500."""
    hostile = unsigned({"alg": ["ES384"], "kid": "ec-1"}, server.url + DISCOVERY)
    for tok in (None, "junk", hostile):
        assert call(server, DISCOVERY, tok).status_code == 200
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    stored = httpx.post(server.url + FEEDBACK, json={"feedback": [item]}, headers={"Authorization": "Bearer junk"})
    assert stored.status_code == 200
    assert "www-authenticate" not in stored.headers
