"""Relay object identification: the Node interface, node(id:), nodes(ids:), and relay-compiler's verdict."""

import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from db.engine import Database
from graphql_schema.schema import schema
from tests.graphql_schema.support import (
    T0,
    CountingPool,
    event_row,
    graphql,
    graphql_data,
    new_id,
    only_error,
    seed,
    spaced_rows,
)
from tests.npm_packages import npm_install, run_node

NODE_QUERY = """
query ($id: ID!) {
  node(id: $id) { __typename id ... on Event { message createdAt } }
}
"""
NODES_QUERY = "query ($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Event { message } } }"


async def test_node_refetches_an_event_by_its_id(client: httpx.AsyncClient, database: Database) -> None:
    [event_id] = await seed(database, [event_row(message="hello")])
    node = (await graphql_data(client, NODE_QUERY, {"id": event_id}))["node"]
    assert node == {"__typename": "Event", "id": event_id, "message": "hello", "createdAt": T0.isoformat()}


async def test_node_id_is_the_event_uuid_not_a_base64_global_id(
    client: httpx.AsyncClient, database: Database
) -> None:
    await seed(database, [event_row()])
    listed_id = (await graphql_data(client, "{ events { nodes { id } } }"))["events"]["nodes"][0]["id"]
    assert str(uuid.UUID(listed_id)) == listed_id  # canonical UUID text, as existing clients expect
    node = (await graphql_data(client, NODE_QUERY, {"id": listed_id}))["node"]
    assert node["id"] == listed_id


async def test_node_with_unknown_id_is_null(client: httpx.AsyncClient) -> None:
    assert await graphql_data(client, NODE_QUERY, {"id": new_id()}) == {"node": None}


async def test_node_with_id_that_is_not_a_uuid_is_bad_user_input(client: httpx.AsyncClient) -> None:
    # A base64 "Event:<uuid>" id, as other Relay servers use, is refused rather than guessed at.
    body = await graphql(client, NODE_QUERY, {"id": "RXZlbnQ6MQ=="})
    assert only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}
    assert body["data"] == {"node": None}


async def test_nodes_returns_one_entry_per_id_in_order_with_null_for_unknown_ids(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second, third = await seed(database, spaced_rows(3))
    unknown = new_id()
    data = await graphql_data(client, NODES_QUERY, {"ids": [third, unknown, first, third, second]})
    assert data["nodes"] == [
        {"__typename": "Event", "id": third, "message": "event 2"},
        None,
        {"__typename": "Event", "id": first, "message": "event 0"},
        {"__typename": "Event", "id": third, "message": "event 2"},
        {"__typename": "Event", "id": second, "message": "event 1"},
    ]


async def test_nodes_with_no_ids_is_an_empty_list(client: httpx.AsyncClient) -> None:
    assert await graphql_data(client, NODES_QUERY, {"ids": []}) == {"nodes": []}


async def test_nodes_with_an_id_that_is_not_a_uuid_names_its_index(client: httpx.AsyncClient) -> None:
    body = await graphql(client, NODES_QUERY, {"ids": [new_id(), "not-a-uuid", new_id()]})
    assert only_error(body)["extensions"] == {"code": "BAD_USER_INPUT", "field": "ids", "index": 1}
    # nodes is non-null, so the error nulls the whole response rather than one entry.
    assert body["data"] is None


async def test_nodes_accepts_max_page_size_ids(client: httpx.AsyncClient, settings: Settings) -> None:
    ids = [new_id() for _ in range(settings.max_page_size)]
    assert (await graphql_data(client, NODES_QUERY, {"ids": ids}))["nodes"] == [None] * len(ids)


async def test_nodes_with_more_than_max_page_size_ids_is_bad_user_input(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ids = [new_id() for _ in range(settings.max_page_size + 1)]
    error = only_error(await graphql(client, NODES_QUERY, {"ids": ids}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "ids"}
    assert f"at most {settings.max_page_size}" in error["message"]


async def test_node_nodes_and_event_lookups_share_one_batched_statement(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await seed(database, spaced_rows(3))
    counting = CountingPool(database.pool)
    monkeypatch.setattr(database, "pool", counting)
    data = await graphql_data(
        client,
        "query ($id: ID!, $ids: [ID!]!) "
        "{ node(id: $id) { id } nodes(ids: $ids) { id } event(id: $id) { id } }",
        {"id": ids[0], "ids": [*ids, new_id()]},
    )
    monkeypatch.undo()
    assert data == {
        "node": {"id": ids[0]},
        "nodes": [{"id": ids[0]}, {"id": ids[1]}, {"id": ids[2]}, None],
        "event": {"id": ids[0]},
    }
    assert len(counting.statements) == 1, counting.statements


async def test_event_is_the_only_node_type_and_node_declares_only_id(client: httpx.AsyncClient) -> None:
    data = await graphql_data(
        client,
        '{ __type(name: "Node") '
        "{ kind fields { name type { kind ofType { name } } } possibleTypes { name } } }",
    )
    assert data["__type"] == {
        "kind": "INTERFACE",
        "fields": [{"name": "id", "type": {"kind": "NON_NULL", "ofType": {"name": "ID"}}}],
        "possibleTypes": [{"name": "Event"}],
    }


# relay-compiler: the client toolchain that decides whether the schema is Relay-compliant.

RELAY_COMPILER = {"relay-compiler": "^21"}

# A component's fragments as an app would write them: refetch one event through node(id:), and page
# through events with @connection. relay-compiler only reads the graphql`` tags.
RELAY_SOURCE = """
const graphql = String.raw;

export const eventFragment = graphql`
  fragment EventCard_event on Event @refetchable(queryName: "EventRefetchQuery") {
    id
    message
  }
`;

export const listFragment = graphql`
  fragment EventList_query on Query
  @argumentDefinitions(count: { type: "Int", defaultValue: 2 }, cursor: { type: "String" })
  @refetchable(queryName: "EventListPaginationQuery") {
    events(first: $count, after: $cursor) @connection(key: "EventList_events") {
      edges { cursor node { id ...EventCard_event } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
"""

# Actor has no id and does not implement Node: Relay cannot refetch it.
NOT_A_NODE_SOURCE = """
const graphql = String.raw;

export const actorFragment = graphql`
  fragment ActorCard_actor on Actor @refetchable(queryName: "ActorRefetchQuery") {
    email
  }
`;
"""


def relay_project(folder: Path, source: str) -> Path:
    """`folder` as a Relay app: our SDL, a relay.config.json and one source file; returns it."""
    (folder / "src").mkdir(parents=True)
    (folder / "schema.graphql").write_text(schema.as_str(), encoding="utf-8")
    config = {"src": "./src", "schema": "./schema.graphql", "language": "javascript"}
    (folder / "relay.config.json").write_text(json.dumps(config))
    # The artifacts are ES modules; marking the folder lets Node import them to read their text.
    (folder / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    (folder / "src" / "app.js").write_text(source, encoding="utf-8")
    return folder


def run_relay_compiler(project: Path) -> subprocess.CompletedProcess[str]:
    """relay-compiler run once over `project` (installed from npm once per test run)."""
    compiler = npm_install(RELAY_COMPILER) / "node_modules" / ".bin" / "relay-compiler"
    return subprocess.run([str(compiler)], cwd=project, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compiled_relay_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated-artifacts folder of a Relay app compiled against our schema."""
    project = relay_project(tmp_path_factory.mktemp("relay-app"), RELAY_SOURCE)
    completed = run_relay_compiler(project)
    assert completed.returncode == 0, f"relay-compiler failed:\n{completed.stdout}\n{completed.stderr}"
    return project / "src" / "__generated__"


@pytest.fixture(scope="module")
def relay_operations(compiled_relay_app: Path) -> dict[str, str]:
    """The query text of each generated operation, read by importing its artifact with Node.js."""
    names = ("EventRefetchQuery", "EventListPaginationQuery")
    imports = "".join(f'import {name} from "./{name}.graphql.js";\n' for name in names)
    texts = ", ".join(f"{name}: {name}.params.text" for name in names)
    script = f"{imports}process.stdout.write(JSON.stringify({{{texts}}}));\n"
    return json.loads(run_node(compiled_relay_app, script))


@pytest.mark.slow
def test_relay_compiler_generates_a_refetch_query_through_node(
    compiled_relay_app: Path, relay_operations: dict[str, str]
) -> None:
    generated = {path.name for path in compiled_relay_app.iterdir() if path.name.endswith(".graphql.js")}
    assert generated == {
        "EventCard_event.graphql.js",
        "EventRefetchQuery.graphql.js",
        "EventList_query.graphql.js",
        "EventListPaginationQuery.graphql.js",
    }
    assert "node(id: $id)" in relay_operations["EventRefetchQuery"]


@pytest.mark.slow
def test_relay_compiler_refuses_refetchable_on_a_type_that_is_not_a_node(tmp_path: Path) -> None:
    completed = run_relay_compiler(relay_project(tmp_path, NOT_A_NODE_SOURCE))
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    # Fails for the reason under test, not for a broken setup.
    assert "Invalid use of @refetchable on fragment 'ActorCard_actor'" in output, output


@pytest.mark.slow
async def test_relay_refetch_query_runs_against_the_server(
    client: httpx.AsyncClient, database: Database, relay_operations: dict[str, str]
) -> None:
    [event_id] = await seed(database, [event_row(message="refetched")])
    data = await graphql_data(client, relay_operations["EventRefetchQuery"], {"id": event_id})
    assert data == {"node": {"__typename": "Event", "id": event_id, "message": "refetched"}}


@pytest.mark.slow
async def test_relay_pagination_query_pages_events_with_cursors(
    client: httpx.AsyncClient, database: Database, relay_operations: dict[str, str]
) -> None:
    ids = await seed(database, spaced_rows(3))
    query = relay_operations["EventListPaginationQuery"]
    first_page = (await graphql_data(client, query, {"count": 2}))["events"]
    assert [edge["node"]["id"] for edge in first_page["edges"]] == [ids[2], ids[1]]
    assert first_page["pageInfo"]["hasNextPage"] is True
    cursor = first_page["pageInfo"]["endCursor"]
    second_page = (await graphql_data(client, query, {"count": 2, "cursor": cursor}))["events"]
    assert [edge["node"]["id"] for edge in second_page["edges"]] == [ids[0]]
    assert second_page["pageInfo"]["hasNextPage"] is False
