"""The broker on real PostgreSQL: send, receive, order, poison, malformed, orphans, replay."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from hartonomous.config.sections import MessageBrokerSettings, ResilienceSettings
from hartonomous.db.connection import libpq_url
from hartonomous.messaging import (
    Broker,
    DeadLetter,
    Delay,
    MessageTooLargeError,
    OutgoingMessage,
    ReceivedMessage,
    Settlement,
    message_pump,
)
from hartonomous.messaging.dead_letters import (
    ReplaySelection,
    list_dead_letters,
    purge,
    replay,
    show_dead_letter,
)
from hartonomous.messaging.status import broker_status


def libpq(url: str) -> str:
    return libpq_url(url)


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "/tests",
        "type": "io.hartonomous.test",
        "data": {"n": n},
        **extra,
    }


def fast_settings(max_attempts: int = 3) -> MessageBrokerSettings:
    return MessageBrokerSettings(
        max_message_characters=2048,
        resilience=ResilienceSettings(
            receive_base_delay_seconds=0.001,
            receive_max_delay_seconds=0.001,
            poison_message_max_attempts=max_attempts,
        ),
    )


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq(database_url), autocommit=True) as connection:
        yield connection


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_send_receive_complete_keeps_the_cloudevent_queryable(
    conn: psycopg.Connection[Any],
) -> None:
    broker = Broker(fast_settings())
    broker.send(conn, event(1, table="atoms", operation="insert"), conversation_id="atoms:1")
    row = conn.execute(
        "SELECT body->>'id', body->>'type', body->>'table', body->>'operation', attempts, "
        "message_type, queue_name FROM broker_messages"
    ).fetchone()
    assert row == (
        "evt-1",
        "io.hartonomous.test",
        "atoms",
        "insert",
        0,
        "//Hartonomous/Message",
        "hartonomous_message_queue",
    )
    [message] = broker.receive(conn, 10)
    assert message.attempts == 1
    assert message.body["data"] == {"n": 1}
    assert broker.receive(conn, 10) == []  # claimed: nobody else gets it
    with conn.transaction():
        assert broker.complete(conn, [message]) == 1
    assert count(conn, "SELECT count(*) FROM broker_messages") == 0
    assert broker_status(conn, broker)["throughput_last_minute"]["completed"] == 1


def test_send_joins_the_callers_transaction(conn: psycopg.Connection[Any]) -> None:
    broker = Broker(fast_settings())

    def failing_unit_of_work() -> None:
        with conn.transaction():
            broker.send_batch(conn, [OutgoingMessage(event(n)) for n in range(5)])
            raise RuntimeError("caller fails")

    with pytest.raises(RuntimeError):
        failing_unit_of_work()
    assert count(conn, "SELECT count(*) FROM broker_messages") == 0
    with conn.transaction():
        ids = broker.send_batch(conn, [OutgoingMessage(event(n)) for n in range(5)])
    assert ids == sorted(ids)
    assert count(conn, "SELECT count(*) FROM broker_messages") == 5


def test_an_oversized_message_is_refused_at_send(conn: psycopg.Connection[Any]) -> None:
    broker = Broker(fast_settings())
    with pytest.raises(MessageTooLargeError, match="over the limit of 2048"):
        broker.send(conn, event(1, data={"blob": "x" * 5000}))
    assert count(conn, "SELECT count(*) FROM broker_messages") == 0


def test_poison_and_malformed_messages_reach_dead_letters_while_the_rest_flow(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    broker = Broker(fast_settings(max_attempts=3))
    handled: list[int] = []

    def handler(evt: Any, message: ReceivedMessage, _c: psycopg.Connection[Any]) -> None:
        if evt.get_data()["n"] == 3:
            raise KeyError("poisoned payload")
        handled.append(evt.get_data()["n"])

    # A malformed message first in its conversation must not block the one behind it.
    broker.send(conn, "{not json", conversation_id="c-bad")
    broker.send(conn, event(1), conversation_id="c-bad")
    broker.send(conn, {"specversion": "1.0", "id": "x"}, conversation_id="c-missing")
    for n in (2, 3, 4):
        broker.send(conn, event(n), conversation_id=f"c-{n}")
    pump = message_pump(database_url, broker, handler, batch_size=10)
    try:
        for _ in range(50):
            pump.drain()
            if count(conn, "SELECT count(*) FROM broker_messages") == 0:
                break
    finally:
        pump.close()
    assert sorted(handled) == [1, 2, 4]
    letters = {row["reason"]: row for row in list_dead_letters(conn)}
    assert set(letters) == {
        "Exceeded maximum delivery attempts of 3",
        "malformed CloudEvent: missing required attribute(s) source, type",
        next(r for r in letters if r.startswith("malformed CloudEvent: invalid JSON")),
    }
    poison = show_dead_letter(
        conn, letters["Exceeded maximum delivery attempts of 3"]["dead_letter_id"]
    )
    assert poison["attempts"] == 3
    assert poison["exception_type"] == "builtins.KeyError"
    assert poison["exception_message"] == "'poisoned payload'"
    assert "raise KeyError" in poison["exception_traceback"]
    assert poison["body"]["data"] == {"n": 3}
    assert poison["conversation_id"] == "c-3"
    assert broker_status(conn, broker)["dead_letters"] == 3


def test_a_failed_handler_loses_only_its_own_writes_within_the_batch(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE TABLE effects (n int PRIMARY KEY)")
    broker = Broker(fast_settings(max_attempts=1))
    settlements: dict[int, Settlement] = {4: Delay(60), 5: DeadLetter("denied")}

    def handler(evt: Any, _m: ReceivedMessage, c: psycopg.Connection[Any]) -> Settlement | None:
        n = evt.get_data()["n"]
        if n == 8:
            raise ValueError("fails before touching the database")
        c.execute("INSERT INTO effects VALUES (%s)", (n,))
        if n == 6:  # swallows a database error: its transaction is left aborted
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                c.execute("INSERT INTO effects VALUES (%s)", (n,))
        if n == 2:
            raise KeyError("boom")
        return settlements.get(n)  # a delayed or dead-lettered message's writes are undone

    with conn.transaction():
        broker.send_batch(conn, [OutgoingMessage(event(n)) for n in range(1, 9)])
    pump = message_pump(database_url, broker, handler, batch_size=10)
    try:
        outcome = pump.run_once()  # all eight in one batch, one transaction
    finally:
        pump.close()
    assert (outcome.completed, outcome.delayed, outcome.dead_lettered) == (3, 1, 4)
    assert [row[0] for row in conn.execute("SELECT n FROM effects ORDER BY n")] == [1, 3, 7]
    remaining = conn.execute("SELECT body->'data'->>'n', attempts FROM broker_messages").fetchall()
    assert remaining == [("4", 0)]  # delayed, and the delay did not count as an attempt
    letters = {
        show_dead_letter(conn, row["dead_letter_id"])["body"]["data"]["n"]: row
        for row in list_dead_letters(conn)
    }
    assert sorted(letters) == [2, 5, 6, 8]
    assert letters[5]["reason"] == "denied"
    assert letters[6]["exception_type"].endswith("HandlerLeftTransactionAbortedError")
    assert letters[8]["exception_type"] == "builtins.ValueError"


def test_a_worker_that_dies_mid_handling_uses_up_attempts(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    broker = Broker(fast_settings(max_attempts=2))
    broker.send(conn, event(1), conversation_id="k")
    broker.send(conn, event(2), conversation_id="other")
    for attempt in (1, 2):
        with psycopg.connect(libpq(database_url), autocommit=True) as doomed:
            claimed = broker.receive(doomed, 10)
            assert [m.attempts for m in claimed if m.conversation_id == "k"] == [attempt]
            for message in claimed:
                if message.conversation_id == "other":
                    with doomed.transaction():
                        broker.complete(doomed, [message])
        # The session is gone: its claim is an orphan, taken back by the next receive.
    broker.send(conn, event(3), conversation_id="fresh")
    # The exhausted orphan is dead-lettered, and the same receive still delivers the rest.
    [fresh] = broker.receive(conn, 10)
    assert fresh.conversation_id == "fresh"
    with conn.transaction():
        assert broker.complete(conn, [fresh]) == 1
    [letter] = list_dead_letters(conn)
    assert letter["reason"] == "Exceeded maximum delivery attempts of 2"
    assert letter["attempts"] == 2
    assert count(conn, "SELECT count(*) FROM broker_messages") == 0


def test_delay_is_not_a_failed_attempt(database_url: str, conn: psycopg.Connection[Any]) -> None:
    broker = Broker(fast_settings(max_attempts=1))
    broker.send(conn, event(1))
    calls: list[int] = []

    def throttled(
        _e: Any, message: ReceivedMessage, _c: psycopg.Connection[Any]
    ) -> Settlement | None:
        calls.append(message.attempts)
        return Delay(0) if len(calls) < 3 else None

    pump = message_pump(database_url, broker, throttled)
    try:
        pump.drain()
    finally:
        pump.close()
    assert calls == [1, 1, 1]
    assert list_dead_letters(conn) == []


def test_conversation_order_holds_with_two_concurrent_workers(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE TABLE handled (seq bigserial, conversation text, n int, worker text)")
    broker = Broker(fast_settings())
    conversations, per_conversation = 12, 25
    with conn.transaction():
        broker.send_batch(
            conn,
            [
                OutgoingMessage(event(n, subject=f"c{c}"), conversation_id=f"c{c}")
                for n in range(per_conversation)
                for c in range(conversations)
            ],
        )

    def worker(name: str) -> None:
        def handler(evt: Any, _m: ReceivedMessage, c: psycopg.Connection[Any]) -> None:
            c.execute(
                "INSERT INTO handled (conversation, n, worker) VALUES (%s, %s, %s)",
                (evt.get_subject(), evt.get_data()["n"], name),
            )

        pump = message_pump(database_url, broker, handler, batch_size=4)
        try:
            while count(conn, "SELECT count(*) FROM broker_messages") > 0:
                pump.run_once()
        finally:
            pump.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = conn.execute("SELECT conversation, n, worker FROM handled ORDER BY seq").fetchall()
    assert len(rows) == conversations * per_conversation
    for c in range(conversations):
        assert [n for conv, n, _ in rows if conv == f"c{c}"] == list(range(per_conversation))
    assert {worker for _, _, worker in rows} == {"w0", "w1"}


def test_replay_and_purge(database_url: str, conn: psycopg.Connection[Any]) -> None:
    broker = Broker(fast_settings())
    for body in ("{bad", "{worse"):
        broker.send(conn, body)
    pump = message_pump(database_url, broker)
    try:
        pump.drain()
        letters = list_dead_letters(conn)
        assert len(letters) == 2
        first = letters[-1]["dead_letter_id"]
        [new_id] = replay(conn, broker, ReplaySelection(dead_letter_id=first))
        message = conn.execute(
            "SELECT attempts, replayed_from FROM broker_messages WHERE message_id = %s",
            (new_id,),
        ).fetchone()
        assert message == (0, first)
        assert show_dead_letter(conn, first)["replayed_message_id"] == new_id
        assert [row["dead_letter_id"] for row in list_dead_letters(conn)] != [first]
        replay(conn, broker, ReplaySelection(everything=True))
        pump.drain()  # still malformed: back to the dead letters
    finally:
        pump.close()
    assert len(list_dead_letters(conn, include_replayed=True)) == 4
    assert purge(conn, timedelta(days=1)) == 0
    assert purge(conn, timedelta(0)) == 4
    assert list_dead_letters(conn, include_replayed=True) == []
