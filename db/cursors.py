"""Opaque cursors: a position (created_at, id) in the order every event list uses.

Shared by both doors (GraphQL's `after`/`before`, the REST export's `after`), so a cursor one door
hands out is understood by the other.
"""

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta

from db.filters import InvalidFilter
from db.json_text import isoformat_bytes
from db.repository import EventKey

_SEPARATOR = "|"
_URL_SAFE = bytes.maketrans(b"+/", b"-_")  # base64's URL-safe alphabet, as base64.urlsafe_b64encode
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


class InvalidCursor(InvalidFilter):
    """A cursor we did not issue; `field` names the argument or parameter that carried it."""

    def __init__(self, argument: str) -> None:
        super().__init__(argument, f"`{argument}` is not a valid cursor.")


def encode_cursor(key: EventKey) -> str:
    """The client-facing cursor for `key` (URL-safe base64; clients must not parse it)."""
    return cursor_bytes(key.created_at, key.id).decode()


def cursor_bytes(created_at: datetime, event_id: uuid.UUID) -> bytes:
    """encode_cursor's text as ASCII bytes, straight from a row's columns (an export writes millions)."""
    raw = isoformat_bytes(created_at) + f"{_SEPARATOR}{event_id}".encode()
    return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE)


def decode_cursor(cursor: str, argument: str) -> EventKey:
    """The key inside `cursor`; InvalidCursor naming `argument` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        moment, event_id = raw.split(_SEPARATOR)
        created_at = datetime.fromisoformat(moment)
        key = EventKey(created_at=created_at, id=uuid.UUID(event_id))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor(argument) from None
    if created_at.tzinfo is None or not _in_range(created_at):
        raise InvalidCursor(argument)
    return key


def _in_range(moment: datetime) -> bool:
    # We only issue cursors of stored events; one near year 1 or 9999 is forged, and stepping past
    # it (next_key, previous_key) or sending it to the database would overflow.
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        return False
    return _EARLIEST < in_utc < _LATEST
