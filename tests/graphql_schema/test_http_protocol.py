"""GraphQL over HTTP (graphql_schema.http_transport): media types, statuses and refusals, rule by rule.

`application/graphql-response+json` answers request errors with 4xx and no `data`; `application/json`
keeps today's 200 for them. Every refusal, in both, is a JSON GraphQL response with a code.
"""

import json
import logging
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from api.settings import Settings
from db.engine import DatabaseUnavailable
from db.json_text import json_bytes
from graphql_schema.http_transport import response_media_type
from tests.support import app_sharing_services

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
MEDIA_TYPES = [GRAPHQL_RESPONSE_JSON, APPLICATION_JSON]
RECORD = """mutation { recordEvent(input: {component: "c", environment: "e", email: "a@b.co",
  message: "m", data: {}}) { id } }"""
SUBSCRIBE = "subscription { eventRecorded { id } }"
TWO_OPERATIONS = "query First { __typename } query Second { __typename }"

# Request errors: refused before execution, each with the code it carries.
REQUEST_ERRORS = {
    "parse": ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
    "validation": ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
    "undefined fragment": ({"query": "{ ...Missing }"}, "GRAPHQL_VALIDATION_FAILED"),
    "variable coercion": (
        {"query": "query ($name: String!) { __type(name: $name) { name } }", "variables": {"name": None}},
        "BAD_USER_INPUT",
    ),
    "two operations, no operationName": ({"query": TWO_OPERATIONS}, "OPERATION_RESOLUTION_FAILURE"),
    "unknown operationName": (
        {"query": "query Known { __typename }", "operationName": "Unknown"},
        "OPERATION_RESOLUTION_FAILURE",
    ),
    "subscription over POST": ({"query": SUBSCRIBE}, "OPERATION_NOT_SUPPORTED"),
}

# Not well-formed GraphQL-over-HTTP requests: 400 whatever the client accepts.
MALFORMED_BODIES = {
    "empty body": b"",
    "not JSON": b'{ "not a JSON',
    "nested 100,000 deep": b'{"query": "{ __typename }", "variables": {"deep": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    "not UTF-8": b'{"query": "\xff"}',
    "a JSON array (batching is off)": b'[{"query": "{ __typename }"}]',
    "a JSON string": b'"{ __typename }"',
    "no query": b'{"notquery": "{ __typename }"}',
    "query not a string": b'{"query": {"obj": "ect"}}',
    "variables not an object": b'{"query": "{ __typename }", "variables": "string"}',
    "operationName not a string": b'{"query": "{ __typename }", "operationName": 0}',
    "extensions not an object": b'{"query": "{ __typename }", "extensions": ["array"]}',
}


async def post(
    client: httpx.AsyncClient,
    body: dict[str, Any] | bytes,
    accept: str | None = None,
    content_type: str | None = APPLICATION_JSON,
) -> httpx.Response:
    """POST `body` (encoded as JSON unless already bytes) to /graphql with these headers."""
    headers = {"Content-Type": content_type} if content_type else {}
    if accept is not None:
        headers["Accept"] = accept
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post("/graphql", content=content, headers=headers)


def refusal(response: httpx.Response, status: int, code: str, media_type: str) -> dict[str, Any]:
    """The single error of a refusal, after checking its status, media type and that it has no `data`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(media_type), response.headers
    body = response.json()
    assert "data" not in body, body
    assert [error["extensions"]["code"] for error in body["errors"]] == [code], body
    return body["errors"][0]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, APPLICATION_JSON),
        ("", APPLICATION_JSON),
        ("*/*", APPLICATION_JSON),
        ("application/*", APPLICATION_JSON),
        ("application/json", APPLICATION_JSON),
        ("text/html", APPLICATION_JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8", GRAPHQL_RESPONSE_JSON),
        ("Application/GraphQL-Response+JSON", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, */*;q=0.1", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.5", APPLICATION_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0", APPLICATION_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.8, */*", APPLICATION_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=nonsense, application/json", APPLICATION_JSON),
    ],
)
def test_accept_picks_graphql_response_json_only_when_named_and_preferred(
    accept: str | None, expected: str
) -> None:
    assert response_media_type(accept) == expected


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_a_query_is_200_with_data_in_the_media_type_asked_for(
    client: httpx.AsyncClient, media_type: str
) -> None:
    response = await post(client, {"query": "{ __typename }"}, accept=media_type)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("accept", [None, "*/*"])
async def test_absent_or_wildcard_accept_answers_application_json(
    client: httpx.AsyncClient, accept: str | None
) -> None:
    response = await post(client, {"query": "{ __typename }"}, accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == APPLICATION_JSON


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_graphql_response_json_request_errors_are_4xx_without_data(
    client: httpx.AsyncClient, case: str
) -> None:
    body, code = REQUEST_ERRORS[case]
    refusal(await post(client, body, accept=GRAPHQL_RESPONSE_JSON), 400, code, GRAPHQL_RESPONSE_JSON)


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_application_json_request_errors_stay_200_without_data(
    client: httpx.AsyncClient, case: str
) -> None:
    body, code = REQUEST_ERRORS[case]
    refusal(await post(client, body, accept=APPLICATION_JSON), 200, code, APPLICATION_JSON)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
async def test_malformed_requests_are_400_graphql_errors_in_both_media_types(
    client: httpx.AsyncClient, case: str, media_type: str
) -> None:
    refusal(await post(client, MALFORMED_BODIES[case], accept=media_type), 400, "BAD_REQUEST", media_type)


async def test_a_body_nested_100000_deep_is_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    error = refusal(await post(client, deep), 400, "BAD_REQUEST", APPLICATION_JSON)
    assert "not valid JSON" in error["message"]


async def test_an_empty_body_is_a_graphql_error_not_text_plain(client: httpx.AsyncClient) -> None:
    error = refusal(await post(client, b""), 400, "BAD_REQUEST", APPLICATION_JSON)
    assert error["message"]


async def test_an_unknown_persisted_query_hash_gets_the_error_apollo_retries_on(
    client: httpx.AsyncClient,
) -> None:
    # 200 in both media types, as Apollo Server answers (tests/graphql_schema/test_persisted_documents.py).
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}}
    for media_type in MEDIA_TYPES:
        response = await post(client, body, accept=media_type)
        error = refusal(response, 200, "PERSISTED_QUERY_NOT_FOUND", media_type)
        assert error["message"] == "PersistedQueryNotFound"
    # Over GET too (Apollo's link sends hash-only queries by GET when told to).
    params = {"extensions": orjson.dumps(body["extensions"]).decode()}
    response = await client.get("/graphql", params=params, headers={"Accept": APPLICATION_JSON})
    refusal(response, 200, "PERSISTED_QUERY_NOT_FOUND", APPLICATION_JSON)


async def test_two_operations_without_operation_name_are_refused_not_the_first_run(
    client: httpx.AsyncClient,
) -> None:
    error = refusal(
        await post(client, {"query": TWO_OPERATIONS}), 200, "OPERATION_RESOLUTION_FAILURE", APPLICATION_JSON
    )
    assert "operationName" in error["message"]


async def test_operation_name_picks_one_of_several_operations(client: httpx.AsyncClient) -> None:
    query = "query First { first: __typename } query Second { second: __typename }"
    response = await post(client, {"query": query, "operationName": "Second"})
    assert response.json() == {"data": {"second": "Query"}}


async def test_unknown_operation_name_is_a_json_graphql_error_not_text_plain(
    client: httpx.AsyncClient,
) -> None:
    body = {"query": "query Known { __typename }", "operationName": "Unknown"}
    error = refusal(await post(client, body), 200, "OPERATION_RESOLUTION_FAILURE", APPLICATION_JSON)
    assert "Unknown" in error["message"]


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_subscription_over_post_is_operation_not_supported(
    client: httpx.AsyncClient, media_type: str
) -> None:
    status = 400 if media_type == GRAPHQL_RESPONSE_JSON else 200
    refusal(
        await post(client, {"query": SUBSCRIBE}, accept=media_type),
        status,
        "OPERATION_NOT_SUPPORTED",
        media_type,
    )


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/graphql",
        "multipart/form-data; boundary=x",
    ],
)
async def test_post_without_a_json_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    response = await post(client, {"query": "{ __typename }"}, content_type=content_type)
    error = refusal(response, 415, "BAD_REQUEST", APPLICATION_JSON)
    assert "application/json" in error["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"]
)
async def test_json_content_type_is_served_with_any_charset_parameter(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await post(
        client, {"query": '{ __type(name: "Run🏃Swim🏊") { name } }'}, content_type=content_type
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"__type": None}}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_field_errors_are_200_with_data_in_both_media_types(
    client: httpx.AsyncClient, media_type: str
) -> None:
    response = await post(client, {"query": '{ event(id: "not-a-uuid") { id } }'}, accept=media_type)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    body = response.json()
    assert body["data"] == {"event": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"] == ["event"]


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_get_runs_queries_from_the_query_string(client: httpx.AsyncClient, media_type: str) -> None:
    params = {
        "query": "query Type($name: String!) { __type(name: $name) { name } }",
        "operationName": "Type",
        "variables": '{"name": "Event"}',
        "extensions": '{"some": "value"}',
    }
    response = await client.get("/graphql", params=params, headers={"Accept": media_type})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.json() == {"data": {"__type": {"name": "Event"}}}


async def test_get_with_a_query_answers_json_even_to_a_browser(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ __typename }"}, headers={"Accept": "text/html"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_get_with_text_html_and_no_query_still_renders_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize(
    "params",
    [
        {"query": "query ($id: ID!) { __typename }", "variables": "{not json"},
        {"query": "{ __typename }", "extensions": "[[["},
        {"query": "{ __typename }", "variables": '"a string"'},
        {"variables": "{}"},
        [("query", "{ __typename }"), ("query", "{ __schema { description } }")],
    ],
    ids=[
        "undecodable variables",
        "undecodable extensions",
        "variables not an object",
        "no query",
        "query twice",
    ],
)
async def test_get_with_malformed_parameters_is_a_400(
    client: httpx.AsyncClient, params: Any, media_type: str
) -> None:
    response = await client.get("/graphql", params=params, headers={"Accept": media_type})
    refusal(response, 400, "BAD_REQUEST", media_type)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_mutation_over_get_is_405_with_allow_post(client: httpx.AsyncClient, media_type: str) -> None:
    response = await client.get("/graphql", params={"query": RECORD}, headers={"Accept": media_type})
    refusal(response, 405, "OPERATION_NOT_SUPPORTED", media_type)
    assert response.headers["allow"] == "POST"
    assert (await client.get("/api/events/")).json() == {"events": []}


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_subscription_over_get_is_operation_not_supported_not_a_405(
    client: httpx.AsyncClient, media_type: str
) -> None:
    response = await client.get("/graphql", params={"query": SUBSCRIBE}, headers={"Accept": media_type})
    status = 400 if media_type == GRAPHQL_RESPONSE_JSON else 200
    refusal(response, status, "OPERATION_NOT_SUPPORTED", media_type)
    assert "allow" not in response.headers


async def test_refused_keys_are_401_and_403_under_graphql_response_json(
    auth_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    query = {"query": "{ events(first: 1) { nodes { id } } }"}
    refusal(
        await post(auth_client, query, accept=GRAPHQL_RESPONSE_JSON),
        401,
        "UNAUTHENTICATED",
        GRAPHQL_RESPONSE_JSON,
    )
    response = await auth_client.post(
        "/graphql", json=query, headers={"Accept": GRAPHQL_RESPONSE_JSON, "X-API-Key": keys["write"]}
    )
    refusal(response, 403, "FORBIDDEN", GRAPHQL_RESPONSE_JSON)
    # application/json keeps today's 200.
    refusal(await post(auth_client, query, accept=APPLICATION_JSON), 200, "UNAUTHENTICATED", APPLICATION_JSON)


async def test_client_mistakes_log_no_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for accept in MEDIA_TYPES:
        for body, _code in REQUEST_ERRORS.values():
            await post(client, body, accept=accept)
        for raw in MALFORMED_BODIES.values():
            await post(client, raw, accept=accept)
        await client.get("/graphql", params={"query": RECORD}, headers={"Accept": accept})
        await client.get("/graphql", params={"query": SUBSCRIBE}, headers={"Accept": accept})
        await post(client, {"query": '{ event(id: "not-a-uuid") { id } }'}, accept=accept)
    logged = [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]
    assert logged == [], [record.getMessage() for record in logged]


def test_responses_orjson_cannot_write_are_still_utf8_json() -> None:
    # Integers beyond 64 bits (an event's `data` may hold them) and lone surrogates: orjson refuses both.
    body = {"data": {"n": 2**70 + 1, "text": "\ud800"}}
    encoded = json_bytes(body)
    encoded.decode("utf-8")
    assert json.loads(encoded) == body


class UnreachableKeyStore:
    """A key verifier whose database is down."""

    async def identify(self, raw_key: str | None) -> None:
        raise DatabaseUnavailable("connection refused")


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
async def test_a_key_check_without_a_database_is_a_503_graphql_error(
    app: FastAPI, settings: Settings, media_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    guarded = app_sharing_services(
        app, settings.model_copy(update={"auth_required": True}), key_verifier=UnreachableKeyStore()
    )
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as guarded_client:
        response = await post(guarded_client, {"query": "{ events { totalCount } }"}, accept=media_type)
    refusal(response, 503, "SERVICE_UNAVAILABLE", media_type)
    assert not [record for record in caplog.records if record.exc_info]
