"""Shared fixtures: a real server on loopback, the knowledge, and the scenario loader."""

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import uvicorn

from cds_service.app import create_app
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.settings import Settings
from tests import fixture_files, postgres
from tests.fhir_server import FhirState, make_app


@pytest.fixture(scope="session", autouse=True)
def _no_operator_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings() built without a data_dir, and servers the tests start, write to a throwaway
    folder, never into ./data or an operator's CDS_DATA_DIR (it would pollute their report)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDS_DATA_DIR", str(tmp_path_factory.mktemp("default-data-dir")))
        yield


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return load_knowledge()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, port: int | None = None, root_path: str = "") -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    root_path=root_path))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(knowledge: Knowledge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    with LiveServer(create_app(settings, knowledge)) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    reason = postgres.unavailable_reason()
    if reason and os.environ.get("B12_CDS_REQUIRE_POSTGRES"):  # set by .ci/run: CI is never green without it
        pytest.fail(f"PostgreSQL is required here: {reason}")
    if reason:
        pytest.skip(reason)
    with postgres.PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh, empty database of each kind (PostgreSQL started by the suite)."""
    url = request.getfixturevalue("pg_server").new_database() if request.param == "postgresql" else None
    return Settings(data_dir=tmp_path, database_url=url, patient_hash_key="test-patient-hash-key")


def load_scenario(path: Path) -> dict[str, Any]:
    return fixture_files.load(path)


@pytest.fixture(scope="module")
def fhir() -> Iterator[tuple[LiveServer, FhirState]]:
    """A loopback FHIR server (tests/fhir_server.py), one per test module."""
    state = FhirState()
    with LiveServer(make_app(state)) as live:
        yield live, state


@pytest.fixture()
def fhir_state(fhir: tuple[LiveServer, FhirState]) -> Iterator[FhirState]:
    """The module's loopback FHIR server state, reset around each test."""
    fhir[1].reset()
    yield fhir[1]
    fhir[1].reset()


@pytest.fixture(scope="module")
def fhir_base(fhir: tuple[LiveServer, FhirState]) -> str:
    return fhir[0].url + "/fhir"


@contextmanager
def cds(knowledge: Knowledge, **settings: Any) -> Iterator[httpx.Client]:
    """A client of a service started with these settings on loopback."""
    with LiveServer(create_app(Settings(**settings), knowledge)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        yield c
