"""The transport contract (docs/messaging.md, "Transport"), checked against each adapter: the
in-database broker on real PostgreSQL, and the in-memory fake, which must behave the same."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from tests.integration.messaging.test_broker_queue import event, fast_settings

from hartonomous.db.connection import libpq_url
from hartonomous.messaging import Broker, OutgoingMessage, ReceivedMessage, Transport
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

    def receive(self) -> list[tuple[str, int]]:
        """What one receive claims, as (conversation/n, attempts)."""
        messages = self.transport.receive(self.connection, 10)
        self.claimed.update({label(m): m for m in messages})
        return sorted((label(m), m.attempts) for m in messages)


def label(message: ReceivedMessage) -> str:
    return f"{message.conversation_id}/{message.body['data']['n']}"


@pytest.fixture(params=["postgres", "memory"])
def adapter(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    if request.param == "memory":
        memory = InMemoryTransport(max_attempts=3)
        yield Adapter(memory, None, lambda: [letter.reason for letter in memory.dead_letters])
        return
    url = request.getfixturevalue("database_url")
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        broker = Broker(fast_settings(max_attempts=3))
        broker.listen(connection)

        def reasons() -> list[str]:
            rows = connection.execute(
                "SELECT reason FROM message_dead_letters ORDER BY dead_letter_id"
            ).fetchall()
            return [str(row[0]) for row in rows]

        yield Adapter(broker, connection, reasons)


def test_the_transport_contract(adapter: Adapter) -> None:
    transport, connection = adapter.transport, adapter.connection
    sent = [OutgoingMessage(event(n), conversation_id="a") for n in (1, 2, 3)]
    sent += [OutgoingMessage(event(n), conversation_id="b") for n in (1, 2)]
    adapter.settle(lambda: transport.send_batch(connection, sent), [])
    # Only conversation heads, each delivery counted.
    assert adapter.receive() == [("a/1", 1), ("b/1", 1)]
    assert adapter.receive() == []  # claimed: nobody else gets them
    a1, b1 = adapter.claimed["a/1"], adapter.claimed["b/1"]
    adapter.settle(lambda: transport.complete(connection, [a1]), [a1])
    adapter.settle(lambda: transport.delay(connection, b1, 3600), [b1])
    # The delayed head holds its own conversation, not the other.
    assert adapter.receive() == [("a/2", 1)]
    a2 = adapter.claimed["a/2"]
    adapter.settle(lambda: transport.delay(connection, a2, 0), [a2])
    assert adapter.receive() == [("a/2", 1)]  # a delay is not a failed attempt
    a2 = adapter.claimed["a/2"]
    adapter.settle(lambda: transport.abandon(connection, a2, KeyError("boom"), 0), [a2])
    assert adapter.receive() == [("a/2", 2)]  # an abandon is
    a2 = adapter.claimed["a/2"]
    adapter.settle(lambda: transport.dead_letter(connection, a2, "policy_denied:p"), [a2])
    assert adapter.dead_letter_reasons() == ["policy_denied:p"]
    assert adapter.receive() == [("a/3", 1)]
    assert transport.max_attempts == 3
