"""All SQL the doors need, as named functions. None of them commits: `Database.transaction` does."""

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from db.event_clock import stamp
from db.filters import EventFilter, SqlParams, filter_conditions
from db.ids import created_at_span, event_id
from db.json_text import encode_json
from db.live_feed.notifications import inserting_and_announcing
from db.validation import NewEvent

# Every reader gets the same columns; `data` as its JSON text so hot paths can copy it into a
# response without decoding and re-encoding it.
EVENT_COLUMNS = "id, component, environment, email, message, data::text AS data, created_at"

# How many matches of a full-text search a page reads from the index before it takes the list
# order instead (page_query): above this many, a page's worth turns up soon in list order. At
# 1,000,000 events, reading this many costs a common word's page ~5 ms more than list order did.
SEARCH_CANDIDATES = 2000


@dataclass(frozen=True, slots=True)
class EventKey:
    """A position in the (created_at, id) order that every list uses."""

    created_at: datetime
    id: uuid.UUID


# Each insert stamps its events in commit order (db.event_clock), makes their ids from the stamps
# (db.ids) and NOTIFYs the live feed once (db.live_feed.notifications), in one statement: one round
# trip, announced at COMMIT only. WITH ORDINALITY and the stamps keep the input order.
_INSERT_ONE_AND_ANNOUNCE = inserting_and_announcing(
    "INSERT INTO events (id, component, environment, email, message, data, created_at) "
    f"SELECT {event_id('stamped.at')}, $1::text, $2::text, $3::text, $4::text, $5::jsonb, stamped.at "
    f"FROM clock, LATERAL (SELECT {stamp('1', '1')}) AS stamped(at)",
    returning=EVENT_COLUMNS,
    count="1",
)
_BATCH_SIZE = "cardinality($1::text[])"
_INSERT_MANY_AND_ANNOUNCE = inserting_and_announcing(
    "INSERT INTO events (id, component, environment, email, message, data, created_at) "
    f"SELECT {event_id('stamped.at')}, batch.component, batch.environment, batch.email, batch.message, "
    "batch.data::jsonb, stamped.at "
    "FROM clock, unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY "
    "AS batch(component, environment, email, message, data, position), "
    f"LATERAL (SELECT {stamp(_BATCH_SIZE, 'batch.position')}) AS stamped(at) "
    "ORDER BY batch.position",
    returning=EVENT_COLUMNS,
    count=_BATCH_SIZE,
)


async def insert_event(connection: asyncpg.Connection, event: NewEvent) -> asyncpg.Record:
    """Store one event and announce it (delivered at commit); return it as stored."""
    return await connection.fetchrow(
        _INSERT_ONE_AND_ANNOUNCE,
        event.component,
        event.environment,
        event.email,
        event.message,
        encode_json(event.data),
    )


async def insert_events(connection: asyncpg.Connection, events: Sequence[NewEvent]) -> list[asyncpg.Record]:
    """Store several events in one statement and announce them (one notification, at commit).

    Returns them as stored, in the order given.
    """
    if not events:
        return []
    return await connection.fetch(
        _INSERT_MANY_AND_ANNOUNCE,
        [event.component for event in events],
        [event.environment for event in events],
        [event.email for event in events],
        [event.message for event in events],
        [encode_json(event.data) for event in events],
    )


async def get_event(connection: asyncpg.Connection, event_id: uuid.UUID) -> asyncpg.Record | None:
    """The event with this id, or None."""
    rows = await get_events_by_ids(connection, [event_id])
    return rows[0] if rows else None


async def get_events_by_ids(
    connection: asyncpg.Connection, event_ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    """The events among `event_ids` that exist, in no particular order (one statement)."""
    sql, values = ids_query(event_ids)
    return await connection.fetch(sql, *values)


def ids_query(event_ids: Sequence[uuid.UUID]) -> tuple[str, list[object]]:
    """The SQL (and its parameters) of `get_events_by_ids`; tests EXPLAIN exactly this.

    Version 7 ids name the millisecond their event was stamped in (db.ids), so they are looked for
    within the span of those milliseconds first, and PostgreSQL reads only the partitions of that
    span. Only when some id is not found there (a version 4 id of an older event, a row written by
    hand with its own created_at, an id that does not exist) are the others looked for in every
    partition; when all were found, that part of the plan never runs.
    """
    ids = list(dict.fromkeys(event_ids))
    spans = [span for span in map(created_at_span, ids) if span is not None]
    if not spans:
        return f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1::uuid[])", [ids]
    sql = (  # SELECT first, WITH inside: it reads as the one read it is (tests/rest/test_one_round_trip.py)
        f"SELECT * FROM (WITH near AS MATERIALIZED (SELECT {EVENT_COLUMNS} FROM events "
        "WHERE id = ANY($1::uuid[]) AND created_at >= $2 AND created_at < $3) "
        f"SELECT * FROM near UNION ALL SELECT {EVENT_COLUMNS} FROM events "
        "WHERE (SELECT count(*) FROM near) < cardinality($1::uuid[]) "
        "AND id = ANY($1::uuid[]) AND id <> ALL(ARRAY(SELECT id FROM near))) AS found"
    )
    return sql, [ids, min(start for start, _ in spans), max(end for _, end in spans)]


async def get_events_stamped(
    connection: asyncpg.Connection, spans: Sequence[tuple[datetime, datetime]]
) -> list[asyncpg.Record]:
    """The events stamped within each (first, last) span: span after span, each oldest first."""
    if not spans:
        return []
    sql, values = stamped_query(spans)
    return await connection.fetch(sql, *values)


def stamped_query(spans: Sequence[tuple[datetime, datetime]]) -> tuple[str, list[object]]:
    """The SQL (and its parameters) of `get_events_stamped`; tests EXPLAIN exactly this.

    Each span is read as its own index range. The overall bounds ($3, $4) select nothing the spans
    do not, but they are what PostgreSQL can estimate: from the spans alone, which it only sees
    row by row, it guessed a ninth of the table per span and, from two spans on, read the whole
    table in parallel instead (250-450 ms a read at 1,000,000 events).
    """
    sql = (
        "SELECT stamped.* FROM unnest($1::timestamptz[], $2::timestamptz[]) WITH ORDINALITY "
        "AS span(first_at, last_at, position), "
        f"LATERAL (SELECT {EVENT_COLUMNS} FROM events "
        "WHERE created_at BETWEEN span.first_at AND span.last_at "
        "AND created_at BETWEEN $3 AND $4) AS stamped "
        "ORDER BY span.position, stamped.created_at, stamped.id"
    )
    firsts, lasts = [first for first, _ in spans], [last for _, last in spans]
    return sql, [firsts, lasts, min(firsts), max(lasts)]


async def stream_events(
    connection: asyncpg.Connection,
    event_filter: EventFilter,
    *,
    chunk_rows: int,
    after: EventKey | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """Matching events oldest first (strictly after `after`), in chunks read from a server-side cursor.

    Memory stays at one chunk whatever the table holds. Must run inside a transaction
    (PostgreSQL cursors live in one).
    """
    sql, values = stream_query(event_filter, after=after)
    cursor = await connection.cursor(sql, *values)
    while True:
        rows = await cursor.fetch(chunk_rows)
        if not rows:
            return
        yield rows
        if len(rows) < chunk_rows:
            return


def stream_query(event_filter: EventFilter, *, after: EventKey | None = None) -> tuple[str, list[object]]:
    """The SQL (and its parameters) of the oldest-first stream; tests EXPLAIN exactly this."""
    params = SqlParams()
    conditions = filter_conditions(event_filter, params)
    if after is not None:  # a row comparison: one range of the (created_at, id) index
        conditions.append(f"(created_at, id) > ({params.add(after.created_at)}, {params.add(after.id)})")
    return f"SELECT {EVENT_COLUMNS} FROM events{_where(conditions)} ORDER BY created_at, id", params.values


async def list_events_page(
    connection: asyncpg.Connection,
    event_filter: EventFilter,
    *,
    newest_first: bool,
    after: EventKey | None,
    before: EventKey | None,
    limit: int,
    from_end: bool = False,
) -> tuple[list[asyncpg.Record], bool]:
    """One keyset page: events strictly between `after` and `before` in the requested order.

    With `from_end`, the page is the last `limit` rows of that range (for `last:`), still
    returned in the requested order. The flag says whether more rows lie beyond the page on the
    side it was cut (after it, or before it with `from_end`).
    """
    sql, values = page_query(
        event_filter,
        newest_first=newest_first,
        after=after,
        before=before,
        limit=limit + 1,
        scan_descending=newest_first != from_end,
    )
    rows = await connection.fetch(sql, *values)
    has_more = len(rows) > limit
    rows = rows[:limit]
    if from_end:
        rows.reverse()
    return rows, has_more


def event_key(record: Mapping[str, Any]) -> EventKey:
    """The position of an event (a row or record with its columns) in the log."""
    return EventKey(record["created_at"], record["id"])


async def newest_event_key(connection: asyncpg.Connection, event_filter: EventFilter) -> EventKey | None:
    """The position of the newest matching event, or None when none matches."""
    rows, _more = await list_events_page(
        connection, event_filter, newest_first=True, after=None, before=None, limit=1
    )
    return event_key(rows[0]) if rows else None


def page_query(
    event_filter: EventFilter,
    *,
    newest_first: bool,
    after: EventKey | None,
    before: EventKey | None,
    limit: int,
    scan_descending: bool,
) -> tuple[str, list[object]]:
    """The SQL (and its parameters) of one keyset page; tests EXPLAIN exactly this."""
    params = SqlParams()
    conditions = filter_conditions(event_filter, params)
    # "after" in newest-first order means an older key; row comparison keeps it one index range.
    if after is not None:
        operator = "<" if newest_first else ">"
        conditions.append(
            f"(created_at, id) {operator} ({params.add(after.created_at)}, {params.add(after.id)})"
        )
    if before is not None:
        operator = ">" if newest_first else "<"
        conditions.append(
            f"(created_at, id) {operator} ({params.add(before.created_at)}, {params.add(before.id)})"
        )
    direction = "DESC" if scan_descending else "ASC"
    matching = f"SELECT {EVENT_COLUMNS} FROM events{_where(conditions)}"
    order = f"ORDER BY created_at {direction}, id {direction}"
    page_size = params.add(limit)
    if event_filter.search is None:
        return f"{matching} {order} LIMIT {page_size}", params.values
    # A search PostgreSQL guesses common but few events match (a rare or absent word) was read in
    # list order, the words checked row by row until the page filled: the whole table when it
    # never did (4-5 s for a word no event holds, at 1,000,000 events; 6 ms this way). So the
    # matches are first looked up in the full-text index, at most SEARCH_CANDIDATES + 1 of them;
    # when that is all of them, the page is cut from those. Only a search matching more runs in
    # list order, and for so common a search the page fills soon.
    all_found = f"(SELECT count(*) FROM found) <= {SEARCH_CANDIDATES}"
    return (
        f"SELECT * FROM (WITH found AS MATERIALIZED ({matching} LIMIT {SEARCH_CANDIDATES + 1}) "
        f"SELECT * FROM (SELECT * FROM found {order} LIMIT {page_size}) AS few WHERE {all_found} "
        f"UNION ALL SELECT * FROM ({matching} {order} LIMIT {page_size}) AS many WHERE NOT {all_found}"
        f") AS page {order}"
    ), params.values


async def count_events(connection: asyncpg.Connection, event_filter: EventFilter) -> int:
    """How many events match (an exact count: ask only when the caller wants it)."""
    params = SqlParams()
    where = _where(filter_conditions(event_filter, params))
    return await connection.fetchval(f"SELECT count(*) FROM events{where}", *params.values)


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""
