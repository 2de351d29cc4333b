"""Event ids: UUIDv7 (RFC 9562) made from the event's commit-order stamp, so ids sort like created_at.

Every statement that records events stamps them one microsecond apart, after every stamp handed out
before, in commit order (db.event_clock). The same statement makes each event's id from its stamp
with `uuid7_at` (an SQL function, migration 0006): 48 bits of Unix milliseconds, the version, the
microseconds within the millisecond scaled to 12 bits (RFC 9562 section 6.2, method 3), then 62
random bits. Stamps never repeat and only grow, across worker processes and replicas alike, so the
ids of events recorded since then:

- sort exactly like (created_at, id): within one request in input order, within one group commit in
  arrival order, across processes and replicas in commit order;
- cannot collide: no two events share their first 64 bits.

Why not a monotonic generator in Python (the `uuid6` and `uuid-utils` packages have one, or twenty
lines of our own): its ids would follow arrival order within one process only, and across processes
they would disagree with created_at. The stamp exists only inside the inserting statement, under the
clock's lock, so the id is made there too; that costs about 1.5 µs per row over the
gen_random_uuid() the old default called (whose random half the id keeps).

Events recorded before keep their version 4 ids. Lists and cursors order by (created_at, id) as they
always did, and no two events share a created_at since the clock (migration 0005), so the order of
old events does not change and new ones follow them.
"""

import uuid
from datetime import UTC, datetime, timedelta

# The SQL function migration 0006 creates; the id column's default calls it with clock_timestamp().
UUID7_FUNCTION = "uuid7_at"


def event_id(stamp: str) -> str:
    """SQL: the id of the event stamped `stamp` (a timestamptz expression)."""
    return f"{UUID7_FUNCTION}({stamp})"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def created_at_span(id_: uuid.UUID) -> tuple[datetime, datetime] | None:
    """[from, to): when the event with this id was stamped, if the id says (version 7), else None.

    Its first 48 bits are the stamp's Unix milliseconds, so created_at lies within that millisecond:
    a lookup can name the one partition to search (db.partitions). Only for ids the service made:
    a row written by hand with its own created_at gets a default id from the clock's time instead,
    so a lookup that finds nothing in the span must still look everywhere (db.repository does).
    """
    if id_.version != 7:
        return None
    try:
        start = _EPOCH + (id_.int >> 80) * _MILLISECOND
        return start, start + _MILLISECOND
    except OverflowError:  # a made-up id past the year 9999
        return None
