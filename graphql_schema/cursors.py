"""Opaque cursors: a position (createdAt, id) in the order every event list uses."""

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta

from db.repository import EventKey
from graphql_schema.errors import BadUserInput

_SEPARATOR = "|"
_MAX_UUID = (1 << 128) - 1
# PostgreSQL timestamps have microsecond resolution: nothing fits between t and t + 1 µs.
_TICK = timedelta(microseconds=1)
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def encode_cursor(key: EventKey) -> str:
    """The client-facing cursor for `key` (URL-safe base64; clients must not parse it)."""
    raw = f"{key.created_at.isoformat()}{_SEPARATOR}{key.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, argument: str) -> EventKey:
    """The key inside `cursor`; BAD_USER_INPUT naming `argument` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        moment, event_id = raw.split(_SEPARATOR)
        created_at = datetime.fromisoformat(moment)
        key = EventKey(created_at=created_at, id=uuid.UUID(event_id))
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput(f"`{argument}` is not a valid cursor.", field=argument) from None
    if created_at.tzinfo is None or not _in_range(created_at):
        raise BadUserInput(f"`{argument}` is not a valid cursor.", field=argument)
    return key


def _in_range(moment: datetime) -> bool:
    # We only issue cursors of stored events; one near year 1 or 9999 is forged, and stepping past
    # it (next_key, previous_key) or sending it to the database would overflow.
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        return False
    return _EARLIEST < in_utc < _LATEST


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
