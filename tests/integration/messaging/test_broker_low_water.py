"""The broker's low-water mark with a long transaction open: nothing behind the mark is lost.

A REPEATABLE READ transaction held open keeps every completed (deleted) queue row from being
vacuumed; the mark (messaging/low_water.py) lets receives skip them. These tests put delayed,
given-back, orphaned and uncommitted messages behind the mark and check that each is still
delivered, and in conversation order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tests.integration.messaging.test_broker_queue import event

from hartonomous.config.sections import MessageBrokerSettings
from hartonomous.db.connection import libpq_url
from hartonomous.messaging import Broker, OutgoingMessage, ReceivedMessage

Connection = psycopg.Connection[Any]


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        yield connection


@pytest.fixture
def held_snapshot(database_url: str) -> Iterator[None]:
    """A reporting transaction left open: no row deleted after its snapshot can be vacuumed."""
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM broker_messages")
        yield
        holder.rollback()


def eager_broker(max_stragglers: int = 64) -> Broker:
    """A broker whose mark refreshes on every receive (the default waits 0.2 s between)."""
    broker = Broker(MessageBrokerSettings())
    broker.low_water.refresh_seconds = 0.0
    broker.low_water.max_stragglers = max_stragglers
    return broker


def send(conn: Connection, broker: Broker, numbers: range, conversation: str | None = None) -> None:
    with conn.transaction():
        broker.send_batch(conn, [OutgoingMessage(event(n), conversation) for n in numbers])


def numbers(messages: list[ReceivedMessage]) -> list[int]:
    return [int(message.body["data"]["n"]) for message in messages]


def complete(conn: Connection, broker: Broker, messages: list[ReceivedMessage]) -> None:
    with conn.transaction():
        assert broker.complete(conn, messages) == len(messages)


def batches(conn: Connection, broker: Broker) -> list[list[ReceivedMessage]]:
    """Receive and complete batches of up to 10 until a receive claims nothing."""
    seen: list[list[ReceivedMessage]] = []
    while batch := broker.receive(conn, 10):
        seen.append(batch)
        complete(conn, broker, batch)
    return seen


def drain(conn: Connection, broker: Broker) -> list[int]:
    """The numbers `batches` received, in claim order."""
    return [n for batch in batches(conn, broker) for n in numbers(batch)]


@pytest.mark.usefixtures("held_snapshot")
def test_delayed_given_back_and_orphaned_messages_behind_the_mark_are_delivered_in_order(
    conn: Connection,
) -> None:
    broker = eager_broker()
    send(conn, broker, range(0, 1), conversation="c")  # given back, then redelivered
    send(conn, broker, range(1, 2))  # delayed
    send(conn, broker, range(2, 3))  # orphaned: its claim lapses
    send(conn, broker, range(3, 4), conversation="c")  # behind 0 in its conversation
    send(conn, broker, range(10, 40))
    first = broker.receive(conn, 3)
    assert numbers(first) == [0, 1, 2]  # 3 waits for 0, its conversation's head
    with conn.transaction():
        broker.abandon(conn, first[0], RuntimeError("try again"))
        broker.delay(conn, first[1], 3600)
    conn.execute(
        "UPDATE broker_messages SET locked_until = now() - interval '1 second' "
        "WHERE message_id = %s",
        (first[2].message_id,),
    )
    # The orphan comes back alone, then 0 (given back) before anything of its conversation.
    [orphan] = broker.receive(conn, 10)
    assert (numbers([orphan]), orphan.attempts) == ([2], 2)
    complete(conn, broker, [orphan])
    batch = broker.receive(conn, 5)
    assert numbers(batch) == [0, 10, 11, 12, 13]
    with conn.transaction():
        broker.abandon(conn, batch[0], RuntimeError("again"), retry_after_seconds=3600)
        broker.complete(conn, batch[1:])
    # Everything after them is completed while the snapshot keeps the dead rows.
    assert drain(conn, broker) == list(range(14, 40))
    # 0 (given back for later), 1 (delayed) and 3 (behind 0) are queued, behind the mark.
    queued = dict(conn.execute("SELECT body->'data'->>'n', message_id FROM broker_messages"))
    assert set(queued) == {"0", "1", "3"}
    broker.receive(conn, 1)  # one more refresh moves the mark past the completed messages
    assert broker.low_water.mark > max(queued.values())
    assert set(broker.low_water.stragglers) == set(queued.values())
    # Their waits end: all come back, 3 only once 0 (its conversation's head) is completed.
    conn.execute("UPDATE broker_messages SET available_at = now()")
    assert [numbers(batch) for batch in batches(conn, broker)] == [[0, 1], [3]]
    assert conn.execute("SELECT count(*) FROM broker_messages").fetchone() == (0,)


@pytest.mark.usefixtures("held_snapshot")
def test_the_mark_waits_for_a_transaction_that_drew_a_lower_id(
    conn: Connection, database_url: str
) -> None:
    broker = eager_broker()
    with psycopg.connect(libpq_url(database_url)) as writer:
        # Drawn first, committed last: its id is below every message completed meanwhile.
        [late_id] = broker.send_batch(writer, [OutgoingMessage(event(0))])
        send(conn, broker, range(1, 21))
        assert drain(conn, broker) == list(range(1, 21))
        for _ in range(3):  # refreshes that find the writer still open
            assert broker.receive(conn, 10) == []
        assert broker.low_water.mark <= late_id
        writer.commit()
    assert drain(conn, broker) == [0]
    broker.receive(conn, 1)
    assert broker.low_water.mark > late_id


@pytest.mark.usefixtures("held_snapshot")
def test_more_stragglers_than_listed_stop_the_mark_at_the_first_left_over(
    conn: Connection,
) -> None:
    broker = eager_broker(max_stragglers=2)
    send(conn, broker, range(0, 4))  # four messages delayed for an hour
    with conn.transaction():
        for message in broker.receive(conn, 4):
            broker.delay(conn, message, 3600)
    send(conn, broker, range(10, 30))
    assert drain(conn, broker) == list(range(10, 30))
    broker.receive(conn, 1)
    ids = [row[0] for row in conn.execute("SELECT message_id FROM broker_messages ORDER BY 1")]
    assert broker.low_water.stragglers == tuple(ids[:2])
    assert broker.low_water.mark == ids[2]  # the third is found by the scan from the mark
    conn.execute("UPDATE broker_messages SET available_at = now()")
    assert drain(conn, broker) == [0, 1, 2, 3]
