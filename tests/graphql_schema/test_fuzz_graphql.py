"""Fuzz the GraphQL door: queries and mutations generated from our schema, sent to a live server.

Every root field is fuzzed in both modes: POSITIVE (documents valid against the schema) and
NEGATIVE (documents that break it: wrong argument types, missing required arguments, ...). Every
answer must be a valid GraphQL response, never a 5xx. `FUZZ_EXAMPLES` sets the number of examples per
operation and mode (default 40). Subscriptions are not fuzzed: they are not HTTP.
"""

import json
import re
from typing import Any

import graphql
import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.graphql import nodes
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.settings import Settings
from db.validation import EMAIL_PATTERN
from graphql_schema.errors import BAD_USER_INPUT
from graphql_schema.policy import QUERY_TOO_COMPLEX
from graphql_schema.schema import build_schema
from tests.fuzzing import FuzzTally, registered_tally, run_fuzz
from tests.graphql_schema.support import only_error

MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def _json_literal(value: Any) -> graphql.ValueNode:
    """A JSON value as a GraphQL literal (how a JSON scalar is written inline in a document)."""
    if value is None:
        return nodes.Null
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        return nodes.Float(value)
    if isinstance(value, str):
        return nodes.String(value)
    if isinstance(value, list):
        return nodes.List([_json_literal(item) for item in value])
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=key), value=_json_literal(item))
            for key, item in value.items()
        ]
    )


_JSON_KEYS = st.from_regex(r"\A[_A-Za-z][_0-9A-Za-z]{0,8}\Z")
_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_JSON_KEYS, children, max_size=4),
    max_leaves=12,
)
# GraphQL types cannot say "an email", "a UUID" or "at most 500", so values drawn only from the
# types almost never get past the resolvers' checks to the database. Mixing in values those checks
# accept (besides everything the types allow) lets positive documents reach the deeper paths too.
schemathesis.graphql.scalar(
    "String", (st.text() | st.from_regex(EMAIL_PATTERN, fullmatch=True)).map(nodes.String)
)
schemathesis.graphql.scalar("ID", (st.text() | st.uuids().map(str)).map(nodes.String))
schemathesis.graphql.scalar("Int", (st.integers(-(2**31), 2**31 - 1) | st.integers(0, 500)).map(nodes.Int))
# Mostly objects (what `data` and `dataContains` take), sometimes another JSON value; never a bare
# null, which GraphQL itself decides for a nullable position and is invalid for `JSON!`.
schemathesis.graphql.scalar(
    "JSON",
    (
        st.dictionaries(_JSON_KEYS, _JSON_VALUES, max_size=5)
        | _JSON_VALUES.filter(lambda value: value is not None)
    ).map(_json_literal),
)


def _operation_labels() -> list[str]:
    """The label of every query and mutation field, from the schema built in-process (no server)."""
    introspection = build_schema(Settings(_env_file=None)).introspect()  # type: ignore[call-arg]
    schema = schemathesis.graphql.from_dict(introspection)
    return [result.ok().label for result in schema.get_all_operations()]


def _config(mode: GenerationMode) -> schemathesis.Config:
    # One mode only: with both enabled, schemathesis quietly falls back to positive documents for a
    # field that has nothing to make invalid, and a "negative" test would test nothing negative.
    return schemathesis.Config.from_dict({"generation": {"mode": mode.value}})


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> FuzzTally:
    return registered_tally(request, "GraphQL")


# The query-shape guards (settings graphql_max_tokens, _max_depth, _max_aliases): refusals of a
# document's size and shape, which no schema states. Their texts are graphql-core's and Strawberry's.
GUARD_REFUSALS = re.compile(
    r"Syntax Error: Document contains more than \d+ tokens\. Parsing aborted\."
    r"|'.*' exceeds maximum operation depth of \d+"
    r"|\d+ aliases found\. Allowed: \d+"
)


def _refused_by_a_rule_the_schema_cannot_state(response: Response) -> bool:
    """Every error is BAD_USER_INPUT or a query-shape guard's: the documented answers to such documents.

    GraphQL types cannot say "a UUID", "at most 500", "`first` or `last`, not both", "a cursor this
    server issued", "an email address" or "a JSON object": the resolvers check these and answer
    BAD_USER_INPUT naming the field. Nor can they say how large or deep a document may be, or how
    many nodes its answer may hold (QUERY_TOO_COMPLEX, the cost limit).
    """
    try:
        errors = json.loads(response.content).get("errors")
    except (ValueError, AttributeError):
        return False
    return bool(errors) and all(
        (error.get("extensions") or {}).get("code") in (BAD_USER_INPUT, QUERY_TOO_COMPLEX)
        or GUARD_REFUSALS.fullmatch(error.get("message", "")) is not None
        for error in errors
    )


def _outcome(response: Response) -> str:
    """`200 data`, or the status and the error codes of the answer (`200 BAD_USER_INPUT`)."""
    try:
        errors = json.loads(response.content).get("errors") or []
    except (ValueError, AttributeError):
        return f"{response.status_code} not JSON"
    codes = sorted({(error.get("extensions") or {}).get("code") or "no code" for error in errors})
    return f"{response.status_code} {'+'.join(codes) or 'data'}"


def positive_data_acceptance_for_stateable_rules(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """schemathesis' positive_data_acceptance, except for BAD_USER_INPUT refusals (see above)."""
    if _refused_by_a_rule_the_schema_cannot_state(response):
        return None
    return positive_data_acceptance(ctx, response, case)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
@pytest.mark.parametrize("label", _operation_labels())
def test_fuzz_graphql_operation(
    live_server: str, tally: FuzzTally, request: pytest.FixtureRequest, label: str, mode: GenerationMode
) -> None:
    schema = schemathesis.graphql.from_url(f"{live_server}/graphql", config=_config(mode))
    operation = next(result.ok() for result in schema.get_all_operations() if result.ok().label == label)
    strategy = operation.as_strategy(generation_mode=mode)

    run_fuzz(
        strategy,
        base_url=live_server,
        tally=tally,
        key=f"{label} {mode.value}",
        outcome=_outcome,
        acceptance_check=positive_data_acceptance_for_stateable_rules,
        request=request,
    )


# Found by the fuzz: an actor lookup of text PostgreSQL cannot hold was an INTERNAL_SERVER_ERROR.
@pytest.mark.parametrize(
    "email", ["ade\x00@example.com", "\ud800@example.com"], ids=["nul", "lone-surrogate"]
)
async def test_actor_lookup_refuses_an_email_postgresql_cannot_hold(
    client: httpx.AsyncClient, email: str
) -> None:
    # Sent as ASCII-escaped JSON: a lone surrogate has no UTF-8 encoding of its own.
    payload = {
        "query": "query ($email: String!) { actor(email: $email) { email } }",
        "variables": {"email": email},
    }
    response = await client.post(
        "/graphql", content=json.dumps(payload), headers={"Content-Type": "application/json"}
    )
    error = only_error(response.json())
    assert error["extensions"] == {"code": BAD_USER_INPUT, "field": "email"}
