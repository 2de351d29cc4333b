"""The check for page sizes (the `max_page_size` setting).

The query-shape guards (depth, aliases, tokens) are settings too, applied in graphql_schema.schema.
"""

from api.settings import Settings
from graphql_schema.errors import BadUserInput


def check_page_size(argument: str, value: int, settings: Settings) -> int:
    """`value` when 0 <= value <= max_page_size; otherwise a BAD_USER_INPUT error naming `argument`."""
    if not 0 <= value <= settings.max_page_size:
        raise BadUserInput(
            f"`{argument}` must be between 0 and {settings.max_page_size}, got {value}.", field=argument
        )
    return value
