"""Fuzz the REST door: requests generated from our OpenAPI document, sent to a live server.

Every operation is fuzzed in both modes: POSITIVE (requests the document calls valid: they must be
accepted) and NEGATIVE (requests it calls invalid: they must be refused). Every answer must be a
documented status with its documented JSON shape, and never a 5xx. `FUZZ_EXAMPLES` sets the number
of examples per operation and mode (default 40: both fuzz files take about half a minute here).
"""

import json
import re
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.settings import Settings
from rest.errors import STATUS_MESSAGES
from rest.from_date import INVALID_FROM_DATE
from rest.openapi_schemas import LEGACY_DATE_PATTERN
from tests.fuzzing import FuzzTally, registered_tally, run_fuzz
from tests.support import valid_event

MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # schemathesis' default refusals, plus 413: a batch over its documented maxItems is
            # refused as too large (the status the batch issue set), which is a refusal all the same.
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5XX"]
            }
        }
    }
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_context: object, value: Any) -> bytes:
    """The batch's NDJSON body: the documented items, one JSON object a line."""
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def _operation_labels() -> list[str]:
    """`METHOD /path` of every documented operation, read from the app in-process (no server)."""
    document = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return [result.ok().label for result in schemathesis.openapi.from_dict(document).get_all_operations()]


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> FuzzTally:
    return registered_tally(request, "OpenAPI")


@pytest.fixture(scope="module")
def api_schema(live_server: str) -> schemathesis.BaseSchema:
    """The document as the live server publishes it."""
    return schemathesis.openapi.from_url(f"{live_server}/api/openapi.json", config=CONFIG)


def _rejected_for_an_undocumentable_rule(response: Response, case: Case) -> bool:
    """A 400/422 for a valid-looking request, for a rule JSON Schema cannot state.

    - `data`'s own limits: nesting depth, size as JSON, NUL characters in nested keys and strings
      (recursive content rules with no keyword for them);
    - an X-Fields mask that does not parse (nested braces: not a regular language, so no pattern);
    - a `from_date` of the documented MM-DD-YYYY form naming no day (02-30-2021: calendar rules);
    - an Idempotency-Key reused with another event (422): the answer depends on earlier requests,
      and the generator reuses small keys across examples;
    - the export's `after`, an opaque cursor (only one the server issued is valid), and its
      `dataContains`, JSON text that must parse as an object (no keyword says so of a string);
    - the stats' `time_zone`, an IANA zone name (the list is the database's, not the document's).
    """
    if response.status_code not in (400, 422):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    message = body.get("message", "")
    errors = body.get("errors") or {}
    if response.status_code == 422:
        return "idempotency key" in message and "already used" in message
    if message.startswith(("Failed with Data ", "Mask parse error: ")):
        return True
    if message == "Input payload validation failed" and errors:
        # A batch reports its items as `<index>.<field>`: only `data`'s rules count.
        return all(key.endswith(".data") for key in errors)
    if message == INVALID_FROM_DATE:
        dates = [(case.query or {}).get(name) for name in ("from_date", "to")]
        return any(isinstance(date, str) and re.search(LEGACY_DATE_PATTERN, date) for date in dates)
    if message.startswith("Unknown time zone "):
        return "time_zone" in (case.query or {})
    return message in (
        "Unable to retrieve events - `after` is not a valid cursor.",
        "Unable to retrieve events - Must be a JSON object.",
    )


def positive_data_acceptance_for_documentable_rules(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """schemathesis' positive_data_acceptance, except for refusals the document cannot express."""
    if _rejected_for_an_undocumentable_rule(response, case):
        return None
    return positive_data_acceptance(ctx, response, case)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
@pytest.mark.parametrize("label", _operation_labels())
def test_fuzz_openapi_operation(
    live_server: str,
    api_schema: schemathesis.BaseSchema,
    tally: FuzzTally,
    request: pytest.FixtureRequest,
    label: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]]
    strategy = operation.as_strategy(generation_mode=mode)

    run_fuzz(
        strategy,
        base_url=live_server,
        tally=tally,
        key=f"{label} {mode.value}",
        outcome=lambda response: str(response.status_code),
        acceptance_check=positive_data_acceptance_for_documentable_rules,
        request=request,
    )


def _secured_operations(auth_required: bool) -> list[dict[str, Any]]:
    document = create_app(Settings(_env_file=None, auth_required=auth_required)).openapi()  # type: ignore[call-arg]
    return [
        operation
        for path_item in document["paths"].values()
        for operation in path_item.values()
        if "security" in operation
    ]


def test_the_document_asks_for_api_keys_only_when_the_server_requires_them() -> None:
    # The fuzz runs with keys off; this pins what the document says when they are on.
    assert _secured_operations(auth_required=False)
    for operation in _secured_operations(auth_required=False):
        assert {} in operation["security"]
        assert not {"401", "403"} & set(operation["responses"])
    for operation in _secured_operations(auth_required=True):
        assert {} not in operation["security"]
        assert {"401", "403"} <= set(operation["responses"])


# Found by the fuzz: `/api/events/%0A` was served as `/api/events/` (Starlette's `$` anchor).
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/events/%0A"),
        ("POST", "/api/events/%0A"),
        ("POST", "/api/events%0A"),
        ("POST", "/api/events/batch%0A"),
        ("GET", "/api/health%0A"),
        ("GET", "/api/ready%0A"),
        ("GET", "/api/openapi.json%0A"),
        ("POST", "/graphql%0A"),
        ("GET", "/api/events/%00"),
    ],
)
async def test_a_path_ending_in_a_newline_is_not_the_route_without_it(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=valid_event())
    assert response.status_code == 404
    assert response.json() == {"message": STATUS_MESSAGES[404]}
