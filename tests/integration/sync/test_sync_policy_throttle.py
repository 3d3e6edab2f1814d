"""Access policy, shared throttle and bad input, on real CDC events and the real broker."""

from __future__ import annotations

import contextlib
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings
from hartonomous.config.sections import DatabaseSettings
from hartonomous.messaging import OutgoingMessage
from hartonomous.security.counter_store import PostgresCounterStore
from hartonomous.security.throttle import CounterKey, ThrottleStep
from hartonomous.sync.worker import SyncWorker


def dead_letters(source: Source) -> list[tuple[str, str]]:
    return source.conn.execute(
        "SELECT reason, body->>'type' FROM message_dead_letters ORDER BY dead_letter_id"
    ).fetchall()


def test_policy_denials_dead_letter_with_the_policy_name(source: Source) -> None:
    source.tenant("banned", "bob")
    source.tenant("acme", "mallory")
    source.tenant("limited", "lou")
    source.ingest("banned", 1)
    source.ingest("acme", 1, principal_id="mallory")
    source.ingest("limited", 2, principal_id="lou")
    source.capture()
    settings = Settings.model_validate(
        {
            "security": {
                "banned_tenants": ["BANNED"],
                "banned_principals": ["mallory"],
                "tenant_operation_deny_list": {"limited": ["neo4j_sync.ingest_completed"]},
            }
        }
    )
    outcome = drain(source, settings)
    reasons = dead_letters(source)
    holdings = "io.hartonomous.cdc.holdings.insert"
    assert ("policy_denied:tenant-ban", holdings) in reasons
    assert ("policy_denied:principal-ban", holdings) in reasons
    assert reasons.count(("policy_denied:tenant-operation-ban", holdings)) == 2
    # Every event of the banned tenant is denied (tenant, job and holding rows alike).
    assert all(
        reason == "policy_denied:tenant-ban"
        for (reason,) in source.conn.execute(
            "SELECT reason FROM message_dead_letters WHERE body->>'tenantid' = 'banned'"
        ).fetchall()
    )
    detail = source.scalar(
        "SELECT exception_message FROM message_dead_letters "
        "WHERE reason = 'policy_denied:tenant-operation-ban' LIMIT 1"
    )
    assert detail == "Operation neo4j_sync.ingest_completed is not permitted for tenant limited."
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 0
    assert outcome.dead_lettered == len(reasons)
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0


def test_throttled_events_are_delayed_not_failed_and_limits_hold_across_workers(
    source: Source,
) -> None:
    source.tenant("busy")
    source.ingest("busy", 5)
    source.capture()
    rule = {
        "name": "ingest-per-tenant",
        "scope": "tenant_operation",
        "operation": "neo4j_sync.ingest_completed",
        "permit_limit": 2,
        "window_seconds": 3600,
    }
    settings = Settings.model_validate({"security": {"rate_limits": [rule]}})
    first = drain(source, settings)
    second = drain(source, settings)  # another worker: the counter is shared in PostgreSQL
    assert first.billed == 2
    assert first.delayed == 3
    assert second.received == 0  # the throttled events wait out their retry-after
    delayed = source.conn.execute(
        "SELECT attempts, available_at > now() + interval '50 minutes' FROM broker_messages"
    ).fetchall()
    assert delayed == [(0, True)] * 3
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert (
        source.scalar(
            "SELECT count FROM security_throttle_counters WHERE subject = 'tenant' "
            "AND subject_id = 'busy' AND operation = 'neo4j_sync.ingest_completed'"
        )
        == 2
    )
    # When the window has passed, the delayed events are billed.
    source.conn.execute(
        "UPDATE security_throttle_counters SET window_start = now() - interval '2 hours'"
    )
    source.conn.execute("UPDATE broker_messages SET available_at = now()")
    third = drain(source, settings)
    assert third.billed == 2
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 4


def cdc_event(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"bad-{n}",
        "source": "/tests",
        "type": "io.hartonomous.cdc.holdings.insert",
        "datacontenttype": "application/json",
        **fields,
    }


def test_bad_input_is_dead_lettered_or_counted_never_dropped(source: Source) -> None:
    source.tenant("acme")
    bodies: list[Any] = [
        cdc_event(1, table="holdings", operation="insert", data={"holding_id": "x"}),
        cdc_event(
            2,
            table="holdings",
            operation="insert",
            tenantid="acme",
            data={
                "tenant_id": "acme",
                "holding_id": "9d5ed678-fe57-4cca-b40a-1234567890ab",
                "atom_id": 42,
            },
        ),
        cdc_event(3, table="holdings", operation="insert", tenantid="acme", data=[1, 2]),
        cdc_event(
            4,
            type="io.hartonomous.cdc.audit_log.insert",
            table="audit_log",
            operation="insert",
            data={"x": 1},
        ),
        cdc_event(5, type="io.example.other", data={}),
        {"not": "a cloudevent"},
    ]
    worker = SyncWorker(source.url, Settings())
    try:
        worker.broker.send_batch(source.conn, [OutgoingMessage(b) for b in bodies])
        outcome = worker.drain()
    finally:
        worker.close()
    reasons = [reason for reason, _ in dead_letters(source)]
    assert sorted(reasons) == sorted(["invalid_event"] * 4 + ["malformed_event"])
    messages = source.conn.execute(
        "SELECT exception_message FROM message_dead_letters ORDER BY dead_letter_id"
    ).fetchall()
    text = " | ".join(m for (m,) in messages)
    assert "holdings.insert: no tenant" in text
    assert "column atom_id is 42, expected a SHA-256 digest in hex" in text
    assert "data is list, not a JSON object" in text
    assert "names no table" in text
    assert outcome.completed == 1
    assert (
        source.scalar("SELECT count FROM sync_counters WHERE counter = 'unmapped:audit_log.insert'")
        == 1
    )
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0


def throttle_count(source: Source) -> int:
    return int(
        source.scalar(
            "SELECT coalesce(sum(count), 0) FROM security_throttle_counters "
            "WHERE subject = 'tenant' AND subject_id = 'busy'"
        )
    )


def test_permits_of_a_batch_that_rolls_back_are_refunded(source: Source) -> None:
    source.tenant("busy")
    source.ingest("busy", 3)
    source.capture()
    rule = {
        "name": "per-tenant",
        "scope": "tenant",
        "permit_limit": 100,
        "window_seconds": 3600,
    }
    with socket.socket() as closed:  # a port nothing listens on: Neo4j is down
        closed.bind(("127.0.0.1", 0))
        down = f"bolt://127.0.0.1:{closed.getsockname()[1]}"
    settings = Settings.model_validate(
        {
            "security": {"rate_limits": [rule]},
            "neo4j": {"uri": down, "connection_timeout_seconds": 1},
            "message_broker": {
                "resilience": {"publish_max_attempts": 1, "circuit_breaker_failure_threshold": 1}
            },
        }
    )
    queued = source.scalar("SELECT count(*) FROM broker_messages")
    # Shared rows (atoms) have no tenant, so the tenant rule counts only the tenant's events.
    counted = source.scalar(
        "SELECT count(*) FROM broker_messages "
        "WHERE coalesce(body->>'tenantid', body->'data'->>'tenant_id') = 'busy'"
    )
    assert counted > 0
    waiting = drain(source, settings)
    assert waiting.waiting_for_neo4j > 0
    assert waiting.completed == 0
    assert throttle_count(source) == 0  # the rolled-back batch holds no permits
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 0

    source.conn.execute("UPDATE broker_messages SET available_at = now()")
    done = drain(source, Settings.model_validate({"security": {"rate_limits": [rule]}}))
    assert done.completed == queued
    assert throttle_count(source) == counted  # each counted once, by the batch that stuck


def test_provisional_permits_nest_and_refund_only_what_rolled_back(database_url: str) -> None:
    store = PostgresCounterStore(database_url, DatabaseSettings())
    key = CounterKey("tenant", "nest")
    step = ThrottleStep("r", key, permit_limit=10, window=timedelta(hours=1))
    now = datetime.now(UTC)
    try:
        with store.provisional():
            store.acquire([step], now)
            with contextlib.suppress(RuntimeError), store.provisional():
                store.acquire([step, step], now)  # one key under two rules: two permits
                assert store.count(key) == 3
                raise RuntimeError("inner work rolled back")
            assert store.count(key) == 1
            with store.provisional():
                store.acquire([step], now)
        assert store.count(key) == 2  # kept: the outer block ended normally
        with contextlib.suppress(RuntimeError), store.provisional():
            store.acquire([step], now)
            with store.provisional():
                store.acquire([step], now)
            raise RuntimeError("outer work rolled back")
        assert store.count(key) == 2  # inner permits passed to the outer block, refunded too
        store.acquire([step], now)  # outside any block: counted for good
        assert store.count(key) == 3
    finally:
        store.close()


def test_a_disabled_tenant_or_principal_is_refused_as_a_banned_one_is(source: Source) -> None:
    source.tenant("banned", "bob")
    source.tenant("paused", "pat")
    source.tenant("acme", "mallory")
    source.tenant("fine", "fay")
    source.ingest("banned", 1, principal_id="bob")
    source.ingest("paused", 1, principal_id="pat")
    source.ingest("acme", 1, principal_id="mallory")
    source.ingest("fine", 1, principal_id="fay")
    # Disabled after the work was done and before the worker got to it: refused at once.
    source.conn.execute("UPDATE tenants SET is_active = false WHERE tenant_id = 'paused'")
    source.conn.execute(
        "UPDATE principals SET is_active = false "
        "WHERE tenant_id = 'acme' AND principal_id = 'mallory'"
    )
    source.capture()
    settings = Settings.model_validate({"security": {"banned_tenants": ["banned"]}})
    outcome = drain(source, settings)

    def reasons_of(tenant: str) -> set[str]:
        rows = source.conn.execute(
            "SELECT reason FROM message_dead_letters WHERE body->>'tenantid' = %s", (tenant,)
        ).fetchall()
        return {reason for (reason,) in rows}

    assert reasons_of("banned") == {"policy_denied:tenant-ban"}
    assert reasons_of("paused") == {"policy_denied:tenant-disabled"}
    holdings = "io.hartonomous.cdc.holdings.insert"
    mallory = source.conn.execute(
        "SELECT reason, exception_message FROM message_dead_letters "
        "WHERE body->>'tenantid' = 'acme' AND body->>'type' = %s",
        (holdings,),
    ).fetchall()
    assert mallory == [
        ("policy_denied:principal-disabled", "Principal mallory of tenant acme is disabled.")
    ]
    assert reasons_of("fine") == set()
    billed = source.conn.execute(
        "SELECT DISTINCT tenant_id FROM billing_usage_ledger ORDER BY tenant_id"
    ).fetchall()
    assert billed == [("fine",)]
    assert outcome.dead_lettered > 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
