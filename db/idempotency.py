"""Idempotent writes: a retried request with the same `Idempotency-Key` returns the first answer."""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from db.json_text import encode_json
from db.repository import get_event, insert_events
from db.validation import NewEvent

MAX_KEY_LENGTH = 255
# Visible ASCII only: keys end up in logs and error messages.
_KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")


class InvalidIdempotencyKey(ValueError):
    """The key is empty, too long, or has characters other than visible ASCII."""


class IdempotencyKeyReused(Exception):
    """The key was used before with a different request (or its event no longer exists)."""


@dataclass(frozen=True, slots=True)
class KeyedEvent:
    """An event to record, with the idempotency key its request carried (if any)."""

    event: NewEvent
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """The stored event, and whether it was recorded by an earlier request with the same key."""

    record: asyncpg.Record
    replayed: bool


def check_idempotency_key(key: str) -> str:
    """`key` if it is acceptable; raise InvalidIdempotencyKey saying why otherwise."""
    if not _KEY_PATTERN.fullmatch(key):
        raise InvalidIdempotencyKey(
            f"An idempotency key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters."
        )
    return key


def request_fingerprint(event: NewEvent) -> bytes:
    """What makes two requests "the same": the event they ask for (key order in data ignored)."""
    canonical = encode_json(
        [event.component, event.environment, event.email, event.message, _sorted(event.data)]
    )
    return hashlib.sha256(canonical.encode()).digest()


def _sorted(value: object) -> object:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


async def insert_event_once(
    connection: asyncpg.Connection, event: NewEvent, *, owner: str, key: str, window: timedelta
) -> RecordedEvent:
    """Record `event` unless `key` was used within `window`; then return that first event.

    Concurrent requests with one key serialise on the key's row: the first claims it, the others
    wait for its commit and then read what it recorded. Must run inside a transaction.
    """
    return (await insert_events_once(connection, [KeyedEvent(event, key)], owner=owner, window=window))[0]


async def insert_events_once(
    connection: asyncpg.Connection, items: Sequence[KeyedEvent], *, owner: str, window: timedelta
) -> list[RecordedEvent]:
    """Record a batch in which some items carry keys; in input order, inside one transaction.

    Every key is claimed first, in sorted order, so concurrent batches sharing keys in any order
    wait for each other instead of deadlocking; then every new event goes in with one statement,
    which takes the clock's turn (db.event_clock): keys are never claimed after a turn, so a
    transaction waiting for its turn to come holds nothing an earlier turn waits for. A key
    repeated within the batch stands for the first item that carries it.
    """
    fingerprints = [request_fingerprint(item.event) for item in items]
    first_with_key: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.key is None:
            continue
        first = first_with_key.setdefault(item.key, index)
        if fingerprints[first] != fingerprints[index]:
            raise IdempotencyKeyReused(
                f"The idempotency key {item.key!r} was already used with a different request."
            )
    earlier = {
        key: await _claim_or_replay(connection, owner, key, fingerprints[index], window)
        for key, index in sorted(first_with_key.items())
    }
    new_items = [
        index
        for index, item in enumerate(items)
        if item.key is None or (first_with_key[item.key] == index and earlier[item.key] is None)
    ]
    inserted = dict(
        zip(new_items, await insert_events(connection, [items[i].event for i in new_items]), strict=True)
    )
    claimed = [(items[index].key, record["id"]) for index, record in inserted.items() if items[index].key]
    if claimed:
        await connection.execute(
            "UPDATE idempotency_keys AS claimed SET event_id = recorded.event_id "
            "FROM unnest($2::text[], $3::uuid[]) AS recorded(key, event_id) "
            "WHERE claimed.owner = $1 AND claimed.key = recorded.key",
            owner,
            [key for key, _ in claimed],
            [event_id for _, event_id in claimed],
        )
    results: list[RecordedEvent] = []
    for index, item in enumerate(items):
        if index in inserted:
            results.append(RecordedEvent(inserted[index], replayed=False))
            continue
        assert item.key is not None  # only keyed items are not inserted
        replay = earlier[item.key]
        record = replay.record if replay is not None else inserted[first_with_key[item.key]]
        results.append(RecordedEvent(record, replayed=True))
    return results


async def _claim_or_replay(
    connection: asyncpg.Connection, owner: str, key: str, fingerprint: bytes, window: timedelta
) -> RecordedEvent | None:
    """None when this request now holds `key`; else the event an earlier request recorded with it."""
    claimed = await connection.fetchval(
        "INSERT INTO idempotency_keys (owner, key, request_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (owner, key) DO UPDATE "
        "SET request_hash = EXCLUDED.request_hash, event_id = NULL, created_at = now() "
        "WHERE idempotency_keys.created_at < now() - $4::interval "  # an expired key is free again
        "RETURNING true",
        owner,
        key,
        fingerprint,
        window,
    )
    if claimed:
        return None
    first = await connection.fetchrow(
        "SELECT request_hash, event_id FROM idempotency_keys WHERE owner = $1 AND key = $2",
        owner,
        key,
    )
    if bytes(first["request_hash"]) != fingerprint:
        raise IdempotencyKeyReused(f"The idempotency key {key!r} was already used with a different request.")
    record = await get_event(connection, first["event_id"]) if first["event_id"] else None
    if record is None:
        raise IdempotencyKeyReused(
            f"The idempotency key {key!r} was used, but the event it recorded no longer exists."
        )
    return RecordedEvent(record, replayed=True)


async def forget_keys_before(connection: asyncpg.Connection, age: timedelta) -> int:
    """Delete keys older than `age` (they no longer protect anything); return how many."""
    status = await connection.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", age
    )
    return int(status.split()[-1])
