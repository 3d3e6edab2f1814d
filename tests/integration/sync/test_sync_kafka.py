"""The event path over the Kafka transport, on a real Kafka 4 broker and real PostgreSQL: CDC
events produced by the CES consumer, consumed by the sync worker into graph and ledger."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tests.conftest import Cli, CliProcess
from tests.integration.sync.conftest import Source, drain, wait_until
from tests.integration.sync.test_sync_faults import worker_env
from tests.jvm_process import free_port
from tests.kafka_server import KafkaServer

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.errors import UnavailableError
from hartonomous.messaging.kafka import CONTENT_TYPE
from hartonomous.messaging.resilience import BreakerState, CircuitBreakerOpenError
from hartonomous.services.health import readiness
from hartonomous.services.platform import open_platform
from hartonomous.services.status import platform_status
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


def kafka_env(settings: Settings) -> dict[str, str]:
    """The environment that points a CLI process at ``settings``' topic and group."""
    kafka = settings.message_broker.kafka
    return {
        "HARTONOMOUS_MESSAGE_BROKER__TRANSPORT": "kafka",
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__TOPIC": kafka.topic,
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONSUMER_GROUP": kafka.consumer_group,
        "HARTONOMOUS_MESSAGE_BROKER__KAFKA__SESSION_TIMEOUT_SECONDS": str(
            kafka.session_timeout_seconds
        ),
    }


def partition_ends(settings: Settings) -> list[int]:
    """The end (high watermark) of each partition of the topic."""
    kafka = settings.message_broker.kafka
    reader = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "ends"})
    try:
        return [
            reader.get_watermark_offsets(TopicPartition(kafka.topic, p), timeout=30)[1]
            for p in range(3)
        ]
    finally:
        reader.close()


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
    source: Source, cli: Cli, kafka_bootstrap: str
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
        "decode(metadata->>'value_base64', 'base64'), metadata->>'partition' "
        "FROM message_dead_letters "
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

    # Replay re-publishes to the topic (not to the in-database queue), in order, after Kafka
    # acknowledged the records; the worker gets them again (and dead-letters them again).
    ends = partition_ends(settings)
    replayed = Cli(cli.env | kafka_env(settings), cli.cwd)(
        "--json", "deadletters", "replay", "--all"
    )
    assert replayed.exit_code == 0, replayed.stderr
    assert json.loads(replayed.stdout)["replayed"] == 2
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    assert sum(partition_ends(settings)) == sum(ends) + 2
    marks = source.conn.execute(
        "SELECT metadata->>'replayed_to', (metadata->>'replayed_offset')::bigint "
        "FROM message_dead_letters WHERE replayed_at IS NOT NULL ORDER BY dead_letter_id"
    ).fetchall()
    partition = int(letters[0][6])
    assert marks == [
        (f"kafka:{kafka.topic}", ends[partition]),
        (f"kafka:{kafka.topic}", ends[partition] + 1),
    ]
    again = drain(source, settings)
    assert again.dead_lettered == 2
    assert committed_lag(settings) == 0


def test_records_that_parse_as_json_but_jsonb_refuses_are_dead_lettered_with_their_bytes(
    source: Source, kafka_bootstrap: str
) -> None:
    """Before: NaN failed every attempt and its dead-letter write too (attempts past the poison
    limit, the partition stuck); U+0000 in data or in the key failed the same way in
    PostgreSQL; a deeply nested value raised RecursionError out of `sync --once`."""
    settings = kafka_settings(kafka_bootstrap)
    kafka = settings.message_broker.kafka
    head = b'{"specversion":"1.0","id":"x%d","source":"/x","type":"t","data":'
    records = [
        (b"nan", head % 1 + b'{"v":NaN}}', "NaN (not a JSON number jsonb can store) at $.data.v"),
        (b"inf", head % 2 + b'{"v":-Infinity}}', "-Infinity"),
        (b"nul", head % 3 + b'{"t":"a\\u0000"}}', "U+0000 (NUL) in the string at $.data.t"),
        (b"lone", head % 4 + b'["\\udc00"]}', "a lone surrogate U+DC00"),
        (b"k\x00ey", b"not json", "invalid JSON"),
        (b"deep", b"[" * 5000 + b"]" * 5000, "nested deeper than"),
        (b"latin1", head % 5 + b'"caf\xe9"}', "not UTF-8"),
    ]
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for key, value, _ in records:
        producer.produce(kafka.topic, value=value, key=key)
    assert producer.flush(30) == 0
    ces = CesConsumer(source.url, settings)
    try:
        source.tenant("acme", "alice")
        ces.drain()  # valid events behind the bad records
    finally:
        ces.close()
    outcome = drain(source, settings)
    assert outcome.dead_lettered == len(records)
    letters = source.conn.execute(
        "SELECT conversation_id, reason, exception_message, attempts, "
        "decode(metadata->>'value_base64', 'base64') FROM message_dead_letters "
        "ORDER BY (metadata->>'offset')::bigint"
    ).fetchall()
    by_key = {row[0]: row for row in letters}
    assert set(by_key) == {key.decode().replace("\x00", "\ufffd") for key, _, _ in records}
    for key, value, problem in records:
        _, reason, message, attempts, raw = by_key[key.decode().replace("\x00", "\ufffd")]
        assert (reason, attempts, raw) == ("malformed_event", 1, value)
        assert problem in message
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE label = 'Tenant'") == 1
    assert committed_lag(settings) == 0


def test_readiness_and_status_show_the_groups_lag_and_say_when_it_is_stuck(
    source: Source, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(kafka_bootstrap)
    settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": source.url}),
            "health": settings.health.model_copy(update={"backlog_alert_seconds": 0.5}),
        }
    )
    source.tenant("acme", "alice")
    source.ingest("acme", 3, principal_id="alice")
    ces = CesConsumer(source.url, settings)
    try:
        events = ces.drain()
    finally:
        ces.close()
    with open_platform(settings) as platform:
        # No worker consumes: once the oldest record waits past the alert, readiness says so.
        wait_until(
            lambda: "kafka: consumer group" in (readiness(platform).detail or ""),
            "the oldest record waits past backlog_alert_seconds",
        )
        ready = readiness(platform)
        assert ready.status == "degraded"
        assert ready.kafka is not None
        assert ready.kafka.lag == events == sum(p.lag for p in ready.kafka.partitions)
        checks = {check.name: check for check in platform_status(platform).checks}
        assert checks["kafka lag"].verdict == "WARN"
        assert f"{events} record(s) not committed" in checks["kafka lag"].detail
        drain(source, settings)
        ready = readiness(platform)
        assert ready.kafka is not None
        assert (ready.kafka.lag, ready.kafka.oldest_age_seconds) == (0, None)
        assert "kafka" not in (ready.detail or "")
        checks = {check.name: check for check in platform_status(platform).checks}
        assert checks["kafka lag"].verdict == "OK"
    away = settings.model_copy(
        update={
            "message_broker": settings.message_broker.model_copy(
                update={
                    "kafka": settings.message_broker.kafka.model_copy(
                        update={
                            "bootstrap_servers": f"127.0.0.1:{free_port()}",
                            "connect_timeout_seconds": 1.0,
                        }
                    )
                }
            )
        }
    )
    with open_platform(away) as platform:
        ready = readiness(platform)
        assert ready.kafka is not None
        assert not ready.kafka.reachable
        servers = away.message_broker.kafka.bootstrap_servers
        assert f"kafka: Kafka is unreachable at {servers}" in (ready.detail or "")
        checks = {check.name: check for check in platform_status(platform).checks}
        assert checks["kafka lag"].verdict == "FAIL"


def test_an_unreachable_kafka_is_named_and_nothing_is_acknowledged(
    source: Source, cli: Cli
) -> None:
    settings = kafka_settings(f"127.0.0.1:{free_port()}", create=False, connect_timeout_seconds=1.0)
    resilience = settings.message_broker.resilience.model_copy(update={"receive_max_attempts": 1})
    settings = settings.model_copy(
        update={
            "message_broker": settings.message_broker.model_copy(update={"resilience": resilience})
        }
    )
    servers = settings.message_broker.kafka.bootstrap_servers
    source.tenant("acme")
    # Each command at start: exit 1 and one line naming the servers (no client log lines).
    env = cli.env | kafka_env(settings)
    env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONNECT_TIMEOUT_SECONDS"] = "1"
    unreachable = Cli(env, cli.cwd)
    for command in (["sync", "--once"], ["ces-consumer"]):  # each service, each mode
        refused = unreachable(*command)
        assert refused.exit_code == 1, command
        assert refused.stderr.startswith(
            f"hartonomous: error: Kafka is unreachable at {servers} "
            "([message_broker.kafka] bootstrap_servers): "
        ), command
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "security_protocol" not in refused.stderr  # refused, not a failed handshake
    worker = SyncWorker(source.url, settings)
    try:
        with pytest.raises(UnavailableError, match=f"Kafka is unreachable at {servers}"):
            worker.drain()
    finally:
        worker.close()
    ces = CesConsumer(source.url, settings)
    try:
        with pytest.raises(UnavailableError, match=servers):
            ces.drain()
    finally:
        ces.close()
    # The checkpoint did not move past events Kafka never acknowledged: a later run has them.
    assert source.scalar("SELECT coalesce(sum(events_total), 0) FROM cdc_checkpoints") == 0
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0


@pytest.mark.parametrize(
    ("protocol", "sign"),
    [("SSL", "SSL handshake failed"), ("SASL_PLAINTEXT", "SASL PLAIN mechanism handshake failed")],
)
def test_a_security_protocol_the_listener_does_not_speak_is_named_as_the_likely_cause(
    cli: Cli, kafka_bootstrap: str, protocol: str, sign: str
) -> None:
    """Before: only `Kafka is unreachable at … Broker transport failure`, the same as a
    cluster that is down, for a client speaking TLS or SASL to the suite's PLAINTEXT
    listener."""
    settings = kafka_settings(kafka_bootstrap, create=False)
    env = cli.env | kafka_env(settings)
    env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONNECT_TIMEOUT_SECONDS"] = "1"
    env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__SECURITY_PROTOCOL"] = protocol
    if protocol.startswith("SASL"):
        env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__SASL_MECHANISM"] = "PLAIN"
        env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__SASL_USERNAME"] = "user"
        env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__SASL_PASSWORD"] = "secret"
    refused = Cli(env, cli.cwd)("sync", "--once")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        f"hartonomous: error: Kafka is unreachable at {kafka_bootstrap} "
        "([message_broker.kafka] bootstrap_servers): "
    ), refused.stderr
    assert (
        f"; likely a [message_broker.kafka] security_protocol mismatch ({protocol} is not what "
        "the listener speaks: "
    ) in refused.stderr
    assert sign in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "secret" not in refused.stderr


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


def topic_events(settings: Settings) -> list[dict[str, Any]]:
    """Every record of the topic, as the CloudEvents it carries (duplicates included)."""
    kafka = settings.message_broker.kafka
    reader = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"{kafka.topic}-reader"}
    )
    try:
        metadata = reader.list_topics(kafka.topic, timeout=30).topics[kafka.topic]
        ends = {}
        for partition in metadata.partitions:
            low, high = reader.get_watermark_offsets(
                TopicPartition(kafka.topic, partition), timeout=30, cached=False
            )
            if high > low:
                ends[partition] = high
        reader.assign([TopicPartition(kafka.topic, p, 0) for p in ends])
        events: list[dict[str, Any]] = []
        while ends:
            record = reader.poll(1.0)
            if record is None or record.error() is not None:
                continue
            events.append(json.loads(record.value()))
            if record.offset() + 1 >= ends[record.partition()]:
                del ends[record.partition()]
        return events
    finally:
        reader.close()


@contextlib.contextmanager
def change_probe(source: Source) -> Iterator[Callable[[], int]]:
    """Counts the row changes of the captured tables from now on, as PostgreSQL's own
    `test_decoding` plugin reads them from the WAL (independent of the CES consumer)."""
    slot = f"probe_{uuid.uuid4().hex[:12]}"
    source.conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
    tables = [
        row[0]
        for row in source.conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s",
            (Settings().cdc.publication_name,),
        ).fetchall()
    ]
    pattern = rf"^table public\.({'|'.join(tables)}): (INSERT|UPDATE|DELETE):"

    def changes() -> int:
        return int(
            source.scalar(
                "SELECT count(*) FROM pg_logical_slot_peek_changes(%s, NULL, NULL) WHERE data ~ %s",
                slot,
                pattern,
            )
        )

    try:
        yield changes
    finally:
        source.conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def test_sync_once_ends_only_when_the_group_reached_the_end_of_every_partition(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    """`sync --once` shares the topic with a live member of its group that does not consume:
    it does not report done while that member's partitions lag, it names them; once the
    member left, the next `sync --once` takes every partition over and drains them all."""
    settings = kafka_settings(kafka_bootstrap, session_timeout_seconds=6.0)
    kafka = settings.message_broker.kafka
    source.tenant("acme", "alice")
    # Enough rows (keys) that each of the 3 partitions holds records.
    source.ingest("acme", 15, principal_id="alice")
    ces = CesConsumer(source.url, settings)
    try:
        ces.drain()
    finally:
        ces.close()
    assert all(end > 0 for end in partition_ends(settings))
    group_cli = Cli(cli.env | kafka_env(settings), cli.cwd)
    stop = threading.Event()
    held: list[int] = []

    def hold() -> None:
        """A member that stays in the group (rebalances included) and consumes nothing; the
        client is used from this thread only."""
        holder = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap_servers,
                "group.id": kafka.consumer_group,
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )

        def assigned(_: Consumer, partitions: list[TopicPartition]) -> None:
            held[:] = [tp.partition for tp in partitions]

        holder.subscribe([kafka.topic], on_assign=assigned)
        try:
            while not stop.is_set():
                holder.poll(0.1)
        finally:
            holder.close()  # leaves the group

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        wait_until(lambda: len(held) == 3, "the holder has the partitions")
        stuck = group_cli("sync", "--once")
        assert stuck.exit_code == 1, stuck.stdout
        assert f"the consumer group {kafka.consumer_group!r} has not moved" in stuck.stderr
        assert "(another member's)" in stuck.stderr
        assert committed_lag(settings) > 0
    finally:
        stop.set()
        thread.join()
    finish = group_cli("--json", "sync", "--once")
    assert finish.exit_code == 0, finish.stderr
    assert committed_lag(settings) == 0
    ledger = source.conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM billing_usage_ledger"
    ).fetchone()
    assert ledger == (15, 15)


@pytest.mark.slow
def test_sigkilled_ces_consumer_and_workers_on_kafka_bill_every_change_once(
    source: Source, database_url: str, data_dir: Path, kafka_bootstrap: str
) -> None:
    """Three rounds of ingestion; in each, once the round's first holdings are billed, the
    CES consumer and/or sync workers are SIGKILLed mid-flow and restarted, and the last round
    kills all of them. `ces-consumer --once` and `sync --once` then finish: every source change
    is one event on the topic, every billable event one ledger row, the group's lag 0."""
    # A killed worker's partitions go to the others after 6 s, not after 45 s.
    settings = kafka_settings(kafka_bootstrap, session_timeout_seconds=6.0)
    env = worker_env(database_url, data_dir) | kafka_env(settings)
    cli = Cli(env, data_dir)

    def ces() -> CliProcess:
        return cli.spawn("ces-consumer")

    def worker() -> CliProcess:
        return cli.spawn("sync", "--batch-size", "10")

    rounds, per_round = 3, 20
    with change_probe(source) as source_changes:
        source.tenant("k1", "k1-user")
        processes = {"ces": ces(), "w0": worker(), "w1": worker()}
        # Who is killed once the round's first holdings are billed (the last round: all).
        victims = [("ces", "w0"), ("w1",), ("ces", "w0", "w1")]
        try:
            for round_, killed in enumerate(victims[:rounds]):
                source.ingest("k1", per_round, principal_id="k1-user", tag=f"r{round_}-")
                # Past the earlier rounds' holdings: this round flows through the restarted
                # processes (or their survivors), and the rest of it is still on its way.
                wait_until(
                    lambda round_=round_: (
                        source.scalar("SELECT count(*) FROM billing_usage_ledger")
                        > round_ * per_round
                    ),
                    f"round {round_}'s first holdings are billed",
                )
                for name in killed:
                    processes[name].send_signal(signal.SIGKILL)
                    processes[name].wait()
                    if round_ < rounds - 1:
                        processes[name] = ces() if name == "ces" else worker()
        finally:
            for process in processes.values():
                process.kill()
                process.wait()
        captured = cli("--json", "ces-consumer", "--once")
        assert captured.exit_code == 0, captured.stderr
        assert "slot_in_use_by" not in json.loads(captured.stdout)
        finish = cli("--json", "sync", "--once")
        assert finish.exit_code == 0, finish.stderr
        changes = source_changes()
    holdings = rounds * per_round
    assert source.scalar("SELECT count(*) FROM holdings") == holdings
    # Events = changes: each change is one CloudEvent on the topic (a record produced again
    # after a kill carries the same id), and the checkpoint counted each once.
    events = topic_events(settings)
    ids = {event["id"] for event in events}
    assert len(ids) == changes
    assert source.scalar("SELECT events_total FROM cdc_checkpoints") == changes
    # Ledger rows = billable events (holdings inserts), each once.
    billable = {e["id"] for e in events if e["type"] == "io.hartonomous.cdc.holdings.insert"}
    assert len(billable) == holdings
    ledger = [row[0] for row in source.conn.execute("SELECT event_id FROM billing_usage_ledger")]
    assert len(ledger) == len(set(ledger)) == holdings
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert (
        source.scalar("SELECT count(*) FROM graph_edges WHERE edge_id LIKE 'OWNS:holding:%%'")
        == holdings
    )
    assert committed_lag(settings) == 0
