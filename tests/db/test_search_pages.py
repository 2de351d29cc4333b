"""A page of a full-text search is the same page whichever way its matches are found.

db.repository.page_query looks a search's matches up in the full-text index first, up to
SEARCH_CANDIDATES + 1 of them, and cuts the page from those when that is all of them; only a search
matching more is read in list order. Here the limit is also set to 2, so that searches matching 0,
1, 2, 3 and most of the events cross it both ways, and every page (both orders, from either end,
after and before a cursor) is checked against the matches PostgreSQL finds with the filter's own
condition in a plain query, ordered, cut and counted in Python.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import db.repository
from db.filters import EventFilter, SqlParams, filter_conditions
from db.repository import EventKey, event_key, list_events_page

SEARCHES = (
    "absent",
    "5",
    "delta",
    "gamma",
    "beta",
    "alpha",
    "alpha beta",
    '"beta gamma"',
    "-alpha",
    "beta OR delta",
)


def _message(n: int) -> str:
    # alpha in most, beta in every other, gamma in 3 and delta in 2 of the 24 events.
    words = ["alpha"] if n % 5 else []
    words += ["beta"] if n % 2 else []
    words += ["gamma"] if n in (3, 11, 19) else []
    words += ["delta"] if n in (7, 8) else []
    return " ".join([*words, "event", str(n)])


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    await connection.executemany(
        "INSERT INTO events (component, environment, email, message, data, created_at) "
        "VALUES ('search', 'test', 'a@example.com', $1, '{}', $2)",
        # Pairs share a created_at, so the id decides their order too.
        [(_message(n), start + timedelta(seconds=n // 2)) for n in range(24)],
    )
    try:
        yield connection
    finally:
        await connection.close()


async def _matches(connection: asyncpg.Connection, search: str) -> list[EventKey]:
    """Every event the search matches, oldest first: the filter's own condition, without paging."""
    params = SqlParams()
    (condition,) = filter_conditions(EventFilter(search=search), params)
    rows = await connection.fetch(f"SELECT created_at, id FROM events WHERE {condition}", *params.values)
    return sorted((event_key(row) for row in rows), key=_position)


def _position(key: EventKey) -> tuple[datetime, object]:
    return key.created_at, key.id


def _expected(
    matches: list[EventKey], *, newest_first: bool, after: EventKey | None, before: EventKey | None,
    limit: int, from_end: bool,
) -> tuple[list[EventKey], bool]:  # fmt: skip
    ordered = matches[::-1] if newest_first else list(matches)
    if after is not None:
        ordered = ordered[ordered.index(after) + 1 :]
    if before is not None:
        ordered = ordered[: ordered.index(before)]
    page = ordered[-limit:] if from_end else ordered[:limit]
    return page, len(ordered) > limit


@pytest.mark.parametrize("candidates", [2, db.repository.SEARCH_CANDIDATES], ids=["limit 2", "default limit"])
@pytest.mark.parametrize("search", SEARCHES)
async def test_a_search_page_is_the_page_of_its_matches_in_list_order(
    connection: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, candidates: int, search: str
) -> None:
    monkeypatch.setattr(db.repository, "SEARCH_CANDIDATES", candidates)
    matches = await _matches(connection, search)
    cursors: list[EventKey | None] = [None, *(matches[i] for i in (0, len(matches) // 2) if matches)]
    for newest_first in (True, False):
        for from_end in (False, True):
            for after in cursors:
                for before in (None, *(c for c in cursors if c is not None and c != after)):
                    if (
                        before is not None
                        and after is not None
                        and (_position(after) < _position(before)) == newest_first
                    ):
                        continue  # an empty range either way (the oracle wants `before` after `after`)
                    for limit in (1, 3):
                        rows, has_more = await list_events_page(
                            connection, EventFilter(search=search), newest_first=newest_first,
                            after=after, before=before, limit=limit, from_end=from_end,
                        )  # fmt: skip
                        expected = _expected(
                            matches, newest_first=newest_first, after=after, before=before,
                            limit=limit, from_end=from_end,
                        )  # fmt: skip
                        case = (search, newest_first, from_end, after, before, limit)
                        assert ([event_key(row) for row in rows], has_more) == expected, case


async def test_the_searches_cross_the_limit_both_ways(connection: asyncpg.Connection) -> None:
    counts = [len(await _matches(connection, search)) for search in SEARCHES]
    assert {0, 1, 2, 3} <= set(counts), counts
    assert max(counts) > 3, counts
