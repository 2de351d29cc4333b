"""Idempotent writes: a retried request with the same `Idempotency-Key` returns the first answer."""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from db.json_text import encode_json
from db.repository import get_event, insert_event
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
    fingerprint = request_fingerprint(event)
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
        record = await insert_event(connection, event)
        await connection.execute(
            "UPDATE idempotency_keys SET event_id = $3 WHERE owner = $1 AND key = $2",
            owner,
            key,
            record["id"],
        )
        return RecordedEvent(record, replayed=False)
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


async def insert_events_once(
    connection: asyncpg.Connection, items: Sequence[KeyedEvent], *, owner: str, window: timedelta
) -> list[RecordedEvent]:
    """Record a batch in which some items carry keys; in input order, inside one transaction."""
    results: list[RecordedEvent] = []
    for item in items:
        if item.key is None:
            results.append(RecordedEvent(await insert_event(connection, item.event), replayed=False))
        else:
            results.append(
                await insert_event_once(connection, item.event, owner=owner, key=item.key, window=window)
            )
    return results


async def forget_keys_before(connection: asyncpg.Connection, age: timedelta) -> int:
    """Delete keys older than `age` (they no longer protect anything); return how many."""
    status = await connection.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", age
    )
    return int(status.split()[-1])
