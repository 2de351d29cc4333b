"""A database outage under a running service: quick 503s, liveness stays up, recovery without restart."""

import time

import httpx

from db.embedded import EmbeddedPostgres
from tests.support import running_service, service_env, start_postgres, stop_postgres, valid_event


def test_outage_answers_503_quickly_and_recovers_by_itself(own_server: EmbeddedPostgres) -> None:
    env = service_env(DATABASE_URL=own_server.url, DB_CONNECT_TIMEOUT_S="2", DB_ACQUIRE_TIMEOUT_S="2")
    with running_service(env) as (base_url, _process), httpx.Client(base_url=base_url) as http:
        assert http.post("/api/events/", json=valid_event()).status_code == 201

        stop_postgres(own_server)
        started = time.monotonic()
        during = http.post("/api/events/", json=valid_event(), timeout=30)
        detection_s = time.monotonic() - started
        assert during.status_code == 503
        assert during.headers["retry-after"].isdigit()
        assert "message" in during.json()
        assert detection_s < 5
        assert http.get("/api/events/", timeout=30).status_code == 503
        assert http.get("/api/health").status_code == 200
        assert http.get("/api/ready", timeout=30).status_code == 503

        start_postgres(own_server)
        started = time.monotonic()
        while http.get("/api/ready", timeout=30).status_code != 200:
            assert time.monotonic() - started < 30, "the service did not recover"
            time.sleep(0.1)
        after = http.post("/api/events/", json=valid_event(message="after the outage"))
        assert after.status_code == 201
        messages = [event["message"] for event in http.get("/api/events/").json()["events"]]
        assert messages == ["order failed", "after the outage"]
