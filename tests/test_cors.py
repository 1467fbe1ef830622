"""Browser preflights (the sandbox sends Authorization and JSON, so every call is preflighted)."""

import httpx
import pytest

from tests.conftest import LiveServer

ORIGIN = "http://127.0.0.1:8080"


@pytest.mark.parametrize(("path", "method"), [
    ("/cds-services", "GET"),
    ("/cds-services/b12-myalgia-patient-view", "POST"),
    ("/cds-services/b12-myalgia-patient-view/feedback", "POST"),
])
def test_preflight_is_answered(path: str, method: str, server: LiveServer) -> None:
    response = httpx.options(server.url + path, headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed


def test_simple_response_carries_the_origin_header(server: LiveServer) -> None:
    response = httpx.get(server.url + "/cds-services", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == "*"


def test_unlisted_header_is_refused(server: LiveServer) -> None:
    response = httpx.options(server.url + "/cds-services", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-evil",
    })
    assert response.status_code == 400


def test_configured_origins_only(knowledge: object) -> None:
    from cds_service.app import create_app
    from cds_service.settings import Settings

    with LiveServer(create_app(Settings(cors_origins=["https://ehr.example.org"]), knowledge)) as live:  # type: ignore[arg-type]
        ok = httpx.get(live.url + "/cds-services", headers={"Origin": "https://ehr.example.org"})
        other = httpx.get(live.url + "/cds-services", headers={"Origin": "https://evil.example.org"})
    assert ok.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-origin" not in other.headers
