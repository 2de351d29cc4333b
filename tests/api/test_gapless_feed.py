"""A reader following cursors through the service misses nothing, whatever the writers do.

The issue's reproduction, through the service's own writers: two worker processes, clients posting
batches and single events concurrently (their group commits and batch statements race to commit),
and a GraphQL reader that keeps asking for `events(after: endCursor, orderBy: OLDEST_FIRST)`. It
used to miss about 15% of the acknowledged events; it must end with each of them exactly once.
"""

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support import running_service, service_env, valid_event

pytestmark = pytest.mark.slow

FOLLOW = """query($component: String!, $after: String) {
  events(first: 500, after: $after, orderBy: OLDEST_FIRST, filter: {component: $component}) {
    nodes { id } pageInfo { endCursor }
  }
}"""
ROUNDS = 3
ROUND_S = 2.0


@pytest.fixture(scope="module")
def two_workers(database_url: str) -> Iterator[str]:
    with running_service(service_env(DATABASE_URL=database_url), "--workers", "2") as (base_url, _process):
        yield base_url


async def _follow_round(base_url: str) -> tuple[list[str], list[str]]:
    component = f"follow-{uuid.uuid4().hex[:8]}"
    acknowledged: list[str] = []
    writing = True

    async def post_batches(http: httpx.AsyncClient) -> None:
        while writing:
            batch = [valid_event(component=component, message=f"b{i}") for i in range(150)]
            response = await http.post("/api/events/batch", json=batch)
            assert response.status_code == 201, response.text
            acknowledged.extend(event["id"] for event in response.json()["events"])

    async def post_singles(http: httpx.AsyncClient) -> None:
        while writing:
            response = await http.post("/api/events/", json=valid_event(component=component))
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["id"])

    async def follow(http: httpx.AsyncClient, done: asyncio.Event) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            finished = done.is_set()  # before the page: once writers are done, nothing more commits
            variables = {"component": component, "after": cursor}
            response = await http.post("/graphql", json={"query": FOLLOW, "variables": variables})
            page = response.json()["data"]["events"]
            seen.extend(node["id"] for node in page["nodes"])
            cursor = page["pageInfo"]["endCursor"] or cursor
            if not page["nodes"]:
                if finished:
                    return seen
                await asyncio.sleep(0.01)

    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        done = asyncio.Event()
        reader = asyncio.ensure_future(follow(http, done))
        writers = [asyncio.ensure_future(post_batches(http)) for _ in range(3)]
        writers += [asyncio.ensure_future(post_singles(http)) for _ in range(6)]
        await asyncio.sleep(ROUND_S)
        writing = False
        await asyncio.gather(*writers)
        done.set()
        seen = await asyncio.wait_for(reader, 60)
    return acknowledged, seen


async def test_a_cursor_following_reader_sees_every_acknowledged_event_exactly_once(two_workers: str) -> None:
    for round_ in range(ROUNDS):
        acknowledged, seen = await _follow_round(two_workers)
        assert len(acknowledged) > 300, f"round {round_}: too few writes to race"
        assert len(seen) == len(set(seen)), f"round {round_}: an event was read twice"
        missed = set(acknowledged) - set(seen)
        assert not missed, f"round {round_}: missed {len(missed)} of {len(acknowledged)} acknowledged events"
        assert set(seen) == set(acknowledged)
