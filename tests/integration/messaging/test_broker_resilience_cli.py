"""The breaker against real PostgreSQL errors, and the operator commands end to end."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from tests.conftest import Cli

from hartonomous.db.connection import libpq_url
from hartonomous.messaging.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerOpenError,
)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_real_transient_errors_half_opens_and_closes(database_url: str) -> None:
    clock = Clock()
    breaker = CircuitBreaker("postgresql", 3, 30.0, 1, clock=clock)
    url = libpq_url(database_url)
    # The timed-out statements run on their own connection: a statement_timeout timer that fires
    # just after a statement ends cancels the *next* statement on that connection, so a RESET on
    # the same connection would race the breaker's later, non-transient call.
    with (
        psycopg.connect(url, autocommit=True) as timed,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        timed.execute("SET statement_timeout = '1ms'")

        def slow() -> Any:
            return timed.execute("SELECT pg_sleep(1)").fetchone()

        for _ in range(3):
            with pytest.raises(psycopg.errors.QueryCanceled):  # SQLSTATE 57014: transient
                breaker.execute(slow)
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitBreakerOpenError):
            breaker.execute(lambda: conn.execute("SELECT 1").fetchone())
        clock.now = 30.0
        with pytest.raises(psycopg.errors.UndefinedTable):  # not transient: does not count
            breaker.execute(lambda: conn.execute("SELECT * FROM no_such_table"))
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.execute(lambda: conn.execute("SELECT 1").fetchone()) == (1,)
        assert breaker.state is BreakerState.CLOSED


def test_status_dead_letters_replay_and_purge_commands(cli: Cli, database_url: str) -> None:
    url = libpq_url(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO message_dead_letters (message_id, queue_name, conversation_id, "
            "message_type, body, enqueued_at, attempts, reason, exception_type, "
            "exception_message, exception_traceback) VALUES (7, 'hartonomous_message_queue', "
            "'c', '//Hartonomous/Message', '{\"id\": \"e\"}', now(), 3, "
            "'Exceeded maximum delivery attempts of 3', 'builtins.KeyError', 'boom', 'tb')"
        )
    status = json.loads(cli("--json", "broker", "status").stdout)
    assert status["depth"] == 0
    assert status["dead_letters"] == 1
    assert status["dead_letters_last_hour"] == 1
    assert status["dead_letter_spike"] is False
    assert {"oldest_age_seconds", "in_flight", "throughput_last_minute"} <= set(status)
    [letter] = json.loads(cli("--json", "deadletters", "list").stdout)
    shown = json.loads(cli("--json", "deadletters", "show", str(letter["dead_letter_id"])).stdout)
    assert shown["exception_type"] == "builtins.KeyError"
    assert shown["body"] == {"id": "e"}
    missing = cli("deadletters", "show", "999999")
    assert missing.exit_code == 1
    assert "dead letter 999999 does not exist" in missing.stderr
    assert cli("deadletters", "replay").exit_code == 2
    replayed = json.loads(
        cli("--json", "deadletters", "replay", "--reason", letter["reason"]).stdout
    )
    assert replayed["replayed"] == 1
    assert json.loads(cli("--json", "broker", "status").stdout)["depth"] == 1
    refused = cli("deadletters", "purge", "--older-than", "0s")
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    assert cli("deadletters", "purge", "--older-than", "soon", "--yes").exit_code == 2
    purged = json.loads(cli("--json", "deadletters", "purge", "--older-than", "0s", "--yes").stdout)
    assert purged == {"purged": 1}
