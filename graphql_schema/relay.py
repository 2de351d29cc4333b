"""Relay object identification: refetch any Node by its id (`Query.node`, `Query.nodes`).

The Node interface itself lives in graphql_schema.types, beside Event, which implements it.
"""

import uuid
from collections.abc import Sequence

import strawberry

from api.settings import Settings
from graphql_schema.context import Context
from graphql_schema.errors import BadUserInput
from graphql_schema.types import Node, event_from_record

NODE_FIELD_DESCRIPTION = (
    "The object with this id (see Node), or null when there is none. An id that is not a UUID is a "
    "BAD_USER_INPUT error."
)
# The description quotes the setting's default, read from Settings so it cannot go stale.
_DEFAULT_MAX_IDS = Settings.model_fields["max_page_size"].default
NODES_FIELD_DESCRIPTION = (
    "The objects with these ids, one entry per id in the same order, null where there is none. At "
    f"most the server's maximum page size ({_DEFAULT_MAX_IDS} by default) ids per call, each a UUID; "
    "otherwise a BAD_USER_INPUT error naming `ids` (and the `index` of a bad id)."
)


def parse_node_id(node_id: str, *, field: str, index: int | None = None) -> uuid.UUID:
    """The UUID a Node id stands for; a BAD_USER_INPUT error naming `field` when it is not one."""
    try:
        return uuid.UUID(node_id)
    except ValueError:
        raise BadUserInput(f"`{field}` must be a UUID.", field=field, index=index) from None


def check_id_count(ids: Sequence[str], settings: Settings) -> None:
    """A BAD_USER_INPUT error naming `ids` when there are more than `max_page_size` of them."""
    # The same bound as a page of events: one lookup should cost no more than one page.
    if len(ids) > settings.max_page_size:
        raise BadUserInput(
            f"`ids` may hold at most {settings.max_page_size} ids, got {len(ids)}.", field="ids"
        )


async def resolve_node(info: strawberry.Info[Context, None], id: strawberry.ID) -> Node | None:
    """The Node with this id, batched with the request's other event lookups."""
    row = await info.context.loaders.event.load(parse_node_id(id, field="id"))
    return event_from_record(row) if row is not None else None


async def resolve_nodes(info: strawberry.Info[Context, None], ids: list[strawberry.ID]) -> list[Node | None]:
    """The Nodes with these ids in order (null for unknown ones), in one batched lookup."""
    check_id_count(ids, info.context.settings)
    # Every id is checked before any is loaded: a bad one fails the call without touching SQL.
    event_ids = [parse_node_id(node_id, field="ids", index=index) for index, node_id in enumerate(ids)]
    rows = await info.context.loaders.event.load_many(event_ids)
    return [event_from_record(row) if row is not None else None for row in rows]


# Declared here so the Query type only names them (graphql_schema.queries stays about events).
node_field = strawberry.field(resolver=resolve_node, description=NODE_FIELD_DESCRIPTION)
nodes_field = strawberry.field(resolver=resolve_nodes, description=NODES_FIELD_DESCRIPTION)
