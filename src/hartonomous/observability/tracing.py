"""OpenTelemetry traces, exported by OTLP only when configured (docs/operations.md, "Traces").

``configure_tracing`` turns them on when `[telemetry] otlp_endpoint` or the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: an SDK tracer
provider with a batching OTLP/HTTP exporter, and psycopg instrumented (every database call, from
SQLAlchemy engines and from the broker's and CDC's own sessions, is a span following the
database semantic conventions). ``instrument_app`` adds the FastAPI (HTTP server) spans.
Otherwise nothing is installed: ``tracer()`` is OpenTelemetry's no-op tracer, whose spans cost
a function call (benchmarks/tracing_overhead.py measures it on search).

The platform's own spans (``tracer()``) follow the messaging conventions: a CDC batch is a
``send`` of the CloudEvents it enqueues, each broker message's handling a ``process`` span
carrying the CloudEvent's id, type and source; ingestion has a span per file.

A database span's ``db.query.text`` is sanitised (``sanitise_query``): every string literal,
dollar-quoted body and number is replaced by ``?``, so a literal secret (``PASSWORD '...'``)
never reaches a span even when a statement inlines it; values travel as bound parameters,
which are not recorded.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracer, Tracer

from hartonomous import __version__
from hartonomous.config.sections import TelemetrySettings

# Imported before psycopg can be instrumented: it keeps psycopg's own `Connection.connect` for
# subclass connections, which the instrumentation would turn into plain ones.
from hartonomous.db import connection as _connection  # noqa: F401

__all__ = [
    "GuardedExporter",
    "configure_tracing",
    "instrument_app",
    "otlp_endpoint",
    "sanitise_query",
    "tracer",
    "use_tracer_provider",
]

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# The instrumentations emit the old conventions (`http.method`, `db.statement`) unless told
# otherwise: "http" and "database" select the current stable ones (`http.request.method`,
# `db.system.name`, `db.query.text`, ...). An operator's own choice (`http/dup`, say) is kept.
_SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
_STABLE_SIGNALS = ("http", "database")
_state: dict[str, Any] = {"tracer": NoOpTracer(), "provider": None}
# One pass over the statement: quoted identifiers and comments are kept as they are (a quote
# inside them opens no literal); string literals (with any E/B/X/N/U& prefix, '' and, after
# E, backslash escapes), dollar-quoted bodies and numbers become `?`.
_LEXEME = re.compile(
    r"""(?P<keep>"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/)"""
    r"""|(?P<literal>[Ee]'(?:[^'\\]|\\.|'')*'|(?:[BbXxNn]|[Uu]&)?'(?:[^']|'')*'"""
    r"""|\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$.*?\$(?P=tag)?\$)"""
    r"""|(?P<number>(?<![\w$.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w$]))""",
    re.DOTALL,
)


def sanitise_query(statement: str) -> str:
    """``statement`` with its literals (strings, dollar-quoted bodies, numbers) replaced by
    ``?``: what a span's ``db.query.text`` may hold (OpenTelemetry's database conventions)."""
    return _LEXEME.sub(lambda m: m.group("keep") or "?", statement)


_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
EXPORT_TIMEOUT_SECONDS = 2.0
"""How long one export (its retries included) may take unless `OTEL_EXPORTER_OTLP_*TIMEOUT`
says otherwise: a command's exit waits for its last batch at most this long."""
PAUSE_AFTER_FAILURE_SECONDS = 60.0
"""After a failed export, batches are dropped without a try for this long."""
_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http"
log = structlog.get_logger(__name__)


class GuardedExporter(SpanExporter):
    """An exporter that a collector out of reach cannot slow down or make noisy.

    ``inner`` exports as usual; after a failed export the batches of the next
    ``pause_seconds`` are dropped without a try (so a command ending, or a server's every
    batch, waits on no retries), and the failure is one warning (`trace_export_failed`, once
    per process) instead of the exporter's retry lines, which are silenced.
    """

    def __init__(
        self, inner: SpanExporter, endpoint: str, pause_seconds: float = PAUSE_AFTER_FAILURE_SECONDS
    ) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._pause = pause_seconds
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._warned = False
        # Its "Transient error … retrying in 1.8s" lines would repeat on every batch.
        logging.getLogger(_EXPORTER_LOGGER).setLevel(logging.CRITICAL)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if time.monotonic() < self._paused_until:
                return SpanExportResult.FAILURE
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - any exporter failure is one warning, not a crash
            result, reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            reason = "the collector did not accept the spans"
        if result is SpanExportResult.FAILURE:
            unreachable = _unreachable(self._endpoint)
            if unreachable is not None:
                reason = unreachable
            with self._lock:
                self._paused_until = time.monotonic() + self._pause
                warn, self._warned = not self._warned, True
            if warn:
                log.warning(
                    "trace_export_failed",
                    endpoint=self._endpoint,
                    reason=reason,
                    detail=f"spans are dropped for {self._pause:.0f} s after each failure; "
                    "check the OTLP endpoint (docs/operations.md, Traces)",
                )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _unreachable(endpoint: str) -> str | None:
    """Why nothing listens at ``endpoint``'s host and port (`the collector was not reachable:
    Connection refused`), or None when a TCP connection opens: the exporter reports both as
    a failed export, and an operator fixes them differently."""
    parsed = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=1.0):
            return None
    except OSError as exc:
        return f"the collector was not reachable at {parsed.hostname}:{port}: {exc.strerror or exc}"


def tracer() -> Tracer:
    """The platform's tracer: the configured provider's, or the no-op one."""
    tracer_now: Tracer = _state["tracer"]
    return tracer_now


def otlp_endpoint(settings: TelemetrySettings) -> str | None:
    """Where traces go: the setting, else the standard variables; ``None``: nowhere (off)."""
    if settings.otlp_endpoint:
        return settings.otlp_endpoint
    return next((os.environ[name] for name in _ENDPOINT_VARIABLES if os.environ.get(name)), None)


def configure_tracing(settings: TelemetrySettings) -> bool:
    """Install tracing when an endpoint is configured (once per process); returns whether on."""
    if _state["provider"] is not None:
        return True
    endpoint = otlp_endpoint(settings)
    if endpoint is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
    provider = TracerProvider(
        resource=Resource.create({"service.name": name, "service.version": __version__})
    )
    # The setting is the collector's base URL; the variables are read by the exporter itself
    # (with their own rules: a base URL gets /v1/traces appended, a traces URL is used as is).
    timeout = None if any(os.environ.get(v) for v in _TIMEOUT_VARIABLES) else EXPORT_TIMEOUT_SECONDS
    exporter = (
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=timeout)
        if settings.otlp_endpoint
        else OTLPSpanExporter(timeout=timeout)
    )
    provider.add_span_processor(
        BatchSpanProcessor(GuardedExporter(exporter, endpoint), export_timeout_millis=30_000)
    )
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    return True


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` (``None``: stop tracing), database calls included.

    ``configure_tracing`` calls it; tests call it with an in-memory exporter's provider.
    """
    _opt_in_stable_conventions()
    from opentelemetry.instrumentation import psycopg as psycopg_instrumentation
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    # Its cursor factories look the tracer class up in the module when a connection is made.
    psycopg_instrumentation.CursorTracer = _named_cursor_tracer()  # type: ignore[misc]
    instrumentor = PsycopgInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    _state["provider"] = provider
    if provider is None:
        _state["tracer"] = NoOpTracer()
        return
    _state["tracer"] = provider.get_tracer("hartonomous", __version__)
    instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)


def instrument_app(app: Any) -> None:
    """HTTP server spans for a FastAPI app, when tracing is on (nothing otherwise)."""
    provider = _state["provider"]
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
        server_request_hook=_split_server_address,
    )


def _split_server_address(span: Any, scope: dict[str, Any]) -> None:
    """``server.address`` is the host alone and the port goes in ``server.port`` (the HTTP
    conventions); the instrumentation copies the `Host` header (`127.0.0.1:18416`) whole."""
    if not span.is_recording():
        return
    address = (getattr(span, "attributes", None) or {}).get("server.address")
    if not isinstance(address, str):
        return
    host, colon, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")  # an IPv6 address
    if colon and port.isdigit() and (bracketed or ":" not in host):
        span.set_attribute("server.address", host.strip("[]"))
        span.set_attribute("server.port", int(port))


def _opt_in_stable_conventions() -> None:
    """Add "http" and "database" to ``OTEL_SEMCONV_STABILITY_OPT_IN`` (read once per process,
    when the first instrumentation starts), unless a mode of that signal is already chosen."""
    chosen = [m.strip() for m in os.environ.get(_SEMCONV_OPT_IN, "").split(",") if m.strip()]
    for signal in _STABLE_SIGNALS:
        if not any(m.split("/")[0] == signal for m in chosen):
            chosen.append(signal)
    os.environ[_SEMCONV_OPT_IN] = ",".join(chosen)


_TARGET = re.compile(
    r"^\s*(?:SELECT\b.*?\bFROM|INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([A-Za-z_][\w.]*)",
    re.IGNORECASE | re.DOTALL,
)
_SECOND_TABLE = re.compile(r"\b(?:FROM|JOIN)\b", re.IGNORECASE)


def _target_of(statement: str) -> str | None:
    """The one table ``statement`` reads or writes (`SELECT … FROM t`, `INSERT INTO t`,
    `UPDATE t`, `DELETE FROM t`), None when it names none or more than one (a join, a
    subquery): the conventions leave the target out rather than guess."""
    match = _TARGET.match(statement)
    if match is None or len(_SECOND_TABLE.findall(statement)) > 1:
        return None
    return match.group(1)


def _named_cursor_tracer() -> type[Any]:
    from opentelemetry.instrumentation import psycopg as psycopg_instrumentation

    # The instrumentation's own class, kept from before the first replacement: a subclass of
    # a replacement would name spans twice (`SELECT tenants` read back as an operation).
    base: type[Any] = _state.setdefault("cursor_tracer", psycopg_instrumentation.CursorTracer)

    class NamedCursorTracer(base):  # type: ignore[misc]
        """Names a database span `{operation} {target}` after the conventions (and sets them
        as ``db.operation.name`` and ``db.collection.name``): the operation
        upper-case (`SELECT`, `SHOW`, also for a statement written `select`), the table when
        the statement names exactly one (`SELECT tenants`, `INSERT atoms`), else the
        operation alone. Only when the statement starts with an operation: SQLAlchemy's pool
        pings with ``;``, which named 15 of 143 spans ``;``. Without an operation the
        instrumentation names the span after the database (the conventions' fallback:
        ``db.namespace``, else ``db.system.name``)."""

        def get_operation_name(self, cursor: Any, args: Any) -> str:
            name = str(super().get_operation_name(cursor, args))
            if not name.isalpha():
                return ""
            statement = args[0] if args and isinstance(args[0], str) else ""
            target = _target_of(statement)
            return f"{name.upper()} {target}" if target else name.upper()

        def traced_execution(
            self, cursor: Any, query_method: Any, *args: Any, **kwargs: Any
        ) -> Any:
            # A statement with no operation is the pool's liveness ping (SQLAlchemy's `;`
            # on every checkout): no span, or an idle server exports one per second.
            statement = args[0] if args and isinstance(args[0], str) else None
            if statement is not None and not statement.strip(" \t\n;"):
                return query_method(*args, **kwargs)
            return super().traced_execution(cursor, query_method, *args, **kwargs)

        def _populate_span(self, span: Any, cursor: Any, *args: Any) -> None:
            # The name's parts as the conventions' attributes (the instrumentation sets
            # neither): `db.operation.name` and, for one table, `db.collection.name`.
            super()._populate_span(span, cursor, *args)
            if not span.is_recording():
                return
            operation = str(super().get_operation_name(cursor, args))
            if not operation.isalpha():
                return
            span.set_attribute("db.operation.name", operation.upper())
            statement = args[0] if args and isinstance(args[0], str) else ""
            target = _target_of(statement)
            if target:
                span.set_attribute("db.collection.name", target)

        def get_statement(self, cursor: Any, args: Any) -> str:
            return sanitise_query(str(super().get_statement(cursor, args)))

    return NamedCursorTracer
