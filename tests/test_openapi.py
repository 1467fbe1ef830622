"""Generated attacks from the service's own OpenAPI schema, against the live loopback server.

Every endpoint, bodies valid and invalid by the schema: no 5xx, every answer's status, media type
and body are what the schema declares. Bounded (max_examples per operation) to stay near 30 s.
"""

import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cds_service.app import create_app
from cds_service.settings import Settings
from tests.conftest import LiveServer

# building the app writes the patient-hash key into its data dir: a temp dir removed with the process
_DATA_DIR = tempfile.TemporaryDirectory(prefix="b12-openapi-")
OPENAPI = create_app(Settings(data_dir=_DATA_DIR.name)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_schema_declares_every_endpoint_and_its_answers() -> None:
    paths = OPENAPI["paths"]
    assert set(paths) == {"/cds-services", "/cds-services/{service_id}", "/cds-services/{service_id}/feedback", "/healthz"}
    hook = paths["/cds-services/{service_id}"]["post"]
    assert hook["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HookRequest"}
    assert {"200", "400", "401", "404", "412", "413", "415", "503"} <= set(hook["responses"])
    assert "422" not in hook["responses"]
    # every hook these services answer carries a patient: the schema says so, as the service does
    context = OPENAPI["components"]["schemas"]["HookRequest"]["properties"]["context"]
    assert context["required"] == ["patientId"] and context["properties"]["patientId"]["pattern"]


def test_openapi_json_is_served(server: LiveServer) -> None:
    import httpx

    assert httpx.get(server.url + "/openapi.json").json()["paths"].keys() == OPENAPI["paths"].keys()


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@pytest.mark.timeout(120)
def test_generated_requests(case: schemathesis.Case, server: LiveServer) -> None:
    case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=10)
