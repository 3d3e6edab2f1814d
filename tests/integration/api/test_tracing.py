"""OpenTelemetry traces: HTTP server spans, database spans, a `send` span per CDC batch, a
`process` span per batch the sync worker handles, linked to each message's CloudEvent id, and a
span per ingested file."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Engine
from tests.integration.sync.conftest import drain

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.config.sections import TelemetrySettings
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.observability.tracing import otlp_endpoint, tracer, use_tracer_provider
from hartonomous.security.roles import Role
from hartonomous.services import Platform

from .conftest import IssueKey, bearer
from .pipeline import Source, pipeline

__all__ = ["pipeline"]


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def test_an_api_request_is_a_server_span_over_its_database_calls(
    spans: InMemorySpanExporter, platform: Platform, issue_key: IssueKey
) -> None:
    key = issue_key(role=Role.ADMIN)
    with TestClient(create_app(platform)) as api:
        assert api.get("/v1/tenants", headers=bearer(key)).status_code == 200
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    attributes = dict(server.attributes or {})
    assert attributes["http.route"] == "/v1/tenants"
    assert attributes.get("http.request.method", attributes.get("http.method")) == "GET"
    assert attributes.get("http.response.status_code", attributes.get("http.status_code")) == 200
    assert server.context is not None
    database = [
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.CLIENT and s.context.trace_id == server.context.trace_id
    ]
    assert database, "the request's SQL is traced inside it"
    assert all(
        dict(s.attributes or {}).get("db.system", dict(s.attributes or {}).get("db.system.name"))
        == "postgresql"
        for s in database
    )


# Keys of the old semantic conventions, replaced by the current stable ones.
DEPRECATED_KEYS = {
    "http.method",
    "http.status_code",
    "http.target",
    "http.url",
    "http.scheme",
    "http.host",
    "http.server_name",
    "http.flavor",
    "http.user_agent",
    "net.host.name",
    "net.host.port",
    "net.peer.name",
    "net.peer.port",
    "db.statement",
    "db.name",
    "db.operation",
    "db.sql.table",
    "messaging.operation",
    "messaging.destination",
}


def test_spans_follow_the_current_conventions_and_none_is_named_by_punctuation(
    spans: InMemorySpanExporter, platform: Platform, issue_key: IssueKey, pipeline: Source
) -> None:
    key = issue_key(role=Role.ADMIN)
    pipeline.tenant("acme")
    pipeline.ingest("acme", 1)
    with TestClient(create_app(platform), base_url="http://127.0.0.1:18416") as api:
        assert api.get("/v1/tenants", headers=bearer(key)).status_code == 200
    finished = spans.get_finished_spans()
    assert finished
    names = [s.name for s in finished]
    assert all(name.strip() and any(c.isalpha() for c in name) for name in names), names
    used = {k for s in finished for k in (s.attributes or {})}
    assert not used & DEPRECATED_KEYS, sorted(used & DEPRECATED_KEYS)
    [server] = [s for s in finished if s.kind == SpanKind.SERVER]
    # The host alone; the port in server.port.
    assert dict(server.attributes or {})["server.address"] == "127.0.0.1"
    assert dict(server.attributes or {})["server.port"] == 18416
    assert {
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "url.path",
        "server.address",
    } <= set(server.attributes or {})
    database = [s for s in finished if s.kind == SpanKind.CLIENT]
    assert database
    for span in database:
        attributes = dict(span.attributes or {})
        assert attributes["db.system.name"] == "postgresql"
    assert any("db.query.text" in (s.attributes or {}) for s in database)
    # SQLAlchemy's pool pings with ";" before handing a pooled connection out again: no
    # span (an idle server would export one per checkout).
    with platform.engine.connect() as connection:
        spans.clear()
        connection.exec_driver_sql(";")
        queries = [
            dict(s.attributes or {}).get("db.query.text") for s in spans.get_finished_spans()
        ]
        assert ";" not in queries, queries
    spans.clear()
    with platform.maintenance_engine.connect() as connection:
        for statement in (
            "select 1",
            "show server_version",
            "SELECT count(*) FROM tenants",
            "select t.tenant_id FROM tenants t JOIN principals p USING (tenant_id)",
        ):
            connection.exec_driver_sql(statement)
    # `{db.operation.name} {target}`, the operation upper-case, the target when it is one table.

    client = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT][-4:]
    assert [s.name for s in client] == ["SELECT", "SHOW", "SELECT tenants", "SELECT"]
    # The name's parts are attributes too (database conventions).
    assert [
        (
            dict(s.attributes or {}).get("db.operation.name"),
            dict(s.attributes or {}).get("db.collection.name"),
        )
        for s in client
    ] == [("SELECT", None), ("SHOW", None), ("SELECT", "tenants"), ("SELECT", None)]


def test_cdc_batches_and_each_message_handled_are_messaging_spans(
    spans: InMemorySpanExporter, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    pipeline.ingest("acme", 2)
    events = pipeline.capture()
    assert events > 0
    sends = [
        s for s in named(spans, "send hartonomous_message_queue") if s.kind == SpanKind.PRODUCER
    ]
    assert sum(dict(s.attributes or {})["messaging.batch.message_count"] for s in sends) == events
    for send in sends:
        attributes = dict(send.attributes or {})
        assert attributes["messaging.operation.name"] == "send", attributes
        assert attributes["messaging.operation.type"] == "send"
        assert attributes["messaging.batch.message_count"] > 0  # an empty poll sends nothing
    assert pipeline.capture() == 0
    assert len(named(spans, "send hartonomous_message_queue")) == len(sends)  # no span for it
    queued = {
        row[0]
        for row in pipeline.conn.execute("SELECT body->>'id' FROM broker_messages").fetchall()
    }
    drain(pipeline, Settings())
    processed = named(spans, "process hartonomous_message_queue")
    assert processed
    assert all(s.kind == SpanKind.CONSUMER for s in processed)
    for span in processed:
        attributes = dict(span.attributes or {})
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.operation.name"] == "process"
        assert attributes["messaging.batch.message_count"] == len(span.links)
    links = [dict(link.attributes or {}) for span in processed for link in span.links]
    # One link per message handled, named by its CloudEvent id, with its settlement.
    assert sorted(str(link["cloudevents.event_id"]) for link in links) == sorted(queued)
    for link in links:
        assert link["messaging.message.id"] == link["cloudevents.event_id"]
        assert str(link["cloudevents.event_type"]).startswith("io.hartonomous.cdc.")
        assert link["hartonomous.sync.decision"] in ("Complete", "Delay", "DeadLetter")


def test_each_ingested_file_is_a_span_and_a_failed_one_says_why(
    spans: InMemorySpanExporter, engine: Engine, pipeline: Source, tmp_path: Path
) -> None:
    pipeline.tenant("acme")
    good = tmp_path / "notes.txt"
    good.write_text("A paragraph about tracing.\n")
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7 not really")
    ingest_paths(engine, IngestRequest(tenant_id="acme"), [good, bad])
    files = {dict(s.attributes or {})["file.path"]: s for s in named(spans, "ingest file")}
    assert set(files) == {str(good), str(bad)}
    assert dict(files[str(good)].attributes or {})["file.size"] == good.stat().st_size
    assert files[str(good)].status.status_code == StatusCode.UNSET
    assert files[str(bad)].status.status_code == StatusCode.ERROR
    assert files[str(bad)].status.description


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert otlp_endpoint(TelemetrySettings()) is None
    assert not tracer().start_span("anything").is_recording()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert otlp_endpoint(TelemetrySettings()) == "http://collector:4318"
    assert otlp_endpoint(TelemetrySettings(otlp_endpoint="http://mine:4318")) == "http://mine:4318"


def test_a_connection_subclass_stays_itself_while_traced_and_after(database_url: str) -> None:
    """The broker pump's session is a psycopg.Connection subclass (messaging/savepoint.py);
    the psycopg instrumentation made it a plain Connection, during tracing and after it."""
    from hartonomous.config.sections import DatabaseSettings
    from hartonomous.db.connection import connect
    from hartonomous.messaging.savepoint import PumpConnection

    def made() -> type:
        with connect(
            database_url,
            DatabaseSettings(),
            application_name="t",
            connection_class=PumpConnection,
        ) as session:
            return type(session)

    provider = TracerProvider()
    use_tracer_provider(provider)
    try:
        assert made() is PumpConnection
    finally:
        use_tracer_provider(None)
    assert made() is PumpConnection


def test_an_uploaded_files_span_names_the_sent_name_not_the_spool_path(
    spans: InMemorySpanExporter, engine: Engine, pipeline: Source, tmp_path: Path
) -> None:
    pipeline.tenant("acme")
    spool = tmp_path / "upload-3f2a"  # where the API spools an upload
    spool.write_text("An uploaded paragraph.\n")
    request = IngestRequest(tenant_id="acme", source_names={spool: "reports/q3 notes.txt"})
    ingest_paths(engine, request, [spool])
    [span] = named(spans, "ingest file")
    attributes = dict(span.attributes or {})
    assert attributes["file.name"] == "q3 notes.txt"
    assert "file.path" not in attributes  # the spool path is no file of the sender's
