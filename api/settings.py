"""One typed settings object, read from the environment and an optional `.env` file."""

from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from db.engine import PoolMode
from db.partitions import PartitionInterval
from db.urls import as_libpq_url
from db.validation import DEFAULT_EVENT_LIMITS, EventLimits
from graphql_schema.persisted_documents import read_manifest


class Settings(BaseSettings):
    """Everything the service can be told; `.env.sample` lists each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Where the events live. DATABASE_URL wins; the original's POSTGRES_* variables still work;
    # with neither, an embedded PostgreSQL is started in ACTIVITY_DATA_DIR.
    database_url: str | None = None
    postgres_user: str | None = None
    postgres_password: str | None = None
    postgres_db: str | None = None
    postgres_host: str | None = None
    postgres_port: int = 5432
    activity_data_dir: Path = Path(".data")
    # Apply migrations at startup on an external database too (the embedded one always is).
    migrate_on_start: bool = False

    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    # A request waits at most this long for a free connection before it is answered 503.
    db_acquire_timeout_s: float = Field(default=5.0, gt=0)
    # Read replicas (streaming standbys of DATABASE_URL), comma-separated: lists and GraphQL query
    # reads go to one whose replay is less than REPLICA_MAX_LAG_MS behind the primary, else to the
    # primary (db.replicas). Each gets a pool of DB_POOL_* connections per worker, plus one monitor.
    database_replica_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    replica_max_lag_ms: int = Field(default=1_000, ge=1)
    # "transaction" when DATABASE_URL is a pooler that hands each transaction any server connection
    # (PgBouncer's pool_mode = transaction): no statement is then prepared by name, and only the
    # startup parameters such a pooler passes on are sent (db.engine.PoolMode). The live feed's LISTEN
    # and migrations need a session of their own: DATABASE_DIRECT_URL, the server itself.
    database_pool_mode: PoolMode = PoolMode.SESSION
    database_direct_url: str | None = None

    # Rows fetched per round trip while streaming an unfiltered GET /api/events/.
    stream_chunk_rows: int = Field(default=2_000, ge=1)
    # GraphQL page size ceiling: a larger `first`/`last` is an error, never a silent clamp.
    max_page_size: int = Field(default=500, ge=1)
    # GraphQL query-shape guards. Depth 10 admits events -> node -> actor -> events -> actor and
    # GraphiQL's introspection; the introspection query is ~163-183 tokens, so 1000 leaves room.
    graphql_max_depth: int = Field(default=10, ge=1)
    graphql_max_aliases: int = Field(default=20, ge=0)
    graphql_max_tokens: int = Field(default=1_000, ge=200)
    # The cost limit (graphql_schema.field_rules has the model): nodes a response may hold, each
    # object one and large text one per KiB its limit allows. 50,000 admits one full page of the
    # largest events (500 x (1 + 64 KiB data + 32 KiB message) = 49,000) and nothing twice that;
    # a dashboard page of 50 events with their actors costs ~5,000. A subscription pays its cost
    # for every event and every subscriber, so its limit is per delivered event and much lower.
    graphql_max_nodes: int = Field(default=50_000, ge=1)
    graphql_max_subscription_nodes: int = Field(default=500, ge=1)
    # Websocket connections per process (beyond it the handshake is refused) and per API key.
    graphql_max_websockets: int = Field(default=1_000, ge=1)
    graphql_max_websockets_per_key: int = Field(default=100, ge=1)
    # Run the hot operations from compiled plans (graphql_schema.plans); off, every operation goes
    # through graphql-core's executor. The answers are the same either way.
    graphql_compiled_plans: bool = True
    # Live subscriptions with the same document, variables and API key share one execution per
    # event (graphql_schema.websockets.shared_streams); off, each subscriber runs its own.
    graphql_shared_subscriptions: bool = True
    # Automatic persisted queries: the documents clients register by hash are kept per process, the
    # least recently used dropped first beyond this many bytes of text (8 MiB: ~4,000 documents of
    # 2 KiB). 0 turns APQ off: a request by hash then gets PersistedQueryNotSupported.
    graphql_apq_cache_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    # A JSON manifest of trusted documents (README, "Persisted and trusted documents"): when set,
    # only those documents run. Every hash is checked here, so a wrong one stops start-up.
    graphql_trusted_documents: Path | None = None
    # Accept the permessage-deflate extension a websocket client offers (browsers always do). Off
    # by default, as in Node's `ws`, which most GraphQL websocket servers run on: every socket keeps
    # deflate contexts of its own (~50 KB: 2,000 subscribers cost 100 MB more RSS) and compresses
    # every event on its own, which was a quarter of the service's CPU per delivered event and took
    # the lag p99 at 2,000 subscribers from ~140-200 ms to ~420 ms (README, "Subscriptions").
    websocket_compression: bool = False
    # Events a live subscriber may fall behind by before it catches up from the table instead.
    subscription_queue_size: int = Field(default=1_000, ge=1)
    # Most events one recordEvents call (or one batch request) may carry; all-or-nothing.
    max_batch_events: int = Field(default=1_000, ge=1)
    # Group commit (db.group_commit): concurrent single-event writes share one INSERT and COMMIT.
    # A batch holds at most this many events and waits at most this long for companions (only
    # when other writes are in flight; a lone write goes at once). 1 or 0 turns batching off.
    # Measured (2 workers, wrk, embedded PostgreSQL 16): the insert costs ~66 µs a row at 16 rows,
    # ~33 µs at 256 and no less beyond, so 256 bounds a batch's statement at ~9 ms without giving
    # up throughput. Server+database CPU per write at 16 clients: 1.05 ms unbatched, 0.61 ms with
    # no window, 0.50 ms with 2 ms, 0.53 ms with 5 ms (5 ms only adds latency); at 64 clients
    # every window gave ~0.43 ms. A lone client's p50 stayed ~1.1 ms either way.
    group_commit_max_rows: int = Field(default=256, ge=1)
    group_commit_max_wait_ms: float = Field(default=2.0, ge=0)

    # How long `serve`/`migrate` wait for an external database that is not up yet.
    startup_wait_s: float = Field(default=30.0, ge=0)
    # In-flight requests get this long to finish after SIGTERM.
    graceful_shutdown_s: int = Field(default=20, ge=0)

    # Event size limits (db.validation.EventLimits); over a limit is a 400 naming the field.
    # The defaults are db.validation's: the rules and their limits are stated there once.
    max_component_length: int = Field(default=DEFAULT_EVENT_LIMITS.max_component_length, ge=1)
    max_environment_length: int = Field(default=DEFAULT_EVENT_LIMITS.max_environment_length, ge=1)
    max_email_length: int = Field(default=DEFAULT_EVENT_LIMITS.max_email_length, ge=6)
    max_message_length: int = Field(default=DEFAULT_EVENT_LIMITS.max_message_length, ge=1)
    max_data_bytes: int = Field(default=DEFAULT_EVENT_LIMITS.max_data_bytes, ge=2)
    max_data_depth: int = Field(default=DEFAULT_EVENT_LIMITS.max_data_depth, ge=1)
    # Larger request bodies are refused with 413 before they are read into memory.
    max_request_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # A request's header fields together; over it is a 431. 16 KiB is the bound of uvicorn's h11
    # parser (h11's default, request line included) and of Node.js, so the service answers alike
    # under either uvicorn parser; httptools has none. Browsers and API clients stay far below it
    # (a cookie is at most 4 KiB; our own headers are short). Raise it for large cookie jars.
    max_request_header_bytes: int = Field(default=16 * 1024, ge=4096)
    # Browser origins allowed to call the API (REST and GraphQL), e.g. ["https://app.example.com"].
    # None by default: same-origin pages (GraphiQL, the docs) need no CORS.
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # A repeated Idempotency-Key returns the first answer for this long; `prune` forgets older keys.
    idempotency_window_hours: float = Field(default=24.0, gt=0)
    # The time one partition of `events` holds (db.partitions): month, week or day. Prune drops
    # whole partitions, so a shorter one frees space sooner, at a few more (empty) tables.
    event_partition_interval: PartitionInterval = PartitionInterval.MONTH

    # API keys: off by default so legacy clients keep working; compose.yaml turns it on.
    auth_required: bool = False
    # A revocation takes effect within this many seconds, for requests and live subscriptions alike
    # (a verified or refused key is remembered for half of it; live feeds re-check at that pace).
    api_key_cache_s: float = Field(default=5.0, ge=0)

    # GET /metrics then requires `Authorization: Bearer <token>`; unset, it is open (never API keys).
    metrics_token: SecretStr | None = None
    # OpenTelemetry traces go to this OTLP/HTTP collector (e.g. http://localhost:4318); off when unset.
    otel_exporter_otlp_endpoint: str | None = None

    log_level: str = "INFO"

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _transaction_mode_has_a_direct_url(self) -> "Settings":
        if self.database_pool_mode is PoolMode.TRANSACTION and not (
            self.external_database_url and self.database_direct_url
        ):
            raise ValueError(
                "DATABASE_POOL_MODE=transaction needs DATABASE_URL (the pooler) and DATABASE_DIRECT_URL "
                "(the server itself, for LISTEN and migrations)"
            )
        return self

    @field_validator("cors_allowed_origins", "database_replica_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # CORS_ALLOWED_ORIGINS=https://a.example,https://b.example
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _replica_schemes(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
                raise ValueError("each must start with postgresql:// or postgresql+asyncpg://")
        return [as_libpq_url(url) for url in value]

    @field_validator("graphql_trusted_documents")
    @classmethod
    def _trustworthy_manifest(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_manifest(value)  # a ManifestError (ValueError) names the file and the problem
        return value

    @field_validator(
        "graphql_trusted_documents", "metrics_token", "otel_exporter_otlp_endpoint", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # Plain properties, not cached: model_copy(update=...) would carry a stale cached value over.
    @property
    def event_limits(self) -> EventLimits:
        """The event size limits, as the validation rules take them (same names as these settings)."""
        return EventLimits(**{limit.name: getattr(self, limit.name) for limit in fields(EventLimits)})

    @property
    def idempotency_window(self) -> timedelta:
        """How long an idempotency key holds, as both doors scope their keys with it."""
        return timedelta(hours=self.idempotency_window_hours)

    @property
    def external_database_url(self) -> str | None:
        """The configured server as a plain libpq URL, or None when the embedded one is wanted."""
        if self.database_url:
            return as_libpq_url(self.database_url)
        if self.postgres_host:
            user = quote(self.postgres_user or "postgres", safe="")
            password = f":{quote(self.postgres_password, safe='')}" if self.postgres_password else ""
            database = quote(self.postgres_db or "postgres", safe="")
            return f"postgresql://{user}{password}@{self.postgres_host}:{self.postgres_port}/{database}"
        return None
