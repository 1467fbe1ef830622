"""The OpenAPI description of the routes, so that /openapi.json tells the truth.

The hook and feedback routes read the raw body themselves (to answer bad JSON with our own 4xx
and to keep the body limit in one place), so FastAPI cannot see their bodies or answers. They are
declared here: the request models as components, and every status a route can answer.
"""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cds_service.protocol import CdsResponse, DiscoveryResponse, ErrorBody, FeedbackRequest, HookRequest

REF = "#/components/schemas/{model}"
REQUEST_MODELS: tuple[type[BaseModel], ...] = (HookRequest, FeedbackRequest)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("No valid client JWT (when CDS_TRUSTED_ISSUERS is set)."),
    500: _error("A bug; logged, never a stack trace."),
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The body is not valid JSON or not a valid request."),
    404: _error("No service with this id."),
    413: _error("The body is larger than CDS_MAX_BODY_BYTES."),
    415: _error("The body is not sent as JSON."),
}
HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": CdsResponse, "description": "Cards; an empty list means nothing to advise."},
    **COMMON_ERRORS, **BODY_ERRORS,
    412: _error("Needed FHIR data was neither prefetched nor fetchable."),
    503: _error("The call passed CDS_REQUEST_DEADLINE_SECONDS."),
}
FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored.", "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}}},
    **COMMON_ERRORS, **BODY_ERRORS,
    503: _error("The database could not take the feedback now."),
}
DISCOVERY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": DiscoveryResponse, "description": "The services."}, **COMMON_ERRORS,
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Up.", "content": {"application/json": {"schema": {
        "type": "object", "required": ["status", "knowledgeVersion", "audit"],
        "properties": {"status": {"type": "string"}, "knowledgeVersion": {"type": "string"}, "audit": {"type": "object"}},
    }}}},
    500: COMMON_ERRORS[500],
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of `model` (a component added by `install`)."""
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(app: FastAPI) -> None:
    """Add the request models to the generated schema's components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)  # invalid input is our 400, declared above
        _, defs = models_json_schema([(m, "validation") for m in REQUEST_MODELS], ref_template=REF)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        components.update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
