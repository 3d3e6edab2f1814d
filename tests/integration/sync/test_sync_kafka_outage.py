"""A Kafka outage under a running CES consumer, on a real Kafka 4 broker and real PostgreSQL:
each unacknowledged batch counts for the circuit breaker at once (no retry that waits the
same timeout again), and the heartbeat beats through the wait."""

from __future__ import annotations

import threading
from pathlib import Path

from structlog.testing import capture_logs
from tests.integration.heartbeats import serving
from tests.integration.sync.conftest import Source, wait_until
from tests.integration.sync.test_sync_kafka import kafka_settings
from tests.kafka_server import KafkaServer

from hartonomous.cdc import CesConsumer
from hartonomous.messaging.broker import OutgoingMessage, ReceivedMessage
from hartonomous.messaging.kafka import KafkaTransport, KafkaUnavailableError, group_backlog

# Longer than any bounded wait here: reached only when a wait has no bound.
_HANG_SECONDS = 90


def test_a_kafka_outage_opens_the_ces_consumers_breaker_and_its_heartbeat_beats_through(
    source: Source, kafka_server: KafkaServer
) -> None:
    settings = kafka_settings(kafka_server.bootstrap_servers, connect_timeout_seconds=4.0)
    broker = settings.message_broker
    resilience = broker.resilience.model_copy(
        update={
            "receive_max_attempts": 5,
            "circuit_breaker_failure_threshold": 2,
            "circuit_breaker_break_duration_seconds": 1.0,
        }
    )
    settings = settings.model_copy(
        update={
            "message_broker": broker.model_copy(update={"resilience": resilience}),
            "health": settings.health.model_copy(
                update={"heartbeat_interval_seconds": 0.5, "heartbeat_stale_seconds": 1.0}
            ),
        }
    )
    source.tenant("acme", "alice")
    ces = CesConsumer(source.url, settings)
    try:
        ces.drain()  # the producer is connected
    finally:
        ces.close()
    servers = broker.kafka.bootstrap_servers
    kafka_server.stop(keep_data=True)
    try:
        source.ingest("acme", 1, principal_id="alice")
        running = CesConsumer(source.url, settings)
        with capture_logs() as logs, serving(running.run):
            # Within one wait for the acknowledgements the heartbeat says what it waits for.
            wait_until(
                lambda: any(
                    f"waiting for Kafka at {servers}" in (detail or "")
                    for (detail,) in source.conn.execute(
                        "SELECT detail FROM service_heartbeats "
                        "WHERE service_name = 'ces-consumer' AND state = 'failing'"
                    ).fetchall()
                ),
                "the waiting CES consumer beats 'failing: waiting for Kafka'",
            )
            wait_until(
                lambda: any(entry["event"] == "circuit_breaker_opened" for entry in logs),
                "the breaker opens",
            )
        failures = [e for e in logs if e["event"] == "cdc_step_failed"]
        retries = [e for e in logs if e["event"] == "transient_failure_retrying"]
        # Each turn waited connect_timeout_seconds once and counted for the breaker; none was
        # retried at once to wait the same again.
        assert len(failures) >= resilience.circuit_breaker_failure_threshold
        assert all("KafkaUnavailableError: Kafka " in e["error"] for e in failures[:2])
        assert all(servers in e["error"] for e in failures[:2])
        assert retries == []
    finally:
        kafka_server.restart()
    # Back: what waited is sent (the checkpoint never passed it).
    ces = CesConsumer(source.url, settings)
    try:
        assert ces.drain() > 0
    finally:
        ces.close()


def test_an_offset_commit_through_an_outage_fails_within_the_timeout_and_beats_meanwhile(
    kafka_server: KafkaServer, tmp_path: Path
) -> None:
    """The offsets of records settled while Kafka is away: the commit that must land (before
    `drained` reads the group's lag) raises `KafkaUnavailableError` naming the servers once
    `connect_timeout_seconds` passed, beating `watch` meanwhile (librdkafka's synchronous
    commit waited until the cluster came back: no breaker, a stale heartbeat). Once Kafka is
    back the next settlement commits them: nothing is handled twice."""
    settings = kafka_settings(kafka_server.bootstrap_servers, connect_timeout_seconds=3.0)
    broker = settings.message_broker
    servers = broker.kafka.bootstrap_servers
    producer = KafkaTransport(broker)
    producer.publish([OutgoingMessage({"n": n}, f"c{n}") for n in range(6)])
    producer.close()
    transport = KafkaTransport(broker)
    beats: list[str] = []
    transport.watch(beats.append)
    outcome: list[BaseException | None] = []
    try:
        transport.listen(None)
        received: list[ReceivedMessage] = []
        while len(received) < 6:
            received += transport.receive(None, 10)
        transport.complete(None, received)
        kafka_server.stop(keep_data=True)
        try:
            transport.settled(received)  # sent; the cluster is not there to answer

            def drain_check() -> None:
                try:
                    transport.drained()
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - the test reads it
                    outcome.append(exc)

            checking = threading.Thread(target=drain_check, daemon=True)
            checking.start()
            # A bound for a hang only (the old commit waited for Kafka's return).
            checking.join(_HANG_SECONDS)
            assert outcome, "the commit waited for Kafka beyond connect_timeout_seconds"
            [error] = outcome
            assert isinstance(error, KafkaUnavailableError), error
            assert servers in str(error)
            assert any(f"waiting for Kafka at {servers}" in beat for beat in beats), beats
        finally:
            kafka_server.restart()
        # Back: the offsets land with the next settlement; the group has nothing left.
        transport.watch(None)

        def drained() -> bool:
            try:
                return transport.drained()
            except KafkaUnavailableError:
                return False  # not back yet

        wait_until(drained, "the group's offsets to reach the end")
    finally:
        transport.close()
    assert sum(lag.lag for lag in group_backlog(broker).partitions) == 0
