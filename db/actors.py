"""SQL about actors (the emails that record events): who, how often, when, and their latest events."""

from collections.abc import Sequence

import asyncpg

from db.repository import EVENT_COLUMNS


async def actor_stats_by_email(connection: asyncpg.Connection, emails: Sequence[str]) -> list[asyncpg.Record]:
    """(email, event_count, first_seen_at, last_seen_at) for each of `emails` that has events."""
    # ix_events_email_created_at_id serves both the lookup and min/max per email.
    return await connection.fetch(
        "SELECT email, count(*) AS event_count, min(created_at) AS first_seen_at, "
        "max(created_at) AS last_seen_at "
        "FROM events WHERE email = ANY($1::text[]) GROUP BY email",
        list(emails),
    )


async def latest_events_by_email(
    connection: asyncpg.Connection, wanted: Sequence[tuple[str, int]]
) -> list[asyncpg.Record]:
    """For each (email, size), that email's `size` newest events, in one statement.

    Each row carries the event columns plus `wanted_email` and `wanted_size` naming its request;
    rows of one request come newest first.
    """
    # LATERAL runs one index-ordered LIMIT scan per request instead of ranking every event.
    return await connection.fetch(
        f"SELECT wanted.wanted_email, wanted.wanted_size, latest.* "
        f"FROM unnest($1::text[], $2::int[]) AS wanted(wanted_email, wanted_size) "
        f"CROSS JOIN LATERAL ("
        f"SELECT {EVENT_COLUMNS} FROM events WHERE events.email = wanted.wanted_email "
        f"ORDER BY created_at DESC, id DESC LIMIT wanted.wanted_size"
        f") AS latest "
        f"ORDER BY wanted.wanted_email, wanted.wanted_size, latest.created_at DESC, latest.id DESC",
        [email for email, _ in wanted],
        [size for _, size in wanted],
    )
