"""The event path over the Kafka transport, on a real Kafka 4 broker and real PostgreSQL: CDC
events produced by the CES consumer, consumed by the sync worker into graph and ledger."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tests.conftest import Cli
from tests.integration.sync.conftest import Source, drain, wait_until
from tests.integration.sync.test_sync_faults import worker_env
from tests.kafka_server import KafkaServer, _free_port

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.errors import UnavailableError
from hartonomous.messaging.kafka import CONTENT_TYPE
from hartonomous.messaging.resilience import BreakerState, CircuitBreakerOpenError
from hartonomous.sync.worker import SyncWorker


def kafka_settings(bootstrap: str, *, create: bool = True, **kafka: Any) -> Settings:
    """Settings whose transport is Kafka, on a topic (and consumer group) of their own."""
    topic = f"events-{uuid.uuid4().hex[:8]}"
    if create:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
            future.result(timeout=60)
    settings = Settings()
    broker = settings.message_broker.model_copy(
        update={
            "transport": "kafka",
            "kafka": settings.message_broker.kafka.model_copy(
                update={
                    "bootstrap_servers": bootstrap,
                    "topic": topic,
                    "consumer_group": f"{topic}-sync",
                    **kafka,
                }
            ),
        }
    )
    return settings.model_copy(update={"message_broker": broker})


def committed_lag(settings: Settings) -> int:
    """Records of the topic that the sync workers' group has not committed."""
    kafka = settings.message_broker.kafka
    probe = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": kafka.consumer_group}
    )
    try:
        partitions = [TopicPartition(kafka.topic, p) for p in range(3)]
        lag = 0
        for committed in probe.committed(partitions, timeout=30):
            _, high = probe.get_watermark_offsets(committed, timeout=30, cached=False)
            lag += high - max(committed.offset, 0)
        return lag
    finally:
        probe.close()


def test_changes_reach_graph_and_ledger_through_kafka_exactly_once(
    source: Source, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(kafka_bootstrap)
    ces = CesConsumer(source.url, settings)
    try:
        source.tenant("acme", "alice")
        source.ingest("acme", 3, principal_id="alice")
        events = ces.drain()
    finally:
        ces.close()
    # The CES consumer produced to Kafka, not to the in-database queue.
    assert events > 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    outcome = drain(source, settings)
    assert outcome.completed == events
    assert outcome.billed == 3
    assert outcome.dead_lettered == 0
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3
    labels = dict(
        source.conn.execute("SELECT label, count(*) FROM graph_nodes GROUP BY label").fetchall()
    )
    assert labels == {"Atom": 3, "Tenant": 1, "Principal": 1, "IngestionJob": 1}
    # Offsets were committed after the batches' transactions: a second worker of the group
    # finds nothing, and the effects were written once.
    assert committed_lag(settings) == 0
    assert drain(source, settings).received == 0
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3


def test_a_record_that_is_not_a_cloudevent_is_dead_lettered_and_its_partition_moves_on(
    source: Source, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(kafka_bootstrap)
    kafka = settings.message_broker.kafka
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    # Same key, so same partition: the valid event is behind the bad records.
    for value in (b"\x00\x01 not json", b'{"specversion": "1.0", "id": "no-type"}'):
        producer.produce(kafka.topic, value=value, key=b"conversation")
    ces = CesConsumer(source.url, settings)
    try:
        source.tenant("acme", "alice")
        ces.drain()  # the tenant and principal rows' events, behind the bad records
    finally:
        ces.close()
    assert producer.flush(30) == 0
    outcome = drain(source, settings)
    assert outcome.dead_lettered == 2
    assert outcome.completed >= 2
    letters = source.conn.execute(
        "SELECT reason, exception_message, body, metadata->>'transport', metadata->>'topic', "
        "decode(metadata->>'value_base64', 'base64') FROM message_dead_letters "
        "ORDER BY dead_letter_id"
    ).fetchall()
    assert [row[0] for row in letters] == ["malformed_event", "malformed_event"]
    assert "invalid JSON" in letters[0][1]
    assert letters[0][2] == "\ufffd\x01 not json"  # a JSON string (jsonb holds no NUL)
    assert letters[0][5] == b"\x00\x01 not json"  # and the exact bytes
    assert "missing required attribute" in letters[1][1]
    assert {(row[3], row[4]) for row in letters} == {("kafka", kafka.topic)}
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE label = 'Tenant'") == 1
    assert committed_lag(settings) == 0


def test_an_unreachable_kafka_is_named_and_nothing_is_acknowledged(source: Source) -> None:
    settings = kafka_settings(
        f"127.0.0.1:{_free_port()}", create=False, connect_timeout_seconds=1.0
    )
    servers = settings.message_broker.kafka.bootstrap_servers
    worker = SyncWorker(source.url, settings)
    try:
        with pytest.raises(UnavailableError, match=f"Kafka is unreachable at {servers}"):
            worker.drain()
    finally:
        worker.close()
    ces = CesConsumer(source.url, settings)
    try:
        source.tenant("acme")
        with pytest.raises(UnavailableError, match=servers):
            ces.drain()
    finally:
        ces.close()
    # The checkpoint did not move past events Kafka never acknowledged: a later run has them.
    assert source.scalar("SELECT coalesce(sum(events_total), 0) FROM cdc_checkpoints") == 0
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0


def test_records_carry_the_cloudevents_kafka_binding(source: Source, kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    ces = CesConsumer(source.url, settings)
    try:
        source.tenant("acme")
        assert ces.drain() == 1
    finally:
        ces.close()
    kafka = settings.message_broker.kafka
    reader = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"{kafka.topic}-reader",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        reader.subscribe([kafka.topic])
        record = None
        for _ in range(300):  # a hang guard for the group join, not an expectation
            record = reader.poll(0.2)
            if record is not None:
                break
        assert record is not None
        assert record.error() is None
        headers = dict(record.headers() or [])
        assert headers["content-type"] == CONTENT_TYPE.encode()
        body = source.conn.execute("SELECT %s::jsonb", (record.value().decode(),)).fetchone()
        assert body is not None
        assert body[0]["type"] == "io.hartonomous.cdc.tenants.insert"
        # The key is the row's conversation (`<table>:<key>`): one row's events, one partition.
        assert record.key() == b'tenants:["acme"]'
    finally:
        reader.close()


def test_kafka_restarted_mid_run_loses_nothing_and_bills_once(
    source: Source, kafka_server: KafkaServer
) -> None:
    settings = kafka_settings(kafka_server.bootstrap_servers, connect_timeout_seconds=2.0)
    resilience = settings.message_broker.resilience.model_copy(
        update={
            "receive_max_attempts": 1,
            "circuit_breaker_failure_threshold": 2,
            "circuit_breaker_break_duration_seconds": 0.5,
        }
    )
    settings = settings.model_copy(
        update={
            "message_broker": settings.message_broker.model_copy(update={"resilience": resilience})
        }
    )
    ces = CesConsumer(source.url, settings)
    worker = SyncWorker(source.url, settings)
    try:
        source.tenant("acme", "alice")
        source.ingest("acme", 2, principal_id="alice", tag="before")
        ces.drain()
        assert worker.drain().billed == 2
        events_before = source.scalar("SELECT events_total FROM cdc_checkpoints")
        kafka_server.stop(keep_data=True)
        try:
            source.ingest("acme", 2, principal_id="alice", tag="during")
            with pytest.raises(UnavailableError):
                ces.drain()
            # Nothing Kafka did not acknowledge is counted as sent.
            assert source.scalar("SELECT events_total FROM cdc_checkpoints") == events_before
            for _ in range(2):
                with pytest.raises(UnavailableError):
                    worker.run_once()
            assert worker.loop.strategy.breaker.state == BreakerState.OPEN
            with pytest.raises(CircuitBreakerOpenError):
                worker.run_once()
        finally:
            kafka_server.restart()
        ces.drain()
        billed = 0

        def caught_up() -> bool:
            nonlocal billed
            with contextlib.suppress(UnavailableError, CircuitBreakerOpenError):
                billed += worker.drain().billed
            return billed == 2

        wait_until(caught_up, "the worker recovers once Kafka is back")
    finally:
        worker.close()
        ces.close()
    ledger = source.conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM billing_usage_ledger"
    ).fetchone()
    assert ledger == (4, 4)
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE label = 'Atom'") == 4


def hartonomous(env: dict[str, str], cwd: Path, *arguments: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hartonomous", *arguments],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkilled_ces_consumer_and_workers_on_kafka_bill_every_change_once(
    source: Source, database_url: str, data_dir: Path, kafka_bootstrap: str
) -> None:
    kafka = kafka_settings(kafka_bootstrap).message_broker.kafka
    env = worker_env(database_url, data_dir)
    env |= {
        "HARTONOMOUS_MESSAGE_BROKER__TRANSPORT": "kafka",
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__TOPIC": kafka.topic,
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONSUMER_GROUP": kafka.consumer_group,
        # A killed worker's partitions go to the others after this, not after 45 s.
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__SESSION_TIMEOUT_SECONDS": "6",
    }
    source.tenant("k1", "k1-user")
    ces = hartonomous(env, data_dir, "ces-consumer")
    workers = [hartonomous(env, data_dir, "sync", "--batch-size", "20") for _ in range(2)]
    rounds, per_round = 2, 25
    try:
        for round_ in range(rounds):
            billed = source.scalar("SELECT count(*) FROM billing_usage_ledger")
            source.ingest("k1", per_round, principal_id="k1-user", tag=f"r{round_}-")
            # Kill while the round flows: its first events are produced and billed, and the
            # rest (batches of 20) are still on their way.
            wait_until(
                lambda billed=billed: (
                    source.scalar("SELECT count(*) FROM billing_usage_ledger") > billed
                ),
                "the round's first events are billed",
            )
            if round_ % 2 == 0:
                ces.send_signal(signal.SIGKILL)
                ces.wait()
                ces = hartonomous(env, data_dir, "ces-consumer")
            victim = workers[round_ % 2]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            workers[round_ % 2] = hartonomous(env, data_dir, "sync", "--batch-size", "20")
    finally:
        for process in [ces, *workers]:
            process.send_signal(signal.SIGKILL)
            process.wait()
    cli = Cli(env, data_dir)
    captured = cli("--json", "ces-consumer", "--once")
    assert captured.exit_code == 0, captured.stderr
    finish = cli("--json", "sync", "--once")
    assert finish.exit_code == 0, finish.stderr
    holdings = rounds * per_round
    assert source.scalar("SELECT count(*) FROM holdings") == holdings
    ledger = source.conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM billing_usage_ledger"
    ).fetchone()
    assert ledger == (holdings, holdings)
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert (
        source.scalar("SELECT count(*) FROM graph_edges WHERE edge_id LIKE 'OWNS:holding:%%'")
        == holdings
    )
    probe = Settings().message_broker.model_copy(update={"kafka": kafka})
    assert committed_lag(Settings().model_copy(update={"message_broker": probe})) == 0
