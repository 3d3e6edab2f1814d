"""Rate limits on /v1: RateLimit headers on every counted response, 429 with Retry-After, and
one limit shared by two API processes on one database."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.security.counter_store import PooledCounterStore
from hartonomous.security.roles import Role
from hartonomous.security.throttle import CounterKey, ThrottleStep
from hartonomous.services import Platform

from .conftest import IssueKey, bearer

ROOT = Path(__file__).parents[3]
HANG_GUARD_SECONDS = 120
_RATE_LIMIT = re.compile(r'^"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def _client(engine: Engine, rules: list[dict[str, Any]] | None) -> TestClient:
    security = {} if rules is None else {"rate_limits": rules}
    settings = Settings.model_validate({"security": security})
    app = create_app(Platform(engine, settings, head_revision()))
    return TestClient(app, raise_server_exceptions=False)


def _remaining(answer: httpx.Response) -> tuple[str, int, int]:
    match = _RATE_LIMIT.match(answer.headers["ratelimit"])
    assert match, answer.headers["ratelimit"]
    return match["name"], int(match["r"]), int(match["t"])


def test_the_default_is_100_a_minute_per_tenant(engine: Engine, issue_key: IssueKey) -> None:
    token = issue_key(role=Role.ADMIN)
    other = issue_key(role=Role.USER, principal="second")
    with _client(engine, None) as api:
        first = api.get("/v1/tenants/acme", headers=bearer(token))
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"] == '"default";q=100;w=60'
        assert _remaining(first)[:2] == ("default", 99)
        # Every counted response carries the headers, a 403 too; the tenant's keys share it.
        forbidden = api.get("/v1/tenants/acme", headers=bearer(other))
        assert forbidden.status_code == 403
        assert _remaining(forbidden)[:2] == ("default", 98)
        # Unauthenticated requests are not counted (there is no tenant to count them for).
        assert "ratelimit" not in api.get("/v1/tenants").headers


def test_a_spent_key_limit_answers_429_with_retry_after_and_headers(
    engine: Engine, issue_key: IssueKey
) -> None:
    rules = [{"name": "per-key", "scope": "key", "permit_limit": 3, "window_seconds": 3600}]
    token = issue_key(role=Role.ADMIN)
    second = issue_key(role=Role.ADMIN, principal="other-admin")
    with _client(engine, rules) as api:
        remaining = [
            _remaining(api.get("/v1/tenants/acme", headers=bearer(token)))[1] for _ in range(3)
        ]
        assert remaining == [2, 1, 0]
        refused = api.get("/v1/tenants/acme", headers=bearer(token))
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate-limited"
        assert "'per-key'" in refused.json()["detail"]
        retry_after = int(refused.headers["retry-after"])
        assert 3500 < retry_after <= 3600
        assert refused.headers["ratelimit-policy"] == '"per-key";q=3;w=3600'
        name, left, reset = _remaining(refused)
        assert (name, left) == ("per-key", 0)
        assert reset == retry_after
        # Per key: another key of the same tenant has its own window.
        assert api.get("/v1/tenants/acme", headers=bearer(second)).status_code == 200


def test_the_tightest_of_several_limits_is_reported(engine: Engine, issue_key: IssueKey) -> None:
    rules = [
        {"name": "per-key", "scope": "key", "permit_limit": 50, "window_seconds": 60},
        {"name": "per-tenant", "scope": "tenant", "permit_limit": 2, "window_seconds": 600},
    ]
    token = issue_key(role=Role.ADMIN)
    with _client(engine, rules) as api:
        answer = api.get("/v1/tenants", headers=bearer(token))
        assert answer.headers["ratelimit-policy"] == '"per-tenant";q=2;w=600'
        assert _remaining(answer)[:2] == ("per-tenant", 1)
        api.get("/v1/tenants", headers=bearer(token))
        refused = api.get("/v1/tenants", headers=bearer(token))
        assert refused.status_code == 429
        assert "'per-tenant'" in refused.json()["detail"]


def test_principal_and_key_counters_are_per_tenant(engine: Engine, issue_key: IssueKey) -> None:
    """The same principal id in two tenants has two counters (no state shared across tenants),
    whatever the scope that names a principal or a key."""
    for scope in ("principal", "principal_operation", "key"):
        rules = [
            {"name": f"per-{scope}", "scope": scope, "permit_limit": 2, "window_seconds": 3600}
        ]
        first = issue_key(tenant=f"one-{scope.replace('_', '-')}", principal="shared")
        second = issue_key(tenant=f"two-{scope.replace('_', '-')}", principal="shared")
        with _client(engine, rules) as api:
            assert [api.get("/v1/me", headers=bearer(first)).status_code for _ in range(3)] == [
                200,
                200,
                429,
            ]
            other = api.get("/v1/me", headers=bearer(second))
            assert other.status_code == 200, (scope, other.text)
            assert _remaining(other)[:2] == (f"per-{scope}", 1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _two_servers(database_url: str, limit: int) -> Iterator[list[str]]:
    """Two API processes on the test's database sharing a limit of ``limit`` an hour."""
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.api.limited_server",
                database_url,
                str(p),
                str(limit),
            ],
            cwd=ROOT,
        )
        for p in ports
    ]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        for url, process in zip(urls, processes, strict=True):
            while True:
                assert process.poll() is None, f"API process on {url} exited"
                try:
                    if httpx.get(f"{url}/health/live").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"hang guard: API process on {url} did not start")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture
def two_servers(database_url: str) -> Iterator[list[str]]:
    """Two API processes on the test's database, each with a shared limit of 10 an hour (too
    small to lease: one permit per request)."""
    with _two_servers(database_url, 10) as urls:
        yield urls


def test_two_api_processes_share_one_limit(two_servers: list[str], issue_key: IssueKey) -> None:
    token = issue_key(role=Role.ADMIN)
    statuses: list[int] = []
    refusals: list[httpx.Response] = []
    for n in range(30):
        answer = httpx.get(f"{two_servers[n % 2]}/v1/tenants/acme", headers=bearer(token))
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            refusals.append(answer)
    assert statuses.count(200) == 10
    assert statuses.count(429) == 20
    assert {r.url.port for r in refusals} == {httpx.URL(u).port for u in two_servers}
    for refused in refusals:
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["ratelimit-policy"] == '"shared";q=10;w=3600'
        assert _remaining(refused)[:2] == ("shared", 0)


def test_the_pooled_store_counts_as_apply_steps_does(engine: Engine) -> None:
    store = PooledCounterStore(engine)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    one = ThrottleStep("one", CounterKey("key", "k", tenant_id="acme"), 2, timedelta(seconds=60))
    assert [store.acquire([one], start).is_throttled for _ in range(3)] == [False, False, True]
    denied = store.acquire([one], start + timedelta(seconds=45))
    assert denied.retry_after == timedelta(seconds=15)
    # The window elapsed: the counter restarts and this call is its first.
    restarted = store.acquire([one], start + timedelta(seconds=60))
    assert not restarted.is_throttled
    assert restarted.quota is not None
    assert (restarted.quota.remaining, restarted.quota.reset_after) == (1, timedelta(seconds=60))
    # A limit of 0 admits nothing and leaves no count behind; two rules roll back together.
    closed = ThrottleStep("closed", CounterKey("tenant", "t"), 0, timedelta(seconds=60))
    assert store.acquire([closed], start).is_throttled
    wide = ThrottleStep("wide", CounterKey("tenant", "t2"), 5, timedelta(seconds=60))
    assert store.acquire([wide, closed], start).is_throttled
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                text("SELECT subject_id, count FROM security_throttle_counters")
            ).all()
        )
    # A key's row names its tenant: "acme/k".
    assert counts == {"acme/k": 1, "t": 0, "t2": 0}


def _stored_count(engine: Engine, subject_id: str) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(
            text("SELECT count FROM security_throttle_counters WHERE subject_id = :s"),
            {"s": subject_id},
        ).scalar_one()
    return count


def test_leases_never_grant_more_than_the_limit_between_processes(engine: Engine) -> None:
    # Two stores stand for two API processes: each holds its own leases.
    first, second = (PooledCounterStore(engine, lease_permits=32) for _ in range(2))
    start = datetime(2030, 1, 1, tzinfo=UTC)
    step = ThrottleStep("shared", CounterKey("tenant", "t"), 100, timedelta(seconds=60))
    assert first.lease_size(step) == 2  # at most 1/50 of the limit
    # The first process leases two permits and uses one; the headers count the held one as left.
    taken = first.acquire([step], start)
    assert not taken.is_throttled
    assert taken.quota is not None
    assert taken.quota.remaining == 99
    assert _stored_count(engine, "t") == 2
    # The second spends everything else the window has: 98, not 99 (one is held by the first).
    granted = 0
    while not second.acquire([step], start + timedelta(seconds=1)).is_throttled:
        granted += 1
    assert granted == 98
    # The first hands out its held permit without the database, then is refused too.
    held = first.acquire_held([step], start + timedelta(seconds=2))
    assert held is not None
    assert not held.is_throttled
    refused = first.acquire([step], start + timedelta(seconds=2))
    assert refused.is_throttled
    assert refused.retry_after == timedelta(seconds=58)
    assert _stored_count(engine, "t") == 100


def test_a_lease_ends_with_its_window_and_the_tail_is_taken_one_by_one(engine: Engine) -> None:
    store = PooledCounterStore(engine, lease_permits=32)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    # 101 a minute: leases of two until one permit is left, which is taken alone.
    odd = ThrottleStep("odd", CounterKey("key", "k", tenant_id="acme"), 101, timedelta(seconds=60))
    granted = 0
    while not store.acquire([odd], start).is_throttled:
        granted += 1
    assert granted == 101
    assert _stored_count(engine, "acme/k") == 101
    # A permit held when the window ends is dropped, never carried into the next window.
    step = ThrottleStep("minute", CounterKey("tenant", "w"), 100, timedelta(seconds=60))
    assert not store.acquire([step], start).is_throttled  # leases 2, holds 1
    later = start + timedelta(seconds=60)
    assert store.acquire_held([step], later) is None
    renewed = store.acquire([step], later)
    assert renewed.quota is not None
    assert (renewed.quota.remaining, renewed.quota.reset_after) == (99, timedelta(seconds=60))
    assert _stored_count(engine, "w") == 2
    # One permit per statement when asked (lease_permits=1), as with a small limit.
    single = PooledCounterStore(engine, lease_permits=1)
    assert single.lease_size(step) == 1
    assert single.lease_size(odd) == 1
    assert not single.acquire([step], later).is_throttled
    assert _stored_count(engine, "w") == 3


def test_two_api_processes_leasing_admit_exactly_the_limit(
    database_url: str, issue_key: IssueKey
) -> None:
    # 100 an hour: each process leases two permits at a time (1/50 of the limit).
    token = issue_key(role=Role.ADMIN)
    with _two_servers(database_url, 100) as urls:
        answers = [
            httpx.get(f"{urls[n % 2]}/v1/tenants/acme", headers=bearer(token)) for n in range(130)
        ]
    statuses = [answer.status_code for answer in answers]
    # Alternating, each process uses what it leased before leasing again: all 100 admitted,
    # then both refuse; never one more.
    assert statuses[:100] == [200] * 100
    assert statuses[100:] == [429] * 30
    assert [_remaining(answer)[1] for answer in answers[:4]] == [99, 97, 98, 96]
    assert _remaining(answers[99])[1] == 0
