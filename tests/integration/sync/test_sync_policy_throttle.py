"""Access policy, shared throttle and bad input, on real CDC events and the real broker."""

from __future__ import annotations

import contextlib
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings
from hartonomous.config.sections import DatabaseSettings
from hartonomous.db.connection import open_engine
from hartonomous.messaging import OutgoingMessage
from hartonomous.security.counter_store import PostgresCounterStore
from hartonomous.security.principals import update_principal
from hartonomous.security.tenants import set_tenant_state
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


def test_a_disable_refuses_the_events_committed_after_it_as_a_ban_does(source: Source) -> None:
    """A disabled tenant or principal is refused as a banned one is, but only for the events
    committed after the disable (`disabled_at`): the work stored before it is projected and
    billed, and the disable's own change is projected (the graph shows it). A disable written
    by hand (no `disabled_at`) refuses everything."""
    source.tenant("banned", "bob")
    source.tenant("paused", "pat")
    source.tenant("acme", "mallory")
    source.tenant("hand", "hal")
    source.tenant("fine", "fay")
    for tenant, principal in [("banned", "bob"), ("paused", "pat"), ("acme", "mallory")]:
        source.ingest(tenant, 1, principal_id=principal, tag="before")
    source.ingest("hand", 1, principal_id="hal")
    source.ingest("fine", 1, principal_id="fay")
    engine = open_engine(source.url, DatabaseSettings())
    try:
        with engine.begin() as connection:
            set_tenant_state(connection, "paused", "disabled")
            update_principal(connection, "acme", "mallory", state="disabled")
    finally:
        engine.dispose()
    source.conn.execute("UPDATE tenants SET is_active = false WHERE tenant_id = 'hand'")
    # Committed after the disables (a writer that did not check: the worker is the last line).
    source.ingest("paused", 1, principal_id="pat", tag="after")
    source.ingest("acme", 1, principal_id="mallory", tag="after")
    source.capture()
    settings = Settings.model_validate({"security": {"banned_tenants": ["banned"]}})
    outcome = drain(source, settings)

    def refused(tenant: str) -> set[tuple[str, str]]:
        rows = source.conn.execute(
            "SELECT reason, body->>'type' FROM message_dead_letters WHERE body->>'tenantid' = %s",
            (tenant,),
        ).fetchall()
        return {(reason, kind.removeprefix("io.hartonomous.cdc.")) for reason, kind in rows}

    def billed(tenant: str) -> int:
        return int(
            source.scalar("SELECT count(*) FROM billing_usage_ledger WHERE tenant_id = %s", tenant)
        )

    assert {reason for reason, _ in refused("banned")} == {"policy_denied:tenant-ban"}
    # Only what was committed after the disable: one holding each (and its job's events).
    assert {reason for reason, _ in refused("paused")} == {"policy_denied:tenant-disabled"}
    assert ("policy_denied:tenant-disabled", "holdings.insert") in refused("paused")
    assert ("policy_denied:principal-disabled", "holdings.insert") in refused("acme")
    assert {reason for reason, _ in refused("hand")} == {"policy_denied:tenant-disabled"}
    assert refused("fine") == set()
    # The holding stored before the disable is billed, the one after it is not.
    assert [billed(t) for t in ("paused", "acme", "fine", "hand")] == [1, 1, 1, 0]
    # The disables themselves are in the graph.
    states = dict(
        source.conn.execute(
            "SELECT node_id, properties->>'is_active' FROM graph_nodes "
            "WHERE node_id IN ('tenant:paused', 'principal:acme:mallory')"
        ).fetchall()
    )
    assert states == {"tenant:paused": "false", "principal:acme:mallory": "false"}
    assert outcome.dead_lettered > 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
