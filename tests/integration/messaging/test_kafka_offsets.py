"""Offset commits of the Kafka transport on a real Kafka 4 broker (docs/messaging.md, "Kafka
transport"): a batch's `settled` sends its offsets without waiting for the cluster's answer,
and the offsets are known to have landed by the time `drained` reads the group's lag."""

from __future__ import annotations

import os
import signal
import threading
import uuid

import psycopg
from tests.integration.messaging.test_broker_queue import event
from tests.integration.messaging.test_transport_conformance import kafka_transport
from tests.integration.sync.conftest import wait_until
from tests.kafka_server import KafkaServer

from hartonomous.db.connection import libpq_url
from hartonomous.messaging import OutgoingMessage, ReceivedMessage
from hartonomous.messaging.kafka import PartitionLag

# A hang guard, not an expectation: a settle that waits for the frozen broker's answer waits
# for librdkafka's request timeout (60 s), far longer.
_SETTLE_GUARD_SECONDS = 20.0


def test_a_batch_settles_without_waiting_for_kafka_and_its_offsets_land_by_the_drain(
    database_url: str, kafka_server: KafkaServer
) -> None:
    transport = kafka_transport(kafka_server.bootstrap_servers, f"offsets-{uuid.uuid4().hex[:8]}")
    try:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
            transport.listen(connection)
            transport.publish(
                [OutgoingMessage(event(n), conversation_id=f"c{n}") for n in range(5)]
            )
            messages: list[ReceivedMessage] = []

            def received_all() -> bool:
                messages.extend(transport.receive(connection, 10))
                return len(messages) == 5

            wait_until(received_all, "the five records are received")
            with connection.transaction():
                transport.complete(connection, messages)
            # The broker frozen (SIGSTOP: its connections stay open, nothing is answered):
            # the batch's effects are committed, and the worker goes on to its next batch
            # without a round trip to the cluster.
            group = os.getpgid(kafka_server.process.pid)
            settled = threading.Event()
            os.killpg(group, signal.SIGSTOP)
            try:
                thread = threading.Thread(
                    target=lambda: (transport.settled(messages), settled.set())
                )
                thread.start()
                thread.join(_SETTLE_GUARD_SECONDS)
                assert settled.is_set(), "settled waited for the cluster's answer"
            finally:
                os.killpg(group, signal.SIGCONT)
            thread.join()
            # `drained` commits in sync what was sent asynchronously before it reads the lag.
            wait_until(transport.drained, "the drain sees its offsets committed")
            assert transport.group_lag() == [PartitionLag(0, 5, 5)]
    finally:
        transport.close()
