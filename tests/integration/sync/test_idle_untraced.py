"""An idle sync worker exports no span: its receive polls (the low-water mark's pg_locks
reads and the straggler look-ups included), the sync pause read of every turn and its
heartbeats are untraced; the handling of a message still is a `process` span (real
PostgreSQL, the OpenTelemetry SDK's in-memory exporter)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.api.conftest import spans
from tests.integration.sync.conftest import Source, wait_until

from hartonomous.config import Settings
from hartonomous.config.sections import HealthSettings, MessageBrokerSettings
from hartonomous.db.connection import libpq_url
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.pause import set_pause
from hartonomous.sync.worker import SyncWorker

__all__ = ["spans"]

POLLS = 6


def _settings() -> Settings:
    return Settings(
        message_broker=MessageBrokerSettings(receive_wait_timeout_seconds=0.25),
        # A heartbeat row on every turn: pulses are part of what an idle worker does.
        health=HealthSettings(heartbeat_interval_seconds=0.01),
    )


class _Turns:
    """Counts the worker's idle turns (its waits and paused holds), stopping it after a
    number of them, and clears the exporter after the first (connecting is not idling)."""

    def __init__(self, worker: SyncWorker, spans: InMemorySpanExporter) -> None:
        self.stop = threading.Event()
        self.count = 0
        self.limit = POLLS
        self._spans = spans
        wait, hold = worker.transport.wait, worker.transport.hold

        def counted_wait(connection: Any, seconds: float, stop: threading.Event) -> bool:
            self._turn()
            return wait(connection, seconds, stop)

        def counted_hold(seconds: float, stop: threading.Event) -> None:
            self._turn()
            hold(seconds, stop)

        worker.transport.wait = counted_wait  # type: ignore[method-assign]
        worker.transport.hold = counted_hold  # type: ignore[method-assign]

    def _turn(self) -> None:
        self.count += 1
        if self.count == 1:
            self._spans.clear()
        if self.count > self.limit:
            self.stop.set()


def _run(source: Source, spans: InMemorySpanExporter) -> tuple[SyncWorker, _Turns]:
    settings = _settings()
    worker = SyncWorker(source.url, settings)
    turns = _Turns(worker, spans)
    thread = threading.Thread(
        target=worker.run, args=(turns.stop, Heartbeat(source.url, settings, "sync-worker"))
    )
    thread.start()
    wait_until(turns.stop.is_set, f"{POLLS} idle turns of the sync worker")
    thread.join()
    return worker, turns


def test_an_idle_or_paused_worker_exports_no_span_and_work_is_still_traced(
    source: Source, spans: InMemorySpanExporter
) -> None:
    _run(source, spans)
    assert [s.name for s in spans.get_finished_spans()] == []

    with psycopg.connect(libpq_url(source.url), autocommit=True) as conn:
        set_pause(conn, True, by="test", reason="idle spans")
    try:
        _run(source, spans)
        assert [s.name for s in spans.get_finished_spans()] == []
    finally:
        with psycopg.connect(libpq_url(source.url), autocommit=True) as conn:
            set_pause(conn, False, by="test")

    source.tenant("acme")
    assert source.capture() > 0
    spans.clear()
    worker = SyncWorker(source.url, _settings())
    try:
        assert worker.drain().completed > 0
    finally:
        worker.close()
    assert "process hartonomous_message_queue" in {s.name for s in spans.get_finished_spans()}
