"""What the OpenAPI documents say about errors: every operation lists the error statuses it can answer,
each with the one error body (``ErrorBody``), so a client generated from the document knows them all.

    @router.get("/things/{id}", responses=errors(401, 404, 503))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from switchboard_common.http.errors import ErrorBody

_DESCRIPTIONS = {
    400: "The request cannot be served as sent (`bad_request`).",
    401: "The credential is missing, invalid or expired (`unauthorized`).",
    403: "The credential may not do this (`forbidden`).",
    404: "Not found, or not visible to this credential (`not_found`).",
    409: "The request conflicts with the current state (`code` says how).",
    413: "The body exceeds the size limit (`payload_too_large`).",
    422: "The request is invalid (`validation_error`; `details` lists each invalid field).",
    429: "Too many requests (`rate_limited`); retry after `Retry-After` seconds.",
    503: "A dependency (the database) is unavailable; nothing was done, retry after `Retry-After` seconds.",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
}

Responses = dict[int | str, dict[str, Any]]


def errors(*statuses: int, described: Mapping[int, str] | None = None) -> Responses:
    """The ``responses=`` of an operation that can answer these error statuses.

    ``described`` replaces the generic description of a status where the operation means something
    specific by it (ingest's 409 is a reused message id).
    """
    responses: Responses = {}
    for status in statuses:
        description = (described or {}).get(status) or _DESCRIPTIONS[status]
        response: dict[str, Any] = {"model": ErrorBody, "description": description}
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


# Where ``examples`` keeps a model's examples as JSON text, which FastAPI's null-dropping leaves whole.
_EXAMPLES_JSON = "x-examples-json"


def examples(*values: Any) -> dict[str, Any]:
    """A model's ``json_schema_extra``: its OpenAPI examples, nulls included.

    FastAPI writes the document without null values, which would take the ``null`` of a nullable
    required field out of an example and leave it invalid; ``finish_document`` restores them from the
    JSON text kept beside.
    """
    return {"examples": list(values), _EXAMPLES_JSON: json.dumps(list(values))}


def finish_document(app: FastAPI) -> None:
    """Make the document list only the 422s the operations declare, and keep the nulls of examples.

    FastAPI adds a 422 with its own body (``HTTPValidationError``, which this API never sends) to every
    operation that has a parameter and does not declare a 422; an operation whose parameters the router
    already checks (a path converter) cannot answer one at all. Every operation that can answer 422
    declares it with ``errors(422)``, so FastAPI's own is dropped, with its schemas.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if "HTTPValidationError" in str(responses.get("422", "")):
                    del responses["422"]
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for component in components.values():
            if _EXAMPLES_JSON in component:
                component["examples"] = json.loads(component.pop(_EXAMPLES_JSON))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
