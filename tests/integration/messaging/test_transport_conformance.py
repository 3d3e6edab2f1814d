"""The transport contract (docs/messaging.md, "Transport"), checked against each adapter: the
in-database broker on real PostgreSQL, Kafka on a real Kafka 4 broker (dead letters in real
PostgreSQL), and the in-memory fake, which must behave the same."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from tests.integration.messaging.test_broker_queue import event, fast_settings

from hartonomous.config.sections import KafkaSettings
from hartonomous.db.connection import libpq_url
from hartonomous.messaging import Broker, OutgoingMessage, ReceivedMessage, Transport
from hartonomous.messaging.broker import UnsettledMessage
from hartonomous.messaging.kafka import KafkaTransport
from hartonomous.messaging.memory import InMemoryTransport


@dataclass
class Adapter:
    transport: Transport
    connection: Any
    dead_letter_reasons: Callable[[], list[str]]
    claimed: dict[str, ReceivedMessage] = field(default_factory=dict)

    def settle(self, settle: Callable[[], object], messages: list[ReceivedMessage]) -> None:
        """Run ``settle`` in one transaction, then tell the transport it committed."""
        transaction = (
            self.connection.transaction()
            if isinstance(self.connection, psycopg.Connection)
            else contextlib.nullcontext()
        )
        with transaction:
            settle()
        self.transport.settled(messages)

    def receive(self, expected: int) -> list[tuple[str, int]]:
        """What receives claim, as (conversation/n, attempts): up to ``expected`` messages
        (Kafka hands out records as its fetches bring them), then one receive more, which
        must add nothing."""
        messages: list[ReceivedMessage] = []
        for _ in range(_MAX_RECEIVES):
            if len(messages) >= expected:
                break
            messages += self.transport.receive(self.connection, 10)
        messages += self.transport.receive(self.connection, 10)
        self.claimed.update({label(m): m for m in messages})
        return sorted((label(m), m.attempts) for m in messages)


# A hang guard for Kafka's first fetch (joining the group), not an expectation.
_MAX_RECEIVES = 400


def label(message: ReceivedMessage) -> str:
    return f"{message.conversation_id}/{message.body['data']['n']}"


def unsettled_label(message: UnsettledMessage) -> str:
    return f"{message.conversation_id}/{message.body['data']['n']}"


def kafka_transport(bootstrap: str, name: str) -> KafkaTransport:
    """A Kafka transport on a topic of one partition and a consumer group of its own: both
    conversations share the partition, so a delayed head must not hold the other back."""
    settings = fast_settings(max_attempts=3).model_copy(
        update={
            "transport": "kafka",
            "kafka": KafkaSettings(
                bootstrap_servers=bootstrap, topic=name, consumer_group=f"{name}-workers"
            ),
        }
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=60)
    return KafkaTransport(settings)


@pytest.fixture(params=["postgres", "kafka", "memory"])
def adapter(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    if request.param == "memory":
        memory = InMemoryTransport(max_attempts=3)
        yield Adapter(memory, None, lambda: [letter.reason for letter in memory.dead_letters])
        return
    url = request.getfixturevalue("database_url")
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        transport: Transport = Broker(fast_settings(max_attempts=3))
        if request.param == "kafka":
            bootstrap = request.getfixturevalue("kafka_bootstrap")
            transport = kafka_transport(bootstrap, f"conformance-{uuid.uuid4().hex[:8]}")
        transport.listen(connection)

        def reasons() -> list[str]:
            rows = connection.execute(
                "SELECT reason FROM message_dead_letters ORDER BY dead_letter_id"
            ).fetchall()
            return [str(row[0]) for row in rows]

        try:
            yield Adapter(transport, connection, reasons)
        finally:
            transport.close()


def test_the_transport_contract(adapter: Adapter) -> None:
    transport, connection = adapter.transport, adapter.connection
    sent = [OutgoingMessage(event(n), conversation_id="a") for n in (1, 2, 3)]
    sent += [OutgoingMessage(event(n), conversation_id="b") for n in (1, 2)]
    adapter.settle(lambda: transport.send_batch(connection, sent), [])
    # Only conversation heads, each delivery counted; claimed ones are nobody else's.
    assert adapter.receive(2) == [("a/1", 1), ("b/1", 1)]
    a1, b1 = adapter.claimed["a/1"], adapter.claimed["b/1"]
    adapter.settle(lambda: transport.complete(connection, [a1]), [a1])
    adapter.settle(lambda: transport.delay(connection, b1, 3600), [b1])
    # The delayed head holds its own conversation, not the other.
    assert adapter.receive(1) == [("a/2", 1)]
    a2 = adapter.claimed["a/2"]
    adapter.settle(lambda: transport.delay(connection, a2, 0), [a2])
    assert adapter.receive(1) == [("a/2", 1)]  # a delay is not a failed attempt
    a2 = adapter.claimed["a/2"]
    adapter.settle(lambda: transport.abandon(connection, a2, KeyError("boom"), 0), [a2])
    assert adapter.receive(1) == [("a/2", 2)]  # an abandon is
    a2 = adapter.claimed["a/2"]
    adapter.settle(lambda: transport.dead_letter(connection, a2, "policy_denied:p"), [a2])
    assert adapter.dead_letter_reasons() == ["policy_denied:p"]
    assert adapter.receive(1) == [("a/3", 1)]
    # A throttled head comes back once its delay passed, not later, the delivery uncounted;
    # the other conversation's delayed head (b/1, an hour) still holds only its own.
    a3 = adapter.claimed["a/3"]
    adapter.settle(lambda: transport.delay(connection, a3, 0.2), [a3])
    time.sleep(0.3)  # past the delay (waiting, not measuring)
    assert adapter.receive(1) == [("a/3", 1)]
    assert transport.max_attempts == 3
    # Unsettled: what is neither completed nor dead-lettered, claimed (a/3) or delayed (b/1)
    # or waiting (b/2), in send order per conversation; of some conversations when asked.
    unsettled = transport.unsettled(connection)
    assert sorted(unsettled_label(m) for m in unsettled) == ["a/3", "b/1", "b/2"]
    assert [unsettled_label(m) for m in transport.unsettled(connection, ["b"])] == ["b/1", "b/2"]
    assert transport.unsettled(connection, ["c"]) == []
