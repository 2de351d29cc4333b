"""API keys: creation, listing, revocation, and the one access rule both doors apply."""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.engine import Database

EVENTS_READ = "events:read"
EVENTS_WRITE = "events:write"
ADMIN = "admin"
SCOPES = (EVENTS_READ, EVENTS_WRITE, ADMIN)

_KEY_PREFIX = "ak"


class NotAuthenticated(Exception):
    """No key, or a key that is unknown, malformed or revoked (401 / UNAUTHENTICATED)."""


class NotPermitted(Exception):
    """A valid key without the scope the operation needs (403 / FORBIDDEN)."""


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What is known about a key, never the key itself."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """`admin` holds every scope; otherwise the scope must be granted explicitly."""
        return ADMIN in self.scopes or scope in self.scopes


def _hash(raw_key: str) -> bytes:
    # Keys carry 256 random bits, so a plain SHA-256 is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).digest()


def _key_id(raw_key: str) -> str | None:
    parts = raw_key.split("_", 2)  # the secret is URL-safe base64 and may itself contain "_"
    if len(parts) != 3 or parts[0] != _KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def _info(record: asyncpg.Record) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=record["id"],
        name=record["name"],
        scopes=tuple(record["scopes"]),
        created_at=record["created_at"],
        revoked_at=record["revoked_at"],
    )


async def create_api_key(
    connection: asyncpg.Connection, name: str, scopes: list[str]
) -> tuple[ApiKeyInfo, str]:
    """Store a new key; return its description and the key itself (shown once, never stored)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    key_id = secrets.token_hex(6)
    raw_key = f"{_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    record = await connection.fetchrow(
        "INSERT INTO api_keys (id, name, key_hash, scopes) VALUES ($1, $2, $3, $4) "
        "RETURNING id, name, scopes, created_at, revoked_at",
        key_id,
        name,
        _hash(raw_key),
        sorted(set(scopes)),
    )
    return _info(record), raw_key


async def list_api_keys(connection: asyncpg.Connection) -> list[ApiKeyInfo]:
    """Every key, oldest first, revoked ones included."""
    records = await connection.fetch(
        "SELECT id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
    )
    return [_info(record) for record in records]


async def revoke_api_key(connection: asyncpg.Connection, key_id: str) -> bool:
    """Revoke a key by its id; False when no active key has that id."""
    status = await connection.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return status == "UPDATE 1"


class KeyVerifier:
    """Checks presented keys against the table, remembering answers for half of `cache_s` seconds.

    The cache keeps authentication off the hot path's database round trips; a revocation takes
    effect within `cache_s`, for requests and (re-checking every `recheck_interval_s`) live feeds.
    """

    def __init__(self, database: Database, cache_s: float) -> None:
        self.database = database
        self.cache_s = cache_s
        self._cache: dict[bytes, tuple[float, ApiKeyInfo | None]] = {}

    async def authorize(self, raw_key: str | None, scope: str) -> ApiKeyInfo:
        """The key's description if it is valid and holds `scope`; raise otherwise."""
        key = await self.identify(raw_key)
        if not key.allows(scope):
            raise NotPermitted(f"The API key lacks the '{scope}' scope.")
        return key

    async def identify(self, raw_key: str | None) -> ApiKeyInfo:
        """The key's description if it is valid (present, known, not revoked); NotAuthenticated otherwise."""
        if not raw_key:
            raise NotAuthenticated("An API key is required: send 'Authorization: Bearer <key>'.")
        if " " in raw_key.strip():
            # Keys never hold a space: these are credentials in another scheme (`Basic ...`). The
            # scheme is not echoed back: it is the client's text, of any length.
            raise NotAuthenticated(
                "The credentials are not a valid API key (expected 'Authorization: Bearer <key>')."
            )
        key = await self._verify(raw_key)
        if key is None:
            raise NotAuthenticated("The API key is not valid (unknown, malformed or revoked).")
        return key

    @property
    def recheck_interval_s(self) -> float:
        """How often a long-lived connection should re-check its key to notice a revocation in time."""
        return max(self.cache_s / 2, 0.25)

    async def _verify(self, raw_key: str) -> ApiKeyInfo | None:
        digest = _hash(raw_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await self._lookup(raw_key, digest)
        if self.cache_s > 0:
            if len(self._cache) > 10_000:  # bounded: a flood of random keys cannot grow it forever
                self._cache.clear()
            # Half the setting: live feeds re-check their key every half (recheck_interval_s), so a
            # revocation reaches them, too, within the whole setting.
            self._cache[digest] = (now + self.cache_s / 2, key)
        return key

    async def _lookup(self, raw_key: str, digest: bytes) -> ApiKeyInfo | None:
        key_id = _key_id(raw_key)
        if key_id is None:
            return None
        async with self.database.transaction() as connection:
            record = await connection.fetchrow(
                "SELECT id, name, scopes, created_at, revoked_at, key_hash FROM api_keys WHERE id = $1",
                key_id,
            )
        # Constant-time comparison of the hashes, so response timing reveals nothing of the key.
        if record is None or not hmac.compare_digest(bytes(record["key_hash"]), digest):
            return None
        if record["revoked_at"] is not None:
            return None
        return _info(record)
