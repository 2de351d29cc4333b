"""The OpenAPI document: FastAPI's, corrected where FastAPI cannot know what this server answers."""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from rest.openapi_schemas import HEADERS_TOO_LARGE, MESSAGE_SCHEMA, json_content, with_headers

_FASTAPI_VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def install_openapi_document(app: FastAPI) -> None:
    """Make `app.openapi()` (served at /api/openapi.json) answer the corrected document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            correct_document(build(), auth_required=app.state.settings.auth_required)
        return app.openapi_schema  # type: ignore[return-value]  # set by build()

    app.openapi = openapi  # type: ignore[method-assign]


def correct_document(document: dict[str, Any], *, auth_required: bool) -> None:
    """Fix, in place, what FastAPI writes from type hints alone."""
    for operation in _operations(document):
        for parameter in operation.get("parameters", []):
            _drop_null(parameter["schema"])
        # Our RequestValidationError handler answers 400 in the legacy shape (each route documents
        # its 400), never FastAPI's 422 `{"detail": [...]}`.
        operation["responses"] = {
            status: response
            for status, response in operation["responses"].items()
            if _schema_ref(response) != _FASTAPI_VALIDATION_ERROR
        }
        # Every route sits behind the request-header size limit (api.middleware).
        operation["responses"].setdefault("431", HEADERS_TOO_LARGE)
        if "security" in operation:
            _document_auth(operation, auth_required)
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path_item in document["paths"].values():
        for method, operation in path_item.items():
            if method in _HTTP_METHODS:
                yield operation


def _drop_null(schema: dict[str, Any]) -> None:
    """`str | None` is an optional parameter, not a nullable one: HTTP has no null to send."""
    alternatives = schema.get("anyOf")
    if not alternatives or {"type": "null"} not in alternatives:
        return
    remaining = [alternative for alternative in alternatives if alternative != {"type": "null"}]
    del schema["anyOf"]
    if len(remaining) == 1:
        # What the parameter declared itself (e.g. an array's `items` with a pattern) wins over
        # what its type alone says.
        for key, value in remaining[0].items():
            schema.setdefault(key, value)
    else:
        schema["anyOf"] = remaining


def _schema_ref(response: dict[str, Any]) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def _document_auth(operation: dict[str, Any], auth_required: bool) -> None:
    """Keys are required only when AUTH_REQUIRED is on; the document says which this server does."""
    if not auth_required:
        operation["security"].append({})  # no key needed
        return
    operation["responses"].setdefault(
        "401",
        with_headers(
            json_content(MESSAGE_SCHEMA, "No API key, or one that is unknown, malformed or revoked"),
            {"WWW-Authenticate": "`Bearer`"},
        ),
    )
    operation["responses"].setdefault(
        "403", json_content(MESSAGE_SCHEMA, "The API key lacks the scope this operation needs")
    )
