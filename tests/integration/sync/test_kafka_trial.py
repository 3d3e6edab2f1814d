"""A fresh operator trial of the Kafka transport (issue 17), on a real Kafka 4 broker and real
PostgreSQL: oversized events, missing topics, an unreachable cluster at `up`, and replay of a
record that is not JSON."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tests.conftest import Cli, clean_environment
from tests.integration.sync.conftest import Source, drain
from tests.integration.sync.test_sync_kafka import kafka_env, kafka_settings, topic_events
from tests.jvm_process import free_port

from hartonomous.cdc import CesConsumer
from hartonomous.cdc.consumer import KAFKA_REFUSED_REASON, KAFKA_TOO_LARGE_REASON
from hartonomous.config import Settings
from hartonomous.messaging.kafka import KafkaUnknownTopicError


def letters(source: Source) -> list[tuple[str, str, int, str, str]]:
    return source.conn.execute(
        "SELECT reason, exception_type, length(body::text), body->>'table', "
        "metadata->>'change_index' FROM message_dead_letters ORDER BY dead_letter_id"
    ).fetchall()


def big_text_update(source: Source, text_sql: str) -> None:
    """One transaction: a tenant, an atom's text set to ``text_sql``, another tenant; then a
    third tenant in a transaction of its own."""
    atom = hashlib.sha256(uuid.uuid4().bytes).digest()
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text) "
        "VALUES (%s, 'leaf', 'text', 'plain', 3, 'big')",
        (atom,),
    )
    with source.conn.transaction():
        source.conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('before', 'B')")
        source.conn.execute(
            f"UPDATE atoms SET canonical_text = {text_sql} WHERE atom_id = %s",
            (atom,),
        )
        source.conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('after', 'A')")
    source.conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('next', 'N')")


def tenants_on_topic(settings: Settings) -> list[str]:
    events = topic_events(settings)
    return [event["data"]["tenant_id"] for event in events if event["table"] == "tenants"]


def test_an_event_over_max_message_bytes_is_set_aside_and_capture_moves_on(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    """400,000 characters of '€' are within max_message_characters but 1.2 MB as UTF-8, over
    Kafka's 1 MB: before, the CES consumer failed on it every step (MSG_SIZE_TOO_LARGE) and
    captured nothing after it."""
    settings = kafka_settings(kafka_bootstrap)
    big_text_update(source, "repeat('€', 400000)")
    ces = CesConsumer(source.url, settings)
    try:
        ces.drain()
        [(reason, exception_type, size, table, index)] = letters(source)
        assert reason == KAFKA_TOO_LARGE_REASON
        assert exception_type == "hartonomous.messaging.broker.MessageTooLargeError"
        assert (table, index) == ("atoms", "1")
        assert size > 400_000  # the whole event is kept for the record
        assert ces.status()["dead_lettered_total"] == 1
        assert ces.drain() == 0  # nothing set aside twice
    finally:
        ces.close()
    assert sorted(tenants_on_topic(settings)) == ["after", "before", "next"]  # each once
    # A replay of it still does not fit: one line saying so, exit 1, the letter left pending.
    replayed = Cli(cli.env | kafka_env(settings), cli.cwd)("deadletters", "replay", "--all")
    assert replayed.exit_code == 1
    assert replayed.stderr.startswith(
        "hartonomous: error: not replayed: dead letter 1: the event is "
    )
    assert "over the limit of 990000 ([message_broker.kafka] max_message_bytes)" in replayed.stderr
    assert replayed.stderr.count("\n") == 1, replayed.stderr
    assert source.conn.execute(
        "SELECT count(*) FROM message_dead_letters WHERE replayed_at IS NULL"
    ).fetchone() == (1,)


def test_an_event_the_broker_refuses_as_too_large_is_set_aside_not_the_batch_stuck(
    source: Source, kafka_bootstrap: str
) -> None:
    """The topic's limit (100,000 bytes) is below the configured one: the 300 KB event passes
    the check before producing and the broker answers MSG_SIZE_TOO_LARGE. That one event is
    set aside; its transaction mates and the changes after it reach the topic in order."""
    settings = kafka_settings(kafka_bootstrap, create=False)
    topic = settings.message_broker.kafka.topic
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created = admin.create_topics([NewTopic(topic, 3, 1, config={"max.message.bytes": "100000"})])
    for future in created.values():
        future.result(timeout=60)
    big_text_update(source, "repeat('word ', 60000)")
    ces = CesConsumer(source.url, settings)
    try:
        ces.drain()
        [(reason, exception_type, size, table, index)] = letters(source)
        assert reason == KAFKA_REFUSED_REASON
        assert exception_type == "hartonomous.messaging.transport.RecordTooLargeError"
        assert (table, index) == ("atoms", "1")
        assert size > 300_000
        assert ces.drain() == 0
    finally:
        ces.close()
    # At least once: what the refused batch had landed may come again.
    assert set(tenants_on_topic(settings)) == {"before", "after", "next"}


def test_a_missing_topic_is_named_at_connect_not_taken_for_an_empty_one(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    """Before: `sync --once` waited a minute and said "completed 0 event(s)" (exit 0), `status`
    said OK 0 not committed and the CES consumer "did not acknowledge 5 of 5" without naming
    the topic. The test broker auto-creates topics (a stock broker's default), which the check
    must not trigger: the topic is still absent after every command."""
    settings = kafka_settings(kafka_bootstrap, create=False)
    topic = settings.message_broker.kafka.topic
    named = (
        f"hartonomous: error: UnknownTopic: Kafka at {kafka_bootstrap} has no topic {topic!r} "
        "([message_broker.kafka] topic): create it"
    )
    source.tenant("acme", "alice")
    env = Cli(cli.env | kafka_env(settings), cli.cwd)
    for command in (["sync", "--once"], ["ces-consumer"]):
        refused = env(*command)
        assert refused.exit_code == 1, (command, refused.stdout, refused.stderr)
        assert refused.stderr.startswith(named), (command, refused.stderr)
        assert refused.stderr.count("\n") == 1, refused.stderr
    status = env("status")
    assert status.exit_code == 1, status.stdout
    [line] = [row for row in status.stdout.splitlines() if "kafka lag" in row]
    assert "FAIL" in line
    assert f"has no topic {topic!r}" in line
    ces = CesConsumer(source.url, settings)
    try:
        with pytest.raises(KafkaUnknownTopicError, match=f"has no topic {topic!r}"):
            ces.drain()
    finally:
        ces.close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert topic not in admin.list_topics(timeout=30).topics


def test_up_with_an_unreachable_kafka_refuses_and_leaves_nothing_running(
    data_dir: Path, kafka_bootstrap: str
) -> None:
    """Before: `up` started anyway and logged sync_batch_failed every 5 s. Now one line naming
    the servers, exit 1, and no embedded database server left behind. A reachable cluster
    without the topic is refused the same way, naming the topic."""
    servers = f"127.0.0.1:{free_port()}"
    settings = kafka_settings(servers, create=False)
    env = clean_environment() | kafka_env(settings)
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONNECT_TIMEOUT_SECONDS"] = "1"
    refused = run_up(env, data_dir)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith(
        f"hartonomous: error: Kafka is unreachable at {servers} "
        "([message_broker.kafka] bootstrap_servers): "
    )
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    env["HARTONOMOUS_MESSAGE_BROKER__KAFKA__BOOTSTRAP_SERVERS"] = kafka_bootstrap
    no_topic = run_up(env, data_dir)
    assert no_topic.returncode == 1, no_topic.stderr
    topic = settings.message_broker.kafka.topic
    assert f"UnknownTopic: Kafka at {kafka_bootstrap} has no topic {topic!r}" in no_topic.stderr
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


def run_up(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`up` to its end; one that is still running after two minutes (it started despite the
    cluster) is stopped with SIGTERM and fails the test."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hartonomous", "up", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
        pytest.fail(f"up kept running with Kafka unreachable:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_replaying_a_record_that_is_not_json_republishes_its_exact_bytes(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    """Before: the replay sent the dead letter's body, a JSON string of the text (quoted, NUL
    and invalid UTF-8 turned into U+FFFD), not the record that came."""
    settings = kafka_settings(kafka_bootstrap)
    kafka = settings.message_broker.kafka
    original = b"\x00\x01 not json \xff\xfe"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(kafka.topic, value=original, key=b"conversation")
    assert producer.flush(30) == 0
    assert drain(source, settings).dead_lettered == 1
    replayed = Cli(cli.env | kafka_env(settings), cli.cwd)(
        "--json", "deadletters", "replay", "--all"
    )
    assert replayed.exit_code == 0, replayed.stderr
    [(partition, offset)] = source.conn.execute(
        "SELECT (metadata->>'replayed_partition')::int, (metadata->>'replayed_offset')::bigint "
        "FROM message_dead_letters WHERE replayed_at IS NOT NULL"
    ).fetchall()
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{kafka.topic}-r"})
    try:
        reader.assign([TopicPartition(kafka.topic, partition, offset)])
        record = None
        for _ in range(60):
            record = reader.poll(1.0)
            if record is not None and record.error() is None:
                break
        assert record is not None
        assert (record.value(), record.key()) == (original, b"conversation")
    finally:
        reader.close()
    # Dead-lettered again on its next delivery, with the same exact bytes.
    assert drain(source, settings).dead_lettered == 1
    values = source.conn.execute(
        "SELECT decode(metadata->>'value_base64', 'base64') FROM message_dead_letters "
        "ORDER BY dead_letter_id"
    ).fetchall()
    assert values == [(original,), (original,)]


def test_without_an_idempotent_producer_the_events_still_arrive_once_each(
    source: Source, kafka_bootstrap: str
) -> None:
    """`idempotent_producer = false` (a cluster granting no producer ids): one request in
    flight, the same event path."""
    settings = kafka_settings(kafka_bootstrap, idempotent_producer=False)
    source.tenant("acme", "alice")
    source.ingest("acme", 2, principal_id="alice")
    ces = CesConsumer(source.url, settings)
    try:
        events = ces.drain()
    finally:
        ces.close()
    assert len(topic_events(settings)) == events > 0
    outcome = drain(source, settings)
    assert (outcome.completed, outcome.billed, outcome.dead_lettered) == (events, 2, 0)
