"""GET /metrics: Prometheus text from every worker, counting what real requests did."""

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.settings import Settings
from db.engine import Database
from db.filters import EventFilter
from tests.graphql_schema.support import graphql, graphql_data
from tests.graphql_schema.test_cost_limit import NESTED, too_complex
from tests.support import app_sharing_services, running_service, service_env, valid_event

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

METRIC_LABELS = {
    "activity_http_requests": {"method", "route", "status"},
    "activity_http_request_duration_seconds": {"method", "route"},
    "activity_events_recorded": {"door"},
    "activity_group_commit_batch_events": set(),
    "activity_group_commit_wait_seconds": set(),
    "activity_db_pool_connections_in_use": set(),
    "activity_db_pool_connections_open": set(),
    "activity_live_subscribers": set(),
    "activity_live_feed_lag_seconds": set(),
    "activity_graphql_cost_limit_refusals": set(),
}


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels (histogram buckets keep their `le`)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series that has not been written yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_metrics_name_every_measure_with_its_labels(client: httpx.AsyncClient) -> None:
    await client.get("/api/health")
    await client.post("/api/events/", json=valid_event())
    response = await client.get("/metrics")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name, labels in METRIC_LABELS.items():
        assert name in families, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)


async def test_requests_are_counted_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get(f"/api/events/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/events/not-a-uuid")).status_code == 400
    after = await scrape(client)

    route = "/api/events/{event_id}"
    counted = {
        status: value(after, "activity_http_requests_total", method="GET", route=route, status=status)
        - value(before, "activity_http_requests_total", method="GET", route=route, status=status)
        for status in ("404", "400")
    }
    assert counted == {"404": 3, "400": 1}
    timed = value(after, "activity_http_request_duration_seconds_count", method="GET", route=route) - value(
        before, "activity_http_request_duration_seconds_count", method="GET", route=route
    )
    assert timed == 4
    assert value(
        after, "activity_http_request_duration_seconds_bucket", method="GET", route=route, le="+Inf"
    ) == value(after, "activity_http_request_duration_seconds_count", method="GET", route=route)
    # No series is named after a raw path: ids never become labels.
    assert not [labels for _, labels in after if any("not-a-uuid" in text for _, text in labels)]


async def test_paths_no_route_serves_share_one_label_and_odd_methods_another(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    for _ in range(2):
        assert (await client.get(f"/no/such/{uuid.uuid4()}")).status_code == 404
    assert (await client.request("BREW", "/api/health")).status_code == 405
    after = await scrape(client)

    def moved(**labels: str) -> float:
        return value(after, "activity_http_requests_total", **labels) - value(
            before, "activity_http_requests_total", **labels
        )

    assert moved(method="GET", route="<unmatched>", status="404") == 2
    assert moved(method="other", route="/api/health", status="405") == 1


async def test_a_request_refused_before_routing_is_labelled_with_its_route(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient
) -> None:
    limited = app_sharing_services(app, settings.model_copy(update={"max_request_body_bytes": 1024}))
    labels = {"method": "POST", "route": "/api/events/batch", "status": "413"}
    before = value(await scrape(client), "activity_http_requests_total", **labels)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://t") as http:
        response = await http.post("/api/events/batch", content=b"[" + b" " * 2048 + b"]")
    assert response.status_code == 413
    assert value(await scrape(client), "activity_http_requests_total", **labels) - before == 1


async def test_events_are_counted_by_the_door_they_came_through(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    assert (await client.post("/api/events/", json=valid_event())).status_code == 201
    batch = [valid_event(message=f"batch {index}") for index in range(3)]
    assert (await client.post("/api/events/batch", json=batch)).status_code == 201
    keyed = {"Idempotency-Key": f"metrics-{uuid.uuid4()}"}
    for expected in (201, 200):  # the retry replays the first answer: nothing new is recorded
        assert (await client.post("/api/events/", json=valid_event(), headers=keyed)).status_code == expected
    await graphql_data(
        client,
        "mutation($inputs: [RecordEventInput!]!) { recordEvents(inputs: $inputs) { id } }",
        {"inputs": [{**valid_event(), "data": {}} for _ in range(2)]},
    )
    after = await scrape(client)

    def recorded(door: str) -> float:
        return value(after, "activity_events_recorded_total", door=door) - value(
            before, "activity_events_recorded_total", door=door
        )

    assert (recorded("rest"), recorded("graphql")) == (5, 2)


async def test_group_commit_batches_count_every_single_event_write(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    answers = await asyncio.gather(*(client.post("/api/events/", json=valid_event()) for _ in range(8)))
    assert [answer.status_code for answer in answers] == [201] * 8
    after = await scrape(client)

    def moved(name: str) -> float:
        return value(after, name) - value(before, name)

    assert moved("activity_group_commit_batch_events_sum") == 8
    assert 1 <= moved("activity_group_commit_batch_events_count") <= 8
    batches = moved("activity_group_commit_batch_events_count")
    assert moved("activity_group_commit_wait_seconds_count") == batches
    assert 0 <= moved("activity_group_commit_wait_seconds_sum") < 5


async def test_pool_gauges_show_connections_lent_out(client: httpx.AsyncClient, database: Database) -> None:
    idle = await scrape(client)
    async with database.transaction(), database.transaction():
        busy = await scrape(client)
    in_use = "activity_db_pool_connections_in_use"
    assert value(busy, in_use) - value(idle, in_use) == 2
    assert value(busy, "activity_db_pool_connections_open") >= value(busy, in_use)
    assert value(await scrape(client), in_use) == value(idle, in_use)


async def test_live_subscribers_and_feed_lag_are_measured(app: FastAPI, client: httpx.AsyncClient) -> None:
    component = f"metrics-{uuid.uuid4().hex[:8]}"
    before = await scrape(client)
    async with app.state.event_hub.subscribe(EventFilter(component=component)) as events:
        during = await scrape(client)
        assert (await client.post("/api/events/", json=valid_event(component=component))).status_code == 201
        await asyncio.wait_for(anext(events), 10)
    after = await scrape(client)

    assert value(during, "activity_live_subscribers") - value(before, "activity_live_subscribers") == 1
    assert value(after, "activity_live_subscribers") == value(before, "activity_live_subscribers")
    lag = "activity_live_feed_lag_seconds"
    assert value(after, f"{lag}_count") > value(before, f"{lag}_count")
    assert 0 <= value(after, f"{lag}_sum") - value(before, f"{lag}_sum") < 10


async def test_cost_limit_refusals_are_counted(client: httpx.AsyncClient) -> None:
    name = "activity_graphql_cost_limit_refusals_total"
    before = value(await scrape(client), name)
    too_complex(await graphql(client, NESTED))
    assert value(await scrape(client), name) - before == 1


async def test_metrics_token_refuses_a_missing_or_wrong_token_and_accepts_the_right_one(
    app: FastAPI, settings: Settings
) -> None:
    guarded = app_sharing_services(
        app, settings.model_copy(update={"metrics_token": SecretStr("s3cret"), "auth_required": True})
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t") as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["content-type"] == "application/json"
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json() == {
                "message": "The metrics need a token: send Authorization: Bearer <METRICS_TOKEN>."
            }
        # Not an API key (AUTH_REQUIRED is on here): the token alone opens it.
        accepted = await http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert accepted.status_code == 200
    assert "activity_http_requests_total" in accepted.text


async def test_metrics_are_open_without_a_token_even_when_api_keys_are_required(
    app: FastAPI, settings: Settings
) -> None:
    guarded = app_sharing_services(app, settings.model_copy(update={"auth_required": True}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t") as http:
        assert (await http.get("/api/events/")).status_code == 401
        assert (await http.get("/metrics")).status_code == 200


# --- a real service with two workers: prometheus-client's multiprocess mode -------------------


def _scrape_live(base_url: str) -> Samples:
    # A new connection each time: any worker may answer.
    response = httpx.get(f"{base_url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def _worker_pids(supervisor: int) -> set[int]:
    """The supervisor's uvicorn workers (spawned: `python -c "from multiprocessing.spawn ..."`)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == supervisor and b"spawn_main" in command:
            pids.add(int(entry.name))
    return pids


def _wait_for(condition, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


HEALTH = {"method": "GET", "route": "/api/health", "status": "200"}


def _health_requests_by_worker(directory: Path, pids: set[int]) -> dict[int, float]:
    """Each worker's own count of GET /api/health, read from its file alone."""
    counts = dict.fromkeys(pids, 0.0)
    for pid in pids:
        path = directory / f"counter_{pid}.db"
        for family in MultiProcessCollector.merge([str(path)]) if path.exists() else ():
            for sample in family.samples:
                if sample.name == "activity_http_requests_total" and sample.labels == HEALTH:
                    counts[pid] += sample.value
    return counts


@pytest.mark.slow
def test_two_workers_add_up_in_one_scrape_and_a_dead_workers_gauges_go(
    database_url: str, tmp_path: Path
) -> None:
    env = service_env(
        DATABASE_URL=database_url,
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="1",  # each worker's pool holds exactly one connection
        TMPDIR=str(tmp_path),  # where serve makes its private PROMETHEUS_MULTIPROC_DIR
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with running_service(env, "--workers", "2") as (base_url, process):
        [metrics_directory] = tmp_path.glob("activity-service-metrics-*")
        workers = _worker_pids(process.pid)
        assert len(workers) == 2
        # Livesum gauges: one connection per worker, both workers' files added up.
        _wait_for(lambda: value(_scrape_live(base_url), "activity_db_pool_connections_open") == 2)

        before = value(_scrape_live(base_url), "activity_http_requests_total", **HEALTH)
        served_before = _health_requests_by_worker(metrics_directory, workers)
        sent = 0
        # New connections until each worker has served some (the kernel picks who accepts).
        while sent < 20 or not all(_health_requests_by_worker(metrics_directory, workers).values()):
            assert sent < 1000, "one worker took every connection"
            response = httpx.get(f"{base_url}/api/health", headers={"Connection": "close"}, timeout=10)
            assert response.status_code == 200
            sent += 1
        # A request is counted once its answer has gone out: the last may still be on its way.
        _wait_for(
            lambda: (
                sum(_health_requests_by_worker(metrics_directory, workers).values())
                - sum(served_before.values())
                == sent
            )
        )
        # Whichever worker answers, the scrape holds both workers' counts.
        for _ in range(4):
            assert value(_scrape_live(base_url), "activity_http_requests_total", **HEALTH) - before == sent

        # A crashed worker is replaced; its gauges must not be added to the live ones for ever.
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: len(_worker_pids(process.pid) - workers) == 1)
        _wait_for(lambda: not (metrics_directory / f"gauge_livesum_{killed}.db").exists())
        _wait_for(lambda: value(_scrape_live(base_url), "activity_db_pool_connections_open") == 2)
        # Its counts stay: what it served was served.
        assert value(_scrape_live(base_url), "activity_http_requests_total", **HEALTH) - before == sent
    assert not metrics_directory.exists(), "serve removes the directory it made"
