"""The per-request GraphQL context: every service resolvers use (typed), the key, fresh DataLoaders."""

from dataclasses import dataclass
from typing import Any

from fastapi.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.fastapi import BaseContext

from api.credentials import key_from_headers
from api.settings import Settings
from db.api_keys import KeyVerifier
from db.engine import Database
from db.group_commit import GroupCommitter
from db.live_feed.hub import EventHub
from db.repository import EventKey
from db.writes import KeyScope
from graphql_schema.loaders import Loaders


@dataclass(frozen=True, slots=True)
class PlannedOutcome:
    """A root mutation field's result or error, as a compiled plan got it."""

    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class Context(BaseContext):
    """What every resolver sees as `info.context`.

    `loaders` cache for the life of one request. A websocket keeps one context for the whole
    connection, so a subscription should call `renew_loaders()` before resolving each event.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        key_verifier: KeyVerifier,
        event_writer: GroupCommitter,
        event_hub: EventHub,
    ) -> None:
        super().__init__()
        self.database = database
        self.settings = settings
        self.key_verifier = key_verifier
        self.event_writer = event_writer
        self.event_hub = event_hub
        self.loaders = Loaders(database)
        # Set by the policy (graphql_schema.policy) when a key was required and presented.
        self.api_key_id = ""
        # What a compiled plan already did for a root mutation field, by response key, when the
        # operation is then executed the ordinary way (graphql_schema.plans): never write twice.
        self.planned_outcomes: dict[str, PlannedOutcome] = {}
        # A live subscription's position: where a subscription resumes when the server restarts it
        # (graphql_schema.websockets.shared_streams), and the key of the event it last yielded.
        self.resume_after: EventKey | None = None
        self.last_event_key: EventKey | None = None

    def presented_key(self) -> str | None:
        """The key of this request: HTTP headers, or a websocket's `connection_init` payload.

        The payload uses the header names: {"Authorization": "Bearer <key>"} or {"X-API-Key": "<key>"}.
        """
        request = self.request
        if isinstance(request, WebSocket):
            params = self.connection_params if isinstance(self.connection_params, dict) else {}
            return key_from_headers({str(k).lower(): v for k, v in params.items() if isinstance(v, str)})
        return key_from_headers(request.headers) if request is not None else None

    def key_scope(self) -> KeyScope:
        """Whose idempotency keys this request's are, and for how long they hold."""
        return KeyScope(owner=self.api_key_id, window=self.settings.idempotency_window)

    def planned_outcome(self, response_key: str | int) -> "PlannedOutcome | None":
        """The outcome a plan recorded for this root field, taken (each is used once)."""
        return self.planned_outcomes.pop(str(response_key), None)

    def renew_loaders(self) -> None:
        """Drop every cached load (for long-lived contexts such as subscriptions)."""
        # Renewed for each live event, which the primary just announced: read where it surely is.
        self.loaders = Loaders(self.database, replica_reads=False)


async def get_context(connection: HTTPConnection) -> Context:
    """FastAPI dependency: a fresh context per HTTP request (or per websocket connection)."""
    # The one place the lifespan's services are looked up; resolvers get them typed from the context.
    state = connection.app.state
    return Context(
        database=state.database,
        settings=state.settings,
        key_verifier=state.key_verifier,
        event_writer=state.event_writer,
        event_hub=state.event_hub,
    )
