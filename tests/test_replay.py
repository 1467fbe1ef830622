"""A JWT used on one instance is refused on every other: the token ledger in real SQLite and
PostgreSQL, two service instances over real HTTP, and the fallback while the database is down."""

import json
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.knowledge import Knowledge
from cds_service.replay import RETRY_SECONDS
from cds_service.settings import Settings
from cds_service.storage import Storage, create_db_engine
from cds_service.tables import token_use
from tests.conftest import LiveServer
from tests.postgres import PostgresServer

ISS = "https://ehr.example.org"
KID = "ec-ledger"
PUBLIC = "https://cds.example.org"  # both instances sit behind one load-balanced name


def _settings(tmp_path: Path, database_url: str | None, key: ec.EllipticCurvePrivateKey, db_timeout: float = 1) -> Settings:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": KID, "alg": "ES384", "use": "sig"}]}))
    return Settings(data_dir=tmp_path, database_url=database_url, patient_hash_key="test-patient-hash-key", db_timeout=db_timeout,
                    trusted_issuers={ISS: str(jwks)}, public_base_url=PUBLIC)  # type: ignore[arg-type]


def _token(key: Any, jti: str | None = None) -> str:
    now = round(time.time())
    claims = {"iss": ISS, "aud": f"{PUBLIC}/cds-services", "iat": now, "exp": now + 300, "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID})


def _discover(server: LiveServer, tok: str) -> httpx.Response:
    return httpx.get(f"{server.url}/cds-services", headers={"Authorization": f"Bearer {tok}"}, timeout=30)


def test_token_used_on_one_instance_is_refused_on_another(
    db_settings: Settings, tmp_path: Path, knowledge: Knowledge
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    settings = _settings(tmp_path, db_settings.database_url, key)
    jti = str(uuid.uuid4())
    with LiveServer(create_app(settings, knowledge)) as first, LiveServer(create_app(settings, knowledge)) as second:
        tok = _token(key, jti)
        assert _discover(first, tok).status_code == 200
        replay = _discover(second, tok)
        assert replay.status_code == 401 and "jti" in replay.headers["www-authenticate"]
        assert _discover(second, _token(key)).status_code == 200
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            stored = connection.execute(select(token_use.c.token_hash)).scalars().all()
    finally:
        engine.dispose()
    assert len(stored) == 2 and all(len(h) == 64 for h in stored)
    assert jti not in stored  # kept as a hash of issuer and jti, never in clear


def test_ledger_outage_falls_back_to_the_process_cache(
    pg_server: PostgresServer, tmp_path: Path, knowledge: Knowledge
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    settings = _settings(tmp_path, pg_server.new_database(), key)
    app = create_app(settings, knowledge)
    with LiveServer(app) as live:
        assert _discover(live, _token(key)).status_code == 200
        pg_server.stop()
        try:
            tok = _token(key)
            started = time.perf_counter()
            assert _discover(live, tok).status_code == 200
            assert time.perf_counter() - started < settings.db_timeout + 1.5
            assert _discover(live, tok).status_code == 401  # this process still remembers it
        finally:
            pg_server.start()
        assert _discover(live, _token(key)).status_code == 200
        # the outage ends: a call after the retry interval sends a claim in the background, and its
        # success makes the checks shared again (a token used here is refused by another instance)
        ledger = app.state.authenticator.ledger
        assert ledger.available is False
        time.sleep(RETRY_SECONDS + 0.2)
        assert _discover(live, _token(key)).status_code == 200
        deadline = time.monotonic() + 10
        while not ledger.available and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.available
        shared = _token(key)
        assert _discover(live, shared).status_code == 200
        with LiveServer(create_app(settings, knowledge)) as other:
            assert _discover(other, shared).status_code == 401


def test_a_hung_database_holds_up_no_call(tmp_path: Path, knowledge: Knowledge) -> None:
    """A database that accepts connections and never answers (a hung server, a black-holed route):
    the first call waits at most the ledger's short wait, the ones after it not at all."""
    key = ec.generate_private_key(ec.SECP384R1())
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes the handshake; nobody ever answers
        url = f"postgresql+psycopg://cds@127.0.0.1:{silent.getsockname()[1]}/cds"
        with LiveServer(create_app(_settings(tmp_path, url, key, db_timeout=5), knowledge)) as live:
            waits = []
            for _ in range(6):
                tok = _token(key)
                started = time.perf_counter()
                assert _discover(live, tok).status_code == 200
                waits.append(time.perf_counter() - started)
                assert _discover(live, tok).status_code == 401  # replays are still refused, by this process
    # bounds far above the expected (0.5 s, then milliseconds) and far below the 5 s timeout per call
    assert waits[0] < 2.5 and sum(waits[1:]) < 2.5, waits


def test_expired_token_ids_are_purged_off_the_claim_path(tmp_path: Path) -> None:
    """The sweep is its own statement, run at most once a period, never inside a claim's wait."""
    storage = Storage(Settings(data_dir=tmp_path))
    try:
        assert storage.claim_token("a" * 64, datetime(2000, 1, 1)) and storage.claim_token("b" * 64, datetime(2999, 1, 1))
        assert storage.token_purge_due() and not storage.token_purge_due()
        storage.purge_expired_tokens()
        with storage.engine.connect() as connection:
            assert connection.execute(select(token_use.c.token_hash)).scalars().all() == ["b" * 64]
    finally:
        storage.close()
