"""The per-request GraphQL context: the database, the settings and fresh DataLoaders."""

from datetime import timedelta

from fastapi.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from api.settings import Settings
from db.engine import Database
from db.writes import KeyScope
from graphql_schema.loaders import Loaders


class Context(BaseContext):
    """What every resolver sees as `info.context`.

    `loaders` cache for the life of one request. A websocket keeps one context for the whole
    connection, so a subscription should call `renew_loaders()` before resolving each event.
    """

    def __init__(self, database: Database, settings: Settings) -> None:
        super().__init__()
        self.database = database
        self.settings = settings
        self.loaders = Loaders(database)
        # Set by the permission check when a key was required and presented ("" otherwise).
        self.api_key_id = ""

    def key_scope(self) -> KeyScope:
        """Whose idempotency keys this request's are, and for how long they hold."""
        return KeyScope(owner=self.api_key_id, window=timedelta(hours=self.settings.idempotency_window_hours))

    def renew_loaders(self) -> None:
        """Drop every cached load (for long-lived contexts such as subscriptions)."""
        self.loaders = Loaders(self.database)


async def get_context(connection: HTTPConnection) -> Context:
    """FastAPI dependency: a fresh context per HTTP request (or per websocket connection)."""
    return Context(database=connection.app.state.database, settings=connection.app.state.settings)
