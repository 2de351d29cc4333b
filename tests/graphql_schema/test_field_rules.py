"""Every field path of the schema, from every root, tried with every kind of caller.

The paths are derived from the schema itself, so a field added later is tried too; the expected
answer comes from the rule as the README states it, written here independently of the policy's
tables (graphql_schema.field_rules):

- reading anything stored (events, actors, pages) needs `events:read`, under any root;
- recording needs `events:write`, and a writer may read back the fields of the event it has just
  recorded, nothing reachable from it;
- introspection and `__typename` need nothing.
"""

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    get_named_type,
)
from graphql.pyutils import Undefined

from db.engine import Database
from graphql_schema.field_rules import field_access
from graphql_schema.schema import schema
from tests.graphql_schema.test_subscription import TRANSPORT_WS, record_through_rest
from tests.support import valid_event

READ, WRITE = "events:read", "events:write"
GRANTS = {"none": set(), "revoked": set(), "read": {READ}, "write": {WRITE}, "admin": {READ, WRITE}}
MAX_PATH = 5  # root field included: deep enough to reach every type and cross every relation twice

_INPUT = '{component: "rules", environment: "e", email: "rules@example.com", message: "m", data: {}}'
# Sample arguments for the fields that require some: a new field needing arguments must add its own.
REQUIRED_ARGUMENTS = {
    ("Query", "event"): '(id: "a785b2db-6566-4316-a435-58f8e5c6ae98")',
    ("Query", "actor"): '(email: "rules@example.com")',
    ("Query", "node"): '(id: "a785b2db-6566-4316-a435-58f8e5c6ae98")',
    ("Query", "nodes"): '(ids: ["a785b2db-6566-4316-a435-58f8e5c6ae98"])',
    ("Mutation", "recordEvent"): f"(input: {_INPUT})",
    ("Mutation", "recordEvents"): f"(inputs: [{_INPUT}])",
}
# Lists kept to one item, so trying every path stays cheap.
PAGE_ARGUMENTS = {("Query", "events"): "(first: 1)", ("Actor", "events"): "(first: 1)"}


@dataclass(frozen=True)
class FieldPath:
    root: str  # Query, Mutation or Subscription
    steps: tuple[tuple[str, str], ...]  # (type, field) from the root down

    @property
    def name(self) -> str:
        return ".".join([self.root] + [field for _type, field in self.steps])

    def document(self) -> str:
        """An operation selecting exactly this path (`__typename` under an object at the end)."""
        leaf_type = get_named_type(_field(*self.steps[-1]).type)
        text = "__typename" if isinstance(leaf_type, GraphQLObjectType | GraphQLInterfaceType) else ""
        for type_name, field_name in reversed(self.steps):
            arguments = REQUIRED_ARGUMENTS.get((type_name, field_name)) or PAGE_ARGUMENTS.get(
                (type_name, field_name), ""
            )
            if text and isinstance(get_named_type(_field(type_name, field_name).type), GraphQLInterfaceType):
                text = f"... on Event {{ {text} }}"  # an interface's paths go through Event's fields
            text = f"{field_name}{arguments}" + (f" {{ {text} }}" if text else "")
        keyword = {"Query": "query", "Mutation": "mutation", "Subscription": "subscription"}[self.root]
        return f"{keyword} {{ {text} }}"

    def needs(self) -> set[str]:
        """The scopes this path needs, by the README's rule."""
        if self.root != "Mutation":
            return {READ}
        own_event_field = len(self.steps) == 2 and _is_scalar(*self.steps[1])
        return {WRITE} if len(self.steps) == 1 or own_event_field else {WRITE, READ}


def _field(type_name: str, field_name: str) -> GraphQLField:
    parent = schema._schema.get_type(type_name)
    assert isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
    return parent.fields[field_name]


def _is_scalar(type_name: str, field_name: str) -> bool:
    return not isinstance(get_named_type(_field(type_name, field_name).type), GraphQLObjectType)


def field_paths(root: str, limit: int = MAX_PATH) -> Iterator[FieldPath]:
    """Every path of fields from `root`, up to `limit` fields long (interfaces through Event)."""

    def below(type_name: str, steps: tuple[tuple[str, str], ...]) -> Iterator[FieldPath]:
        parent = schema._schema.get_type(type_name)
        assert isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
        for field_name, field in parent.fields.items():
            path = FieldPath(root, (*steps, (type_name, field_name)))
            required = [
                argument
                for argument in field.args.values()
                if isinstance(argument.type, GraphQLNonNull) and argument.default_value is Undefined
            ]
            if required:
                assert (type_name, field_name) in REQUIRED_ARGUMENTS, f"add sample arguments for {path.name}"
            yield path
            named = get_named_type(field.type)
            if len(path.steps) < limit and isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
                # An interface is explored through its implementations' fields (Event for Node).
                concrete = "Event" if isinstance(named, GraphQLInterfaceType) else named.name
                yield from below(concrete, path.steps)

    yield from below(root, ())


def test_every_field_of_the_schema_has_an_access_rule() -> None:
    unruled = [
        f"{type_name}.{field_name}"
        for type_name, graphql_type in schema._schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType)
        and not type_name.startswith("__")
        for field_name in graphql_type.fields
        if field_access(type_name, field_name) is None
    ]
    assert unruled == [], "give these fields a rule in graphql_schema/field_rules.py"


def test_the_walk_reaches_every_field_of_the_schema() -> None:
    reached = {
        step for root in ("Query", "Mutation", "Subscription") for p in field_paths(root) for step in p.steps
    }
    declared = {
        (type_name, field_name)
        for type_name, graphql_type in schema._schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType) and not type_name.startswith("__")
        for field_name in graphql_type.fields
    }
    assert declared - reached == set()


def _expected_code(path: FieldPath, caller: str) -> str | None:
    if caller in ("none", "revoked"):
        return "UNAUTHENTICATED"
    return None if path.needs() <= GRANTS[caller] else "FORBIDDEN"


@pytest.mark.slow  # sweeps every path for every caller (the full run's job)
@pytest.mark.parametrize("root", ["Query", "Mutation"])
async def test_every_query_and_mutation_path_is_served_exactly_to_the_callers_the_rule_allows(
    auth_client: httpx.AsyncClient, keys: dict[str, str], root: str
) -> None:
    wrong: list[str] = []
    for path in field_paths(root):
        for caller in GRANTS:
            headers = {} if caller == "none" else {"Authorization": f"Bearer {keys[caller]}"}
            response = await auth_client.post("/graphql", json={"query": path.document()}, headers=headers)
            body = response.json()
            codes = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
            refused = next((code for code in codes if code in ("UNAUTHENTICATED", "FORBIDDEN")), None)
            if refused != _expected_code(path, caller) or (refused is None and codes):
                wrong.append(f"{path.name} as {caller}: {body}")
            if refused is not None and "data" in body and body["data"] is not None:
                wrong.append(f"{path.name} as {caller}: refused but answered data {body}")
    assert wrong == [], "\n".join(wrong[:20])


async def test_a_refusal_names_the_field_and_the_scope_it_needs(
    auth_client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    query = (
        f"mutation {{ recordEvent(input: {_INPUT}) {{ id actor {{ events(first: 500) {{ message }} }} }} }}"
    )
    headers = {"Authorization": f"Bearer {keys['write']}"}
    body = (await auth_client.post("/graphql", json={"query": query}, headers=headers)).json()
    error = body["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["extensions"]["field"] == "recordEvent.actor"
    assert "events:read" in error["message"]
    # Refused before anything ran: the event was not recorded.
    assert (await auth_client.get("/api/events/", headers={"X-API-Key": keys["read"]})).json() == {
        "events": []
    }


@pytest.fixture(scope="module")
def guarded_service(database_url: str) -> Iterator[str]:
    from tests.support import running_service, service_env

    env = service_env(DATABASE_URL=database_url, AUTH_REQUIRED="true", API_KEY_CACHE_S="0")
    with running_service(env) as (base_url, _process):
        yield base_url


@pytest.mark.slow
async def test_every_subscription_path_is_served_exactly_to_the_callers_the_rule_allows(
    guarded_service: str, keys: dict[str, str], database: Database
) -> None:
    from websockets.asyncio.client import connect

    paths = list(field_paths("Subscription", limit=4))
    url = guarded_service.replace("http://", "ws://", 1) + "/graphql"
    wrong: list[str] = []
    for caller in GRANTS:
        payload = {} if caller == "none" else {"Authorization": f"Bearer {keys[caller]}"}
        async with connect(url, subprotocols=[TRANSPORT_WS]) as websocket:  # type: ignore[list-item]
            await websocket.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert json.loads(await websocket.recv())["type"] == "connection_ack"
            for index, path in enumerate(paths):
                message = {"id": str(index), "type": "subscribe", "payload": {"query": path.document()}}
                await websocket.send(json.dumps(message))
            # Each subscription is refused at once or receives the next event recorded.
            async with httpx.AsyncClient(headers={"X-API-Key": keys["admin"]}, timeout=15) as http:
                outcome: dict[int, str | None] = {}
                deadline = asyncio.get_running_loop().time() + 20
                while len(outcome) < len(paths) and asyncio.get_running_loop().time() < deadline:
                    await record_through_rest(http, guarded_service, valid_event(component="rules"))
                    try:
                        while len(outcome) < len(paths):
                            reply = json.loads(await asyncio.wait_for(websocket.recv(), 0.5))
                            if reply["type"] == "error":
                                outcome[int(reply["id"])] = reply["payload"][0]["extensions"]["code"]
                            elif reply["type"] == "next":
                                outcome.setdefault(int(reply["id"]), None)
                    except TimeoutError:
                        pass
            for index, path in enumerate(paths):
                if index not in outcome:
                    wrong.append(f"{path.name} as {caller}: no answer")
                elif outcome[index] != _expected_code(path, caller):
                    wrong.append(f"{path.name} as {caller}: {outcome[index]}")
    assert wrong == [], "\n".join(wrong[:20])
