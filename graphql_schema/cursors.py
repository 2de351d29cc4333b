"""Opaque cursors (db.cursors) as GraphQL reads them, and the keys just beside a position."""

import uuid
from datetime import timedelta

from db.cursors import InvalidCursor
from db.cursors import decode_cursor as decode_event_key
from db.cursors import encode_cursor as encode_cursor  # re-exported: the GraphQL modules import it here
from db.repository import EventKey
from graphql_schema.errors import BadUserInput

_MAX_UUID = (1 << 128) - 1
# PostgreSQL timestamps have microsecond resolution: nothing fits between t and t + 1 µs.
_TICK = timedelta(microseconds=1)


def decode_cursor(cursor: str, argument: str) -> EventKey:
    """The key inside `cursor`; BAD_USER_INPUT naming `argument` when it is not one of ours."""
    try:
        return decode_event_key(cursor, argument)
    except InvalidCursor as error:
        raise BadUserInput(error.reason, field=argument) from None


def next_key(key: EventKey) -> EventKey:
    """The smallest possible key above `key` in ascending order (no event can sit in between)."""
    if key.id.int < _MAX_UUID:
        return EventKey(key.created_at, uuid.UUID(int=key.id.int + 1))
    return EventKey(key.created_at + _TICK, uuid.UUID(int=0))


def previous_key(key: EventKey) -> EventKey:
    """The largest possible key below `key` in ascending order."""
    if key.id.int > 0:
        return EventKey(key.created_at, uuid.UUID(int=key.id.int - 1))
    return EventKey(key.created_at - _TICK, uuid.UUID(int=_MAX_UUID))
