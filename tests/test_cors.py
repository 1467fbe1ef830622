"""Browser preflights (the sandbox sends Authorization and JSON, so every call is preflighted)."""

from pathlib import Path

import httpx
import pytest

from cds_service.app import create_app
from cds_service.knowledge import Knowledge
from cds_service.settings import Settings
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


def test_unlisted_header_is_refused_in_json(server: LiveServer) -> None:
    response = httpx.options(server.url + "/cds-services", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-evil",
    })
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "cors_not_allowed" and "Access-Control-Request-Headers" in body["message"]
    assert body["details"] == [{"loc": "Access-Control-Request-Headers", "msg": "not allowed"}]
    assert "x-evil" not in response.text
    assert response.headers["access-control-allow-origin"] == "*"  # the browser can read why


def test_unlisted_method_is_refused_in_json(server: LiveServer) -> None:
    response = httpx.options(server.url + "/cds-services/b12-myalgia-patient-view", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "x-evil",
    })
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["details"]] == [
        "Access-Control-Request-Method", "Access-Control-Request-Headers"]


def test_a_401_exposes_www_authenticate_to_the_browser(knowledge: Knowledge, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    settings = Settings(data_dir=tmp_path, trusted_issuers={"https://ehr.example.org": str(jwks)})
    url = "/cds-services/b12-myalgia-patient-view"
    with LiveServer(create_app(settings, knowledge)) as live, httpx.Client(base_url=live.url) as client:
        preflight = client.options(url, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        })
        assert preflight.status_code == 200  # preflights carry no token
        response = client.post(url, json={}, headers={"Origin": ORIGIN})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"www-authenticate", "x-request-id"} <= exposed


def test_configured_origins_only(knowledge: object) -> None:
    from cds_service.app import create_app
    from cds_service.settings import Settings

    with LiveServer(create_app(Settings(cors_origins=["https://ehr.example.org"]), knowledge)) as live:  # type: ignore[arg-type]
        ok = httpx.get(live.url + "/cds-services", headers={"Origin": "https://ehr.example.org"})
        other = httpx.get(live.url + "/cds-services", headers={"Origin": "https://evil.example.org"})
    assert ok.headers["access-control-allow-origin"] == "https://ehr.example.org"
    assert "access-control-allow-origin" not in other.headers


PNA_PREFLIGHT = {"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization", "Access-Control-Request-Private-Network": "true"}


def test_private_network_preflight_from_the_public_sandbox_is_allowed(server: LiveServer) -> None:
    """Chrome asks before a public page (the sandbox) calls loopback or a private address."""
    response = httpx.options(server.url + "/cds-services", headers=PNA_PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-private-network"] == "true"


def test_private_network_access_can_be_refused(knowledge: Knowledge) -> None:
    with LiveServer(create_app(Settings(cors_private_network=False), knowledge)) as live:
        response = httpx.options(live.url + "/cds-services", headers=PNA_PREFLIGHT)
    assert response.status_code == 400
    assert response.json()["details"] == [{"loc": "Access-Control-Request-Private-Network", "msg": "not allowed"}]
