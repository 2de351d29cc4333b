"""The services REST routes use, as typed FastAPI dependencies: the one place that reads `app.state`.

Routes say what they need in their signatures (`database: DatabaseDep`); tests and other apps
provide the services by setting them on the app's state, which the lifespan fills.

Every dependency of a route is `async def`, however trivial: FastAPI runs a plain `def` one in its
thread pool, a thread hop per request for an attribute lookup.
"""

from typing import Annotated

from fastapi import Depends, Request

from api.settings import Settings
from db.api_keys import KeyVerifier
from db.engine import Database
from db.group_commit import GroupCommitter


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _database(request: Request) -> Database:
    return request.app.state.database


async def _event_writer(request: Request) -> GroupCommitter:
    return request.app.state.event_writer


async def _key_verifier(request: Request) -> KeyVerifier:
    return request.app.state.key_verifier


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]
EventWriterDep = Annotated[GroupCommitter, Depends(_event_writer)]
KeyVerifierDep = Annotated[KeyVerifier, Depends(_key_verifier)]


def services(request: Request) -> tuple[Settings, Database, KeyVerifier, GroupCommitter]:
    """What a lean route (one that skips FastAPI's dependency solving) needs, read the same way."""
    state = request.app.state
    return state.settings, state.database, state.key_verifier, state.event_writer
