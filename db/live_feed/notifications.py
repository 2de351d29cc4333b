"""How recorded events are announced on PostgreSQL NOTIFY and read back: the payload's one definition.

The inserting statement itself sends the notification, inside the inserting transaction, so
PostgreSQL delivers it only at COMMIT (never for a rollback) and in commit order across every
process and replica that writes to the database.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

# The channel every process LISTENs on.
EVENTS_CHANNEL = "events_recorded"

# PostgreSQL refuses a payload of 8000 bytes or more (NOTIFY_PAYLOAD_MAX_LENGTH with 8 kB pages).
MAX_PAYLOAD_BYTES = 7999

# An event as readers get it: the keys and value types of a row selected with EVENT_COLUMNS
# (`data` as JSON text exactly as PostgreSQL renders `data::text`, `created_at` timezone-aware).
EventRecord = Mapping[str, Any]

# `data` travels as the text PostgreSQL renders, not as nested JSON, so a listener hands on the
# very text a query would return (big integers and decimals keep every digit). `created_at` in
# UTC without an offset, so the inserting session's TimeZone setting does not matter.
_FULL_PAYLOAD = (
    "json_build_object('id', id, 'component', component, 'environment', environment, "
    "'email', email, 'message', message, 'data', data::text, "
    "'created_at', created_at AT TIME ZONE 'UTC')::text"
)


def inserting_and_announcing(insert_statement: str, returning: str, before: str = "") -> str:
    """`insert_statement` (an INSERT without RETURNING) as one statement that also notifies.

    `before` is a CTE the insert reads from (`name AS (...)`), for the event clock.

    Each inserted row sends one notification: the whole event when it fits in a payload, else
    only its id (the listener fetches the row). One statement keeps a single-row insert at one
    round trip. MATERIALIZED makes PostgreSQL evaluate pg_notify for every row even though the
    final SELECT does not read its result; the rows come back in insertion order, `returning`
    naming the columns (as in RETURNING).
    """
    return (
        f"WITH {before + ', ' if before else ''}inserted AS ({insert_statement} RETURNING *), "
        f"payloads AS MATERIALIZED (SELECT inserted.*, {_FULL_PAYLOAD} AS payload FROM inserted), "
        "announced AS MATERIALIZED ("
        "SELECT payloads.*, pg_notify("
        f"'{EVENTS_CHANNEL}', "
        f"CASE WHEN octet_length(payload) <= {MAX_PAYLOAD_BYTES} THEN payload "
        "ELSE json_build_object('id', id)::text END"
        ") FROM payloads) "
        f"SELECT {returning} FROM announced"
    )


@dataclass(frozen=True, slots=True)
class Announcement:
    """One notification decoded: the event, or only its id when it was too large to travel."""

    event_id: uuid.UUID
    record: EventRecord | None


def decode_announcement(payload: str) -> Announcement:
    """Read a payload written by `inserting_and_announcing`; ValueError if it is not one."""
    try:
        fields = orjson.loads(payload)
        event_id = uuid.UUID(fields["id"])
        if "component" not in fields:
            return Announcement(event_id, None)
        created_at = datetime.fromisoformat(fields["created_at"]).replace(tzinfo=UTC)
        record = {
            "id": event_id,
            "component": fields["component"],
            "environment": fields["environment"],
            "email": fields["email"],
            "message": fields["message"],
            "data": fields["data"],
            "created_at": created_at,
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not an event announcement: {payload[:200]!r}") from error
    return Announcement(event_id, as_event_record(record))


def as_event_record(row: Mapping[str, Any]) -> EventRecord:
    """A read-only mapping of the event's columns: one object is shared by every subscriber."""
    return MappingProxyType(dict(row))
