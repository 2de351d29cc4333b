"""The reference graphql-transport-ws client (npm `graphql-ws`, with `ws`) against a live server.

A query, a mutation, a subscription that receives the recorded event, and invalid documents, all
through graphql-ws's own `createClient`: if it can talk to us, so can the clients built on it.
"""

import json
import uuid
from typing import Any

import pytest

from tests.npm_packages import npm_install, run_node
from tests.support import valid_event

pytestmark = pytest.mark.slow

PACKAGES = {"graphql-ws": "^6", "ws": "^8", "graphql": "^16"}

# argv: the websocket URL, then the event to record (JSON). Prints one JSON object.
CLIENT_SCRIPT = r"""
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, eventJson] = process.argv.slice(2);
const event = JSON.parse(eventJson);
const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0 });

const RECORD = `mutation Record($input: RecordEventInput!) {
  recordEvent(input: $input) { id component message }
}`;
const LIVE = `subscription Live($filter: EventFilter) {
  eventRecorded(filter: $filter) { id component message }
}`;

// One operation to its end: its results, or the errors of an `error` message.
function run(payload) {
  return new Promise((resolve) => {
    const results = [];
    client.subscribe(payload, {
      next: (result) => results.push(result),
      error: (errors) => resolve({ results, errors }),
      complete: () => resolve({ results }),
    });
  });
}

// A subscription whose events are queued until asked for.
function subscribe(payload) {
  const queue = [];
  let wake = () => {};
  const dispose = client.subscribe(payload, {
    next: (result) => { queue.push(result); wake(); },
    error: (errors) => { queue.push({ errors }); wake(); },
    complete: () => {},
  });
  async function next(timeoutMs) {
    if (queue.length === 0) {
      await new Promise((resolve) => { wake = resolve; setTimeout(resolve, timeoutMs); });
    }
    return queue.shift();
  }
  return { next, dispose };
}

const output = {};
output.query = await run({ query: "{ __typename events(first: 1) { nodes { id } } }" });

const live = subscribe({ query: LIVE, variables: { filter: { component: event.component } } });
// The protocol does not acknowledge a subscription: record probes until one arrives.
let probes = 0;
for (; probes < 40; probes++) {
  await run({ query: RECORD, variables: { input: { ...event, message: "a probe" } } });
  if (await live.next(500)) break;
}
output.mutation = await run({ query: RECORD, variables: { input: event } });
const wanted = output.mutation.results[0]?.data?.recordEvent?.id;
output.subscription = null;
for (let tries = 0; tries < 60 && output.subscription === null; tries++) {
  const received = await live.next(250);
  if (received?.errors || received?.data?.eventRecorded?.id === wanted) output.subscription = received;
}
live.dispose();

output.invalid = await run({ query: "{ nope }" });
output.syntax = await run({ query: "{ events(" });
output.ambiguous = await run({ query: "query A { __typename } query B { __typename }" });
output.stillServing = await run({ query: "{ __typename }" });

await client.dispose();
console.log(JSON.stringify(output));
"""


def run_client(base_url: str, event: dict[str, Any]) -> dict[str, Any]:
    folder = npm_install(PACKAGES)
    url = base_url.replace("http://", "ws://", 1) + "/graphql"
    return json.loads(run_node(folder, CLIENT_SCRIPT, [url, json.dumps(event)]))


def test_graphql_ws_client_runs_queries_mutations_subscriptions_and_gets_errors(live_server: str) -> None:
    event = valid_event(component=f"graphql-ws-{uuid.uuid4().hex[:8]}", message="the one")
    output = run_client(live_server, event)

    # The events table is emptied before each test.
    assert output["query"] == {"results": [{"data": {"__typename": "Query", "events": {"nodes": []}}}]}
    [recorded] = output["mutation"]["results"]
    assert "errors" not in recorded and "errors" not in output["mutation"]
    assert recorded["data"]["recordEvent"]["component"] == event["component"]
    assert output["subscription"] == {
        "data": {
            "eventRecorded": {
                "id": recorded["data"]["recordEvent"]["id"],
                "component": event["component"],
                "message": "the one",
            }
        }
    }
    for name, code in (
        ("invalid", "GRAPHQL_VALIDATION_FAILED"),
        ("syntax", "GRAPHQL_PARSE_FAILED"),
        ("ambiguous", "OPERATION_RESOLUTION_FAILURE"),
    ):
        refused = output[name]
        assert refused["results"] == [], refused
        assert [error["extensions"]["code"] for error in refused["errors"]] == [code], refused
        assert refused["errors"][0]["message"]
    assert "Cannot query field 'nope'" in output["invalid"]["errors"][0]["message"]
    assert output["stillServing"] == {"results": [{"data": {"__typename": "Query"}}]}
