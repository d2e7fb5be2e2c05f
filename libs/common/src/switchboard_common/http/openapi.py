"""What the OpenAPI documents say about errors: every operation lists the error statuses it can answer,
each with the one error body (``ErrorBody``), so a client generated from the document knows them all.

    @router.get("/things/{id}", responses=errors(401, 404, 503))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        if status == 503:
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


# Every model example given through ``examples``, by model name (see ``_keep_nulls``).
_EXAMPLES: dict[str, list[list[Any]]] = {}


def examples(*values: Any) -> Callable[[dict[str, Any], type[Any]], None]:
    """A model's ``json_schema_extra``: its OpenAPI examples, nulls included.

    FastAPI writes the document without null values, which would take the ``null`` of a nullable
    required field out of an example and leave it invalid; the document puts them back.
    """

    def extra(schema: dict[str, Any], model: type[Any]) -> None:
        schema["examples"] = list(values)
        _EXAMPLES.setdefault(model.__name__, []).append(list(values))

    return extra


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _keep_nulls(components: dict[str, Any]) -> None:
    for name, schema in components.items():
        shown = schema.get("examples")
        if shown is None:
            continue
        model = name.removesuffix("-Output").removesuffix("-Input")
        # Two services may have models of one name: only the examples that are these, nulls apart, return.
        for given in _EXAMPLES.get(model, []):
            if _without_nulls(given) == shown:
                schema["examples"] = given
                break


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
        _keep_nulls(components)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
