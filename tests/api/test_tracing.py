"""OpenTelemetry traces: a span per request and per asyncpg query, only when asked for."""

import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api import telemetry
from api.settings import Settings
from tests.support import ROOT, app_sharing_services, valid_event


@pytest.fixture
async def traced(
    app: FastAPI, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    """A client on an app whose spans (and every asyncpg query's) go to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    traced_app = app_sharing_services(app, settings)
    telemetry.instrument(traced_app, SimpleSpanProcessor(exporter))
    try:
        transport = httpx.ASGITransport(app=traced_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, exporter
    finally:
        telemetry.uninstrument(traced_app)


def _by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


async def test_a_request_span_holds_a_span_for_its_query(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter],
) -> None:
    http, exporter = traced
    created = (await http.post("/api/events/", json=valid_event())).json()
    exporter.clear()

    assert (await http.get(f"/api/events/{created['id']}")).status_code == 200

    spans = exporter.get_finished_spans()
    [request] = _by_kind(spans, SpanKind.SERVER)
    assert request.name == "GET /api/events/{event_id}"  # the route template, not the id
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/events/{event_id}"
    queries = _by_kind(spans, SpanKind.CLIENT)
    assert queries, [span.name for span in spans]
    for query in queries:
        assert query.attributes is not None
        assert query.attributes["db.system"] == "postgresql"
        assert query.context.trace_id == request.context.trace_id
        assert query.parent is not None and query.parent.span_id == request.context.span_id


async def test_probes_and_scrapes_are_not_traced(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter],
) -> None:
    http, exporter = traced
    for path in ("/api/health", "/api/ready", "/metrics"):
        assert (await http.get(path)).status_code == 200
    assert _by_kind(exporter.get_finished_spans(), SpanKind.SERVER) == []


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    finally:
        server.shutdown()
        server.server_close()


async def test_the_endpoint_setting_exports_spans_over_otlp_http(
    app: FastAPI, settings: Settings, collector: tuple[str, list[tuple[str, str, bytes]]]
) -> None:
    endpoint, received = collector
    traced_app = app_sharing_services(
        app, settings.model_copy(update={"otel_exporter_otlp_endpoint": endpoint})
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=traced_app), base_url="http://t"
        ) as http:
            assert (await http.get(f"/api/events/{uuid.uuid4()}")).status_code == 404
        traced_app.state.tracer_provider.shutdown()  # what the lifespan does on the way out
    finally:
        telemetry.uninstrument(traced_app)

    assert received, "nothing was exported"
    names = set()
    for path, content_type, body in received:
        assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
        export = ExportTraceServiceRequest.FromString(body)
        names |= {
            span.name
            for spans in export.resource_spans
            for scope in spans.scope_spans
            for span in scope.spans
        }
        services = {
            attribute.value.string_value
            for spans in export.resource_spans
            for attribute in spans.resource.attributes
            if attribute.key == "service.name"
        }
        assert services == {"activity-service"}
    assert "GET /api/events/{event_id}" in names


@pytest.mark.slow  # starts a Python process (the full run's job)
def test_without_the_endpoint_no_tracing_code_is_loaded() -> None:
    # FastAPI itself imports the OpenTelemetry API; the SDK, exporter and instrumentations stay out.
    probe = (
        "import sys; from api.app import create_app; from api.settings import Settings; "
        "app = create_app(Settings(_env_file=None)); "
        "assert app.state.tracer_provider is None; "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.instrumentation', 'opentelemetry.exporter'))))"
    )
    env = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
