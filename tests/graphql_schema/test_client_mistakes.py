"""Instants and cursors at the edges of the calendar are the client's mistakes, not the server's.

`0001-01-01T00:00:00+01:00` is a valid timestamp whose UTC equivalent falls in year 0; a forged
cursor at 9999-12-31 cannot be stepped past. Each is a BAD_USER_INPUT naming the argument, over
HTTP and in a subscription's filter, and none logs a traceback. A subscriber's bad filter ends only
its own stream.
"""

import asyncio
import base64
import json
import logging

import httpx
import pytest

from tests.graphql_schema.support import graphql, only_error
from tests.graphql_schema.test_subscription import TRANSPORT_WS, GraphQLSocket, wait_until_subscribed
from tests.support import valid_event


def forged_cursor(moment: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{moment}|{event_id}".encode()).decode()


LATEST = forged_cursor("9999-12-31T23:59:59.999999+00:00", "ffffffff-ffff-ffff-ffff-ffffffffffff")
EARLIEST = forged_cursor("0001-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000")
IN_YEAR_ZERO = forged_cursor("0001-01-01T00:00:00+05:00", "00000000-0000-0000-0000-000000000001")

MISTAKES = {
    "from in year 0 in UTC": (
        '{ events(filter: {from: "0001-01-01T00:00:00+01:00"}) { nodes { id } } }',
        "filter.from",
    ),
    "to in year 10000 in UTC": (
        '{ events(filter: {to: "9999-12-31T23:59:59-01:00"}) { nodes { id } } }',
        "filter.to",
    ),
    "after the last instant": (f'{{ events(after: "{LATEST}") {{ nodes {{ id }} }} }}', "after"),
    "before the first instant": (
        f'{{ events(last: 1, before: "{EARLIEST}") {{ nodes {{ id }} }} }}',
        "before",
    ),
    "a cursor in year 0": (f'{{ events(after: "{IN_YEAR_ZERO}") {{ nodes {{ id }} }} }}', "after"),
    "a newest-first page after the last instant": (
        f'{{ events(orderBy: NEWEST_FIRST, after: "{LATEST}") {{ pageInfo {{ hasPreviousPage }} }} }}',
        "after",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
async def test_edge_of_the_calendar_is_bad_user_input_without_a_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, mistake: str
) -> None:
    caplog.set_level(logging.DEBUG)
    query, field = MISTAKES[mistake]
    error = only_error(await graphql(client, query))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


async def test_a_subscribers_bad_filter_ends_only_its_own_stream(live_server: str) -> None:
    async with (
        GraphQLSocket.open(live_server, TRANSPORT_WS) as healthy,
        GraphQLSocket.open(live_server, TRANSPORT_WS) as careless,
        httpx.AsyncClient(timeout=15) as http,
    ):
        await healthy.subscribe({"filter": {"component": "mistakes"}})
        await wait_until_subscribed(
            http, live_server, [healthy], valid_event(component="mistakes", message="a probe")
        )
        for bad_filter in ({"search": "a\u0000b"}, {"from": "0001-01-01T00:00:00+01:00"}):
            await careless.subscribe({"filter": bad_filter})
            refusal = json.loads(await asyncio.wait_for(careless.websocket.recv(), 15))
            assert refusal["type"] in ("error", "next"), refusal
            errors = refusal["payload"] if refusal["type"] == "error" else refusal["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", refusal
            if refusal["type"] == "next":
                assert json.loads(await asyncio.wait_for(careless.websocket.recv(), 15))["type"] == "complete"
        posted = await http.post(f"{live_server}/api/events/", json=valid_event(component="mistakes"))
        received = await healthy.events_through(posted.json()["id"])
    assert [event["id"] for event in received] == [posted.json()["id"]]


@pytest.mark.parametrize("query", ["{}", "{ events {} }", "{ events { nodes {} } }", "query Q {}"])
async def test_an_empty_selection_set_is_a_syntax_error_not_a_server_error(
    client: httpx.AsyncClient, query: str, caplog: pytest.LogCaptureFixture
) -> None:
    # graphql-core 3.3 parses `{}`; the grammar (and graphql-js) does not: `{ Selection+ }`.
    response = await client.post("/graphql", json={"query": query})
    other_syntax_error = await client.post("/graphql", json={"query": "{ events"})
    assert response.status_code == other_syntax_error.status_code  # as any document that fails to parse
    error = only_error(response.json())
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["message"] == 'Syntax Error: Expected Name, found "}".'
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
