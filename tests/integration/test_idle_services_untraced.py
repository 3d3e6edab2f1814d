"""An idle `up` exports no trace: besides the sync worker (tests/integration/sync/
test_idle_untraced.py), the inference worker's claim poll (one a second) and the CES
consumer's upkeep every 30 s (publication, slot, checkpoint, throughput pruning) make no span
(real PostgreSQL, the OpenTelemetry SDK's in-memory exporter)."""

from __future__ import annotations

import threading

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.api.conftest import spans

from hartonomous.cdc import CesConsumer
from hartonomous.cdc.consumer import StepResult, _Pacing
from hartonomous.config import Settings
from hartonomous.db.connection import open_engine
from hartonomous.inference.worker import InferenceWorker

__all__ = ["spans"]


def test_the_inference_workers_empty_claim_polls_make_no_span(
    database_url: str, spans: InMemorySpanExporter
) -> None:
    settings = Settings()
    engine = open_engine(database_url, settings.database)
    try:
        worker = InferenceWorker(database_url, engine, settings)
        spans.clear()
        assert [worker.run_once() for _ in range(3)] == [False, False, False]
        assert [s.name for s in spans.get_finished_spans()] == []
    finally:
        engine.dispose()


def test_the_ces_consumers_upkeep_makes_no_span(
    database_url: str, spans: InMemorySpanExporter
) -> None:
    consumer = CesConsumer(database_url, Settings())
    try:
        consumer.prepare()
        stopped = threading.Event()
        stopped.set()  # the pacing's wait returns at once
        pacing = _Pacing(consumer, stopped, since_prepare=1e9)
        spans.clear()
        pacing.rest(StepResult(0, 0, 0, "0/0", more=False))
        assert pacing.since_prepare == 0.0  # the upkeep ran
        assert [s.name for s in spans.get_finished_spans()] == []
    finally:
        consumer.close()
