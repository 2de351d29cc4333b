"""What the load generator sends: event bodies with the seed's value distribution, and the queries."""

import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from tests.benchmarks._database import COMPONENTS, DISTINCT_EMAILS, EMAIL_DOMAINS, ENVIRONMENTS
from tests.benchmarks._wrk import Request

EVENT_SELECTION = "id component environment email message data createdAt"
EVENTS_QUERY = (
    "query Events($component: String!, $email: String!) { "
    "events(filter: {component: $component, email: $email}, first: 50) "
    f"{{ nodes {{ {EVENT_SELECTION} }} }} }}"
)
RECORD_EVENT = (
    f"mutation Record($input: RecordEventInput!) {{ recordEvent(input: $input) {{ {EVENT_SELECTION} }} }}"
)
_WORDS = (
    "order", "failed", "payment", "declined", "user", "logged", "in", "cache", "miss", "timeout",
    "retry", "upstream", "stock", "low", "session", "expired", "invoice", "sent", "webhook", "ok",
)  # fmt: skip


def random_event(rng: random.Random) -> dict[str, Any]:
    """A body POST /api/events/ accepts, drawn like the seed: 20 components, 4 environments, ..."""
    user = int(DISTINCT_EMAILS * rng.random() ** 2)
    message = " ".join(rng.choice(_WORDS) for _ in range(12))[: rng.randint(20, 80)].strip()
    while len(message) < 20:
        message += " " + rng.choice(_WORDS)
    return {
        "component": rng.choice(COMPONENTS),
        "data": {"duration_ms": rng.randrange(2000), "status": rng.choice((200, 201, 400, 500))},
        "email": f"user{user}@{EMAIL_DOMAINS[user % len(EMAIL_DOMAINS)]}",
        "environment": rng.choices(ENVIRONMENTS, weights=(60, 25, 10, 5))[0],
        "message": message,
    }


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def post_requests(count: int = 1000) -> list[Request]:
    rng = random.Random(1)
    return [Request("POST", "/api/events/", _json(random_event(rng))) for _ in range(count)]


def batch_bodies(shape: str, events_per_request: int = 1000, count: int = 8) -> list[str]:
    """Bodies for POST /api/events/batch: a JSON array of events, or {"events": [...]}."""
    rng = random.Random(2)
    bodies = []
    for _ in range(count):
        events = [random_event(rng) for _ in range(events_per_request)]
        bodies.append(_json(events if shape == "array" else {"events": events}))
    return bodies


def filtered_get_requests(pairs: Sequence[tuple[str, str]]) -> list[Request]:
    return [
        Request("GET", "/api/events/?" + urlencode({"component": component, "email": email}))
        for component, email in pairs
    ]


def graphql_query_requests(query: str, pairs: Sequence[tuple[str, str]]) -> list[Request]:
    return [
        Request("POST", "/graphql", _json({"query": query, "variables": {"component": c, "email": e}}))
        for c, e in pairs
    ]


def record_event_requests(count: int = 1000) -> list[Request]:
    rng = random.Random(3)
    return [
        Request("POST", "/graphql", _json({"query": RECORD_EVENT, "variables": {"input": random_event(rng)}}))
        for _ in range(count)
    ]


def create_event_requests(mutation: str, count: int = 1000) -> list[Request]:
    """PostGraphile's createEvent with the same events as record_event_requests."""
    rng = random.Random(3)
    return [
        Request(
            "POST",
            "/graphql",
            _json({"query": mutation, "variables": {"input": {"event": random_event(rng)}}}),
        )
        for _ in range(count)
    ]
