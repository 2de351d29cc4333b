"""Limits on what one GraphQL request may ask for, and the check for page sizes.

The page-size ceiling is the `max_page_size` setting. The query-shape guards are constants here
because api/settings.py is not this door's file; they are candidates for settings
(GRAPHQL_MAX_DEPTH, GRAPHQL_MAX_ALIASES, GRAPHQL_MAX_TOKENS).
"""

from api.settings import Settings
from graphql_schema.errors import BadUserInput

# Deep enough for events -> node -> actor -> events -> actor (depth 7) and for GraphiQL's
# introspection query, shallow enough to stop Actor.events/Event.actor cycles from fanning out.
MAX_QUERY_DEPTH = 10
# Enough for a dashboard asking for a handful of differently filtered lists in one request.
MAX_ALIASES = 20
# The standard introspection query is 163 tokens, 183 with every option GraphiQL may add
# (descriptions, specifiedByURL, isRepeatable, input value deprecation): 1000 leaves it and any
# hand-written query ample room. Batches belong in variables, which are not tokens.
MAX_TOKENS = 1_000


def check_page_size(argument: str, value: int, settings: Settings) -> int:
    """`value` when 0 <= value <= max_page_size; otherwise a BAD_USER_INPUT error naming `argument`."""
    if not 0 <= value <= settings.max_page_size:
        raise BadUserInput(
            f"`{argument}` must be between 0 and {settings.max_page_size}, got {value}.", field=argument
        )
    return value
