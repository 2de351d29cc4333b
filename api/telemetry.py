"""OpenTelemetry traces, only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Each HTTP request (and websocket) gets a server span named after its route template, and each
asyncpg query a child span, exported over OTLP/HTTP. Off, nothing of OpenTelemetry is imported:
the packages are the optional `otel` extra (`pip install 'activity-service[otel]'`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from fastapi import FastAPI

from api.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

log = logging.getLogger(__name__)

# Probes and scrapes arrive every few seconds and would drown the traces that matter.
UNTRACED_PATHS = "/metrics,/api/health,/api/ready"


class TracingUnavailable(RuntimeError):
    """Traces were asked for (OTEL_EXPORTER_OTLP_ENDPOINT) but the `otel` extra is not installed."""


def install_tracing(app: FastAPI, settings: Settings) -> None:
    """Trace `app` to the OTLP collector at OTEL_EXPORTER_OTLP_ENDPOINT; nothing when it is unset."""
    endpoint = settings.otel_exporter_otlp_endpoint
    app.state.tracer_provider = None
    if endpoint is None:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise TracingUnavailable(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'activity-service[otel]'"
        ) from error
    # As the variable means for every OpenTelemetry SDK: the base URL, traces under /v1/traces.
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    # The lifespan shuts it down, sending what is buffered: uvicorn's workers never run atexit.
    app.state.tracer_provider = instrument(app, BatchSpanProcessor(exporter))
    log.info("traces: exported to %s (OTLP/HTTP)", endpoint)


def instrument(app: FastAPI, span_processor: SpanProcessor) -> TracerProvider:
    """Trace `app`'s requests and this process's asyncpg queries, handing the spans to `span_processor`.

    asyncpg is instrumented for the whole process (its classes are patched), once: a second app in
    the same process adds only its own request spans.
    """
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    # OTEL_SERVICE_NAME wins, as it does in every OpenTelemetry SDK.
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "activity-service")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(span_processor)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED_PATHS,
        exclude_spans=["receive", "send"],  # one span per ASGI message is noise, not insight
    )
    asyncpg = AsyncPGInstrumentor()
    if not asyncpg.is_instrumented_by_opentelemetry:
        asyncpg.instrument(tracer_provider=provider)
    return provider


def uninstrument(app: FastAPI) -> None:
    """Undo `instrument` (for tests: later apps in the process run untraced)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.uninstrument_app(app)
    AsyncPGInstrumentor().uninstrument()
