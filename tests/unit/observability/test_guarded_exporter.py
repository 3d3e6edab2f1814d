"""An OTLP collector that refuses spans costs one bounded try and one warning line, then
nothing for a while (issue 16's third trial: every command took 16 s and printed retries).
The real OTLP/HTTP exporter against a real HTTP server answering 503 (a retryable status)."""

from __future__ import annotations

import logging
import socket
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


def test_a_collector_nobody_listens_on_is_said_to_be_unreachable() -> None:
    # A port just closed: connections to it are refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    guarded = GuardedExporter(
        OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_SECONDS), endpoint
    )
    with capture_logs() as logs:
        assert guarded.export(_spans()) is SpanExportResult.FAILURE
    [warning] = logs
    assert warning["reason"] == (
        f"the collector was not reachable at 127.0.0.1:{port}: Connection refused"
    ), warning
    guarded.shutdown()


def test_a_collector_that_answers_but_refuses_is_said_not_to_accept(collector: str) -> None:
    guarded = GuardedExporter(
        OTLPSpanExporter(endpoint=collector, timeout=EXPORT_TIMEOUT_SECONDS), collector
    )
    with capture_logs() as logs:
        assert guarded.export(_spans()) is SpanExportResult.FAILURE
    assert logs[0]["reason"] == "the collector did not accept the spans"
    guarded.shutdown()
