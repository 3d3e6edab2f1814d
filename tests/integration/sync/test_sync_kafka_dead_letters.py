"""Kafka dead letters on a real Kafka 4 broker and real PostgreSQL: a record is kept exactly
(value, key, headers) and replayed as it came; a record delivered again is dead-lettered
once (docs/messaging.md, "Kafka transport")."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from tests.conftest import Cli
from tests.integration.sync.conftest import Source, drain
from tests.integration.sync.test_sync_kafka import kafka_env, kafka_settings

from hartonomous.messaging.broker import Failure
from hartonomous.messaging.kafka import KafkaTransport

Header = tuple[str, bytes | None]


def read_back(
    bootstrap: str, topic: str, places: list[tuple[int, int]]
) -> list[tuple[bytes | None, bytes | None, list[Header]]]:
    """The records at ``places`` (partition, offset): value, key and headers as bytes."""
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "read-back", "enable.auto.commit": False}
    )
    found: dict[tuple[int, int], tuple[bytes | None, bytes | None, list[Header]]] = {}
    try:
        for partition, offset in places:
            reader.assign([TopicPartition(topic, partition, offset)])
            while (partition, offset) not in found:
                record = reader.poll(1.0)
                if record is None or record.error() is not None:
                    continue
                headers = record.headers() or []
                assert isinstance(headers, list)
                found[(int(record.partition() or 0), int(record.offset() or 0))] = (
                    record.value(),
                    record.key(),
                    [(name, None if text is None else bytes(text)) for name, text in headers],
                )
    finally:
        reader.close()
    return [found[place] for place in places]


def test_replay_publishes_each_kafka_record_exactly_as_it_came(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    """Before: JSON values came back re-serialised (`[1, 2, 3]`, keys reordered), a tombstone
    as an empty value, with a content-type and a default type header added and the record's
    own headers lost; a key with U+0000 came back with U+FFFD."""
    settings = kafka_settings(kafka_bootstrap)
    topic = settings.message_broker.kafka.topic
    records: list[tuple[bytes | None, bytes | None, list[Header]]] = [
        (b"[1,2,3]", b"one", []),
        (
            b'{"type":"x.unknown",  "specversion":"1.0","id":"a" , "source":"/s"}',
            b"one",
            [("trace", b"\x00\xff"), ("trace", None), ("content-type", b"text/plain")],
        ),
        (None, b"one", [("why", b"tombstone")]),
        (b"\x00\x01 not json", b"k\x00ey", []),
        (b'{"specversion": "1.0", "id": "no-key"}', None, [("a", b"")]),
    ]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value, key, headers in records:
        producer.produce(topic, value=value, key=key, headers=headers)
    assert producer.flush(30) == 0

    assert drain(source, settings).dead_lettered == len(records)
    letters = source.conn.execute(
        "SELECT body::text, metadata->>'partition', metadata->>'offset' "
        "FROM message_dead_letters ORDER BY dead_letter_id"
    ).fetchall()
    assert len(letters) == len(records)
    # The readable body stays what `deadletters show` shows.
    bodies = {row[0] for row in letters}
    assert "[1, 2, 3]" in bodies
    assert '"\ufffd\\u0001 not json"' in bodies

    replayed = Cli(cli.env | kafka_env(settings), cli.cwd)(
        "--json", "deadletters", "replay", "--all"
    )
    assert replayed.exit_code == 0, replayed.stderr
    marks: list[Any] = source.conn.execute(
        "SELECT (metadata->>'replayed_partition')::int, (metadata->>'replayed_offset')::bigint, "
        "(metadata->>'partition')::int, (metadata->>'offset')::bigint "
        "FROM message_dead_letters ORDER BY dead_letter_id"
    ).fetchall()
    originals = read_back(kafka_bootstrap, topic, [(row[2], row[3]) for row in marks])
    copies = read_back(kafka_bootstrap, topic, [(row[0], row[1]) for row in marks])
    assert copies == originals
    assert sorted(originals, key=repr) == sorted(records, key=repr)


def test_a_kafka_record_delivered_again_is_dead_lettered_once(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    """Before: a record whose offset was not committed after its dead letter's transaction
    (a crash or a rebalance in between) was dead-lettered again by the next member to get it,
    and `deadletters replay --all` published it twice."""
    settings = kafka_settings(kafka_bootstrap)
    topic = settings.message_broker.kafka.topic
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=b"not a cloudevent", key=b"k")
    assert producer.flush(30) == 0

    letters: list[int | None] = []
    for _ in range(2):  # two members of the group, one after the other
        transport = KafkaTransport(settings.message_broker)
        try:
            transport.listen(source.conn)
            [message] = transport.receive(source.conn, 10)
            with source.conn.transaction():
                letters.append(
                    transport.dead_letter(
                        source.conn, message, "malformed_event", Failure(None, None, None)
                    )
                )
            # The member dies before `settled`: the record's offset is never committed.
        finally:
            transport.close()
    assert letters[0] is not None
    assert letters[1] is None
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 1

    replayed = Cli(cli.env | kafka_env(settings), cli.cwd)(
        "--json", "deadletters", "replay", "--all"
    )
    assert replayed.exit_code == 0, replayed.stderr
    assert json.loads(replayed.stdout)["replayed"] == 1
    # The replayed copy is another record (another offset): dead-lettered on its own.
    drain(source, settings)  # the original (still not committed) and its copy
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 2
