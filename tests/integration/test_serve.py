"""`serve`: the API alone, beside a running `up` (embedded) or on `database.url`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from tests.conftest import Cli, clean_environment
from tests.integration.test_up import RunningUp, alive

from hartonomous.api.http_protocol import MAX_HEAD_BYTES
from hartonomous.config import Settings
from hartonomous.db import EmbeddedPostgres
from hartonomous.db.api_role import provision_api_role
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant


def _issue_key(url: str, tenant: str) -> str:
    """A key for a new tenant, written as an operator would on the database's machine."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            ensure_tenant(connection, tenant, f"Tenant {tenant}")
            ensure_principal(connection, tenant, "ops", "Operator", "user")
            return create_api_key(connection, tenant, "ops", "serve test")
    finally:
        engine.dispose()


def _head_answer(url: str, header_bytes: int) -> bytes:
    """What the server answers a request whose one header holds ``header_bytes`` bytes (sent
    over a raw socket: HTTP clients refuse to send such headers)."""
    parsed = httpx.URL(url)
    with socket.create_connection((parsed.host, parsed.port or 80), timeout=30) as client:
        head = b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * header_bytes
        # Refused while still sending (OSError): its answer is already on the way.
        with contextlib.suppress(OSError):
            client.sendall(head + b"\r\n\r\n")
        return client.recv(65536)


def _check_head_bound(url: str, token: str) -> None:
    # httptools alone has no bound on a request's head: a 40 MB header was buffered and parsed.
    refused = _head_answer(url, MAX_HEAD_BYTES + 1024)
    assert refused.startswith(b"HTTP/1.1 431 "), refused[:200]
    problem = json.loads(refused.partition(b"\r\n\r\n")[2])
    # An RFC 9457 problem like every other refusal (docs/api.md, "Errors").
    assert problem["type"] == "urn:hartonomous:problem:request-header-fields-too-large"
    assert problem["code"] == "request-header-fields-too-large"
    assert _head_answer(url, 64 * 1024).startswith(b"HTTP/1.1 200 ")  # large, within the bound
    # A body is not a head: a JSON body over the head's bound is the body limit's (413).
    big_body = httpx.post(
        f"{url}/v1/search",
        content=b'{"query": "' + b"a" * (2 * MAX_HEAD_BYTES) + b'"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert big_body.status_code == 413, big_body.text
    assert httpx.get(f"{url}/health/live", timeout=30).status_code == 200


def _me(url: str, token: str) -> dict[str, str]:
    answer = httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    return body


@pytest.fixture
def embedded_env(data_dir: Path) -> dict[str, str]:
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    return env


@pytest.fixture
def serving(embedded_env: dict[str, str], data_dir: Path) -> Iterator[list[RunningUp]]:
    """A running `up`, then two `serve` processes beside it on the same data dir."""
    processes = [RunningUp(embedded_env, data_dir)]
    try:
        processes += [RunningUp(embedded_env, data_dir, command="serve") for _ in range(2)]
        yield processes
    finally:
        for process in reversed(processes):
            process.stop(signal.SIGTERM)


def test_up_and_two_serve_processes_answer_from_the_same_data(
    serving: list[RunningUp], data_dir: Path
) -> None:
    up, *serves = serving
    assert len({process.url for process in serving}) == 3
    for process in serves:
        assert process.announcement["embedded"] is True
    # The API role's generated password is readable by the data dir's owner only.
    assert (data_dir / "api-role.password").stat().st_mode & 0o777 == 0o600
    attached = EmbeddedPostgres(data_dir)
    attached.attach()
    try:
        tokens = {tenant: _issue_key(attached.url, tenant) for tenant in ("acme", "globex")}
    finally:
        attached.stop()  # our use only: `up` and the serves keep the server running
    for process in serving:
        ready = httpx.get(f"{process.url}/health/ready", timeout=30)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] in ("ready", "degraded")
        for tenant, token in tokens.items():
            identity = _me(process.url, token)
            assert (identity["tenant_id"], identity["tenant_name"]) == (tenant, f"Tenant {tenant}")
    assert httpx.get(f"{serves[0].url}/v1/me", timeout=30).status_code == 401
    _check_head_bound(serves[0].url, tokens["acme"])
    # A serve outlives the `up` it joined: the embedded server stays while it is used.
    assert up.stop(signal.SIGTERM) == 0
    assert _me(serves[0].url, tokens["acme"])["tenant_id"] == "acme"


def test_serve_without_a_running_up_names_up(embedded_cli: Cli, data_dir: Path) -> None:
    result = embedded_cli("serve", "--port", "0")
    assert result.exit_code == 1
    assert "no embedded database server is running" in result.stderr
    assert "hartonomous up" in result.stderr
    assert not (data_dir / "pgdata").exists()  # nothing initialised or started


def test_serve_on_a_database_url_runs_no_migration_and_no_worker(
    cli: Cli, database_url: str, empty_database_url: str, data_dir: Path
) -> None:
    # Migrations are `up`'s and `db upgrade`'s job: on an empty database serve refuses.
    empty = cli.env | {"HARTONOMOUS_DATABASE__URL": empty_database_url}
    refused = Cli(env=empty, cwd=data_dir)("serve", "--port", "0")
    assert refused.exit_code == 1
    assert "hartonomous db upgrade" in refused.stderr
    # Before any `db upgrade` made the API role there are no credentials to serve with.
    no_role = cli("serve", "--port", "0")
    assert no_role.exit_code == 1
    assert "API role" in no_role.stderr
    assert cli("db", "upgrade").exit_code == 0
    token = _issue_key(database_url, "acme")
    serve = RunningUp(cli.env, data_dir, command="serve")
    try:
        assert serve.announcement["embedded"] is False
        assert _me(serve.url, token)["tenant_id"] == "acme"
        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                names = connection.execute(
                    text(
                        "SELECT application_name, usename FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
        finally:
            engine.dispose()
        applications = {name for name, _user in names}
        assert not applications & {"hartonomous-ces-consumer", "hartonomous-sync"}
        # The API's pooled sessions run as the API role.
        assert ("hartonomous", "hartonomous_api") in {tuple(row) for row in names}
    finally:
        assert serve.stop(signal.SIGTERM) == 0


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _pause(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped: it accepts no connection meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        time.sleep(0.01)


def _statuses(url: str, token: str, count: int) -> list[int]:
    """The status of ``count`` `GET /v1/me`, each on a new connection."""
    headers = {"Authorization": f"Bearer {token}"}
    return [
        httpx.get(f"{url}/v1/me", headers=headers, timeout=30).status_code for _ in range(count)
    ]


def test_serve_with_two_workers_shares_one_port_and_one_rate_limit(
    cli: Cli, engine: Engine, database_url: str, data_dir: Path
) -> None:
    provision_api_role(engine, Settings.model_validate({"data_dir": data_dir}))  # as `up` does
    token = _issue_key(database_url, "acme")
    rule = {"name": "shared", "scope": "tenant", "permit_limit": 4, "window_seconds": 3600}
    env = cli.env | {"HARTONOMOUS_SECURITY__RATE_LIMITS": json.dumps([rule])}
    serve = RunningUp(env, data_dir, "--workers", "2", command="serve")
    try:
        first, second = workers = _children(serve.process.pid)
        # With the other worker paused, each in turn answers alone, from one limit of 4.
        _pause(second)
        assert _statuses(serve.url, token, 2) == [200, 200]
        os.kill(second, signal.SIGCONT)
        _pause(first)
        assert _statuses(serve.url, token, 3) == [200, 200, 429]
        os.kill(first, signal.SIGCONT)
        # A worker that dies is replaced; the port keeps answering.
        os.kill(first, signal.SIGKILL)
        while len(_children(serve.process.pid)) < 2 or first in _children(serve.process.pid):
            time.sleep(0.05)
        workers = _children(serve.process.pid)
        assert httpx.get(f"{serve.url}/health/ready", timeout=30).status_code == 200
    finally:
        # A supervisor killed outright cannot stop its workers: they see their stdin close.
        serve.process.kill()
        serve.process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_up_with_two_workers_configured_serves_from_them(
    cli: Cli, database_url: str, data_dir: Path
) -> None:
    up = RunningUp(cli.env | {"HARTONOMOUS_SERVER__WORKERS": "2"}, data_dir)
    try:
        workers = _children(up.process.pid)
        assert len(workers) == 2
        token = _issue_key(database_url, "acme")
        for worker in workers:  # each answers while the other is paused
            _pause(worker)
            assert _me(up.url, token)["tenant_id"] == "acme"
            os.kill(worker, signal.SIGCONT)
    finally:
        assert up.stop(signal.SIGTERM) == 0  # stops its workers (graceful, then reaped)
    assert not any(alive(pid) for pid in workers)


def test_workers_that_cannot_serve_stop_the_supervisor_with_a_clear_error(data_dir: Path) -> None:
    from hartonomous.cli.http_workers import WorkerFailedError, serve_api_workers

    # Nothing listens on port 9 (discard): each worker fails to open its platform.
    nowhere = {"url": "postgresql+psycopg://nobody@127.0.0.1:9/none", "connect_timeout_seconds": 1}
    settings = Settings.model_validate({"data_dir": data_dir, "database": nowhere})
    before = set(_children(os.getpid()))
    announced: list[str] = []
    with pytest.raises(WorkerFailedError, match="before serving"):
        serve_api_workers(settings, "127.0.0.1", 0, 2, announced.append)
    assert announced == []
    assert set(_children(os.getpid())) == before  # every worker reaped
