"""How a committed statement announces its events on PostgreSQL NOTIFY, and how a listener reads it.

One notification per inserting statement, whatever its number of events (and so one per transaction
on every path the service writes by). PostgreSQL takes one global lock while a transaction that
queued notifications commits, and writes each of them into its queue under that lock: a
notification per row (1,000 for a batch) kept every other committing writer waiting meanwhile.

The payload names the statement's events by their stamps. The clock hands each statement a run of
consecutive microseconds that no other statement shares (db.event_clock), so "`count` events,
stamped from `first` to `last`" is exact, and fits in about 100 bytes whatever the batch's size
(NOTIFY refuses 8000). Each listening process reads the events back once, with one indexed query
for all the notifications it handles together (db.repository.get_events_stamped), and fans them out.
A statement of one event (a lone write, a keyed write) also carries the event itself when it fits, as
every notification did before: the most frequent notification under light load then costs listeners
no query (measured: reading each back cut one-event transactions per second by about 40% on 2 cores).

The inserting statement itself sends the notification, so PostgreSQL delivers it only at COMMIT
(never for a rollback), in commit order, which is stamp order, to every process and replica.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from db.event_clock import clock_cte, stamp

# The channel every process LISTENs on.
EVENTS_CHANNEL = "events_recorded"

# PostgreSQL refuses a payload of 8000 bytes or more (NOTIFY_PAYLOAD_MAX_LENGTH with 8 kB pages).
MAX_PAYLOAD_BYTES = 7999

# An event as readers get it: the keys and value types of a row selected with EVENT_COLUMNS
# (`data` as JSON text exactly as PostgreSQL renders `data::text`, `created_at` timezone-aware).
EventRecord = Mapping[str, Any]


def _span(count: str) -> str:
    # Stamps in UTC without an offset, so the inserting session's TimeZone setting does not matter.
    return (
        f"'first', ({stamp(count, '1')}) AT TIME ZONE 'UTC', "
        f"'last', ({stamp(count, count)}) AT TIME ZONE 'UTC', 'count', {count}"
    )


# `data` travels as the text PostgreSQL renders, not as nested JSON, so a listener hands on the very
# text a query would return (big integers and decimals keep every digit).
_EVENT = (
    "json_build_object('id', inserted.id, 'component', inserted.component, "
    "'environment', inserted.environment, 'email', inserted.email, 'message', inserted.message, "
    "'data', inserted.data::text, 'created_at', inserted.created_at AT TIME ZONE 'UTC')"
)


def inserting_and_announcing(insert_statement: str, *, returning: str, count: str) -> str:
    """`insert_statement` (an INSERT without RETURNING) as one statement that also notifies, once.

    The INSERT takes its stamps from the CTE `clock`, reserving `count` of them (an SQL expression
    of the statement's parameters, or "1" for a statement of one event), which this adds. One
    statement keeps a single-row insert at one round trip. The final SELECT reads the one-row
    `announced`, so PostgreSQL evaluates its pg_notify; it returns the rows, `returning` naming the
    columns (as in RETURNING), in stamp order, which is the order they were given in.
    """
    span = f"json_build_object({_span(count)})::text"
    if count == "1":
        with_event = f"json_build_object({_span(count)}, 'event', {_EVENT})::text"
        payload = (
            f"SELECT CASE WHEN octet_length(with_event) <= {MAX_PAYLOAD_BYTES} THEN with_event "
            f"ELSE span END AS payload FROM (SELECT {with_event} AS with_event, {span} AS span "
            "FROM inserted, clock) AS forms"
        )
    else:
        payload = f"SELECT {span} AS payload FROM clock"
    return (
        f"WITH {clock_cte(count)}, "
        f"inserted AS ({insert_statement} RETURNING *), "
        f"announced AS MATERIALIZED (SELECT pg_notify('{EVENTS_CHANNEL}', payload) FROM ({payload}) AS p) "
        f"SELECT {returning} FROM inserted CROSS JOIN announced ORDER BY inserted.created_at"
    )


@dataclass(frozen=True, slots=True)
class Announcement:
    """One committed statement's events: `count` of them, stamped from `first_at` to `last_at`.

    `record` is the event itself when the statement held one and it fitted in the payload.
    """

    first_at: datetime
    last_at: datetime
    count: int
    record: EventRecord | None = None


def decode_announcement(payload: str) -> Announcement:
    """Read a payload written by `inserting_and_announcing`; ValueError if it is not one."""
    try:
        fields = orjson.loads(payload)
        announcement = Announcement(
            first_at=_utc(fields["first"]),
            last_at=_utc(fields["last"]),
            count=int(fields["count"]),
            record=_event(fields["event"]) if "event" in fields else None,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not an event announcement: {payload[:200]!r}") from error
    if announcement.count < 1 or announcement.first_at > announcement.last_at:
        raise ValueError(f"not an event announcement: {payload[:200]!r}")
    return announcement


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _event(fields: dict[str, Any]) -> EventRecord:
    return as_event_record(
        {
            "id": uuid.UUID(fields["id"]),
            "component": fields["component"],
            "environment": fields["environment"],
            "email": fields["email"],
            "message": fields["message"],
            "data": fields["data"],
            "created_at": _utc(fields["created_at"]),
        }
    )


def as_event_record(row: Mapping[str, Any]) -> EventRecord:
    """A read-only mapping of the event's columns: one object is shared by every subscriber."""
    return MappingProxyType(dict(row))
