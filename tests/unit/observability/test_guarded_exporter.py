"""An OTLP collector that refuses spans costs one bounded try and one warning line, then
nothing for a while (issue 16's third trial: every command took 16 s and printed retries).
The real OTLP/HTTP exporter against a real HTTP server answering 503 (a retryable status)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from hartonomous.observability.tracing import EXPORT_TIMEOUT_SECONDS, GuardedExporter


class _Refusing(BaseHTTPRequestHandler):
    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Refusing.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("status"):
        pass
    return list(memory.get_finished_spans())


def test_a_refusing_collector_is_tried_once_per_pause_and_warned_about_once(
    collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    inner = OTLPSpanExporter(endpoint=collector, timeout=EXPORT_TIMEOUT_SECONDS)
    guarded = GuardedExporter(inner, collector)
    spans = _spans()
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        assert guarded.export(spans) is SpanExportResult.FAILURE
        tried = _Refusing.requests
        # Its retries stop at the 2 s bound: at most the first try and one retry (backoff 1 s).
        assert 1 <= tried <= 2, tried
        for _ in range(3):
            assert guarded.export(spans) is SpanExportResult.FAILURE
        assert _Refusing.requests == tried  # paused: not tried again
    assert [entry["event"] for entry in logs] == ["trace_export_failed"]
    assert logs[0]["endpoint"] == collector
    # The exporter's own "Transient error … retrying" lines are silenced.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []
    guarded.shutdown()
