"""Shared pieces of the fault suite: a real `up`, uploads through its API, and the store's
exactly-once checks (docs/operations.md, "Fault suite")."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from tests.integration.api.conftest import UNLIMITED
from tests.integration.test_up import RunningUp

from hartonomous.security import create_api_key, ensure_principal, ensure_tenant

# Hang guards, not expectations: the machine is shared with other test sessions.
HANG_GUARD_SECONDS = 180


def up_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for an `up` the tests poll and upload to without meeting the rate limit."""
    return {**env, "HARTONOMOUS_SECURITY__RATE_LIMITS": json.dumps([UNLIMITED])}


def running_up(env: dict[str, str], cwd: Path) -> RunningUp:
    """`up` with its log in ``cwd/up.stderr`` (a fault makes it log tracebacks)."""
    return RunningUp(up_env(env), cwd, log=cwd / "up.stderr")


def wait_until(
    condition: Callable[[], object], what: str, state: Callable[[], object] | None = None
) -> None:
    """Poll ``condition``; the hang guard's failure shows ``state()`` when given."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            shown = "" if state is None else f": {state()}"
            pytest.fail(f"hang guard: {what} did not happen{shown}")
        time.sleep(0.2)


def scalar(engine: Engine, sql: str, **params: object) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


def bearer(engine: Engine, tenant: str) -> dict[str, str]:
    """A user key of ``tenant`` (made with its principal `alice`) as request headers."""
    with engine.begin() as connection:
        ensure_tenant(connection, tenant, f"Tenant {tenant}")
        ensure_principal(connection, tenant, "alice", "Alice", "user")
        token = create_api_key(connection, tenant, "alice", "fault suite")
    return {"Authorization": f"Bearer {token}"}


def upload(url: str, headers: dict[str, str], files: dict[str, bytes]) -> httpx.Response:
    """POST /v1/ingest with ``files`` (name -> content) as one job."""
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files.items()]
    return httpx.post(f"{url}/v1/ingest", files=parts, headers=headers, timeout=60)


def job_status(url: str, headers: dict[str, str], job_id: str) -> str:
    answer = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


class Client(threading.Thread):
    """Uploads a small job (two text files), then reads its status, again and again until
    ``stop`` is set: ingestion running throughout a fault."""

    def __init__(self, url: str, headers: dict[str, str], tag: str = "doc") -> None:
        super().__init__()
        self.url, self.headers, self.tag = url, headers, tag
        self.stop = threading.Event()
        # (what, HTTP status, problem code); status 0: no answer at all.
        self.answers: list[tuple[str, int, str | None]] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            files = {f"{self.tag}-{n}-{i}.txt": f"{self.tag} {n}.{i}.\n".encode() for i in (1, 2)}
            try:
                sent = upload(self.url, self.headers, files)
                self._note("upload", sent)
                if sent.status_code == 202:
                    location = sent.headers["location"]
                    read = httpx.get(self.url + location, headers=self.headers, timeout=60)
                    self._note("job", read)
            except httpx.TransportError:
                self.answers.append(("no answer", 0, None))

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.join(HANG_GUARD_SECONDS)

    def _note(self, what: str, answer: httpx.Response) -> None:
        code: str | None = None
        if answer.status_code >= 400:
            # A problem body's code; a body that is not one is recorded as such (and fails).
            is_problem = answer.headers.get("content-type", "").startswith("application/")
            code = str(answer.json().get("code")) if is_problem else "not a problem body"
        self.answers.append((what, answer.status_code, code))

    def accepted(self) -> int:
        return sum(1 for what, status, _ in self.answers if (what, status) == ("upload", 202))


# Every holding billed exactly once and projected once; nothing left in the queue or set aside.
EXACTLY_ONCE = {
    "holdings": "SELECT count(*) FROM holdings",
    "ledger rows": "SELECT count(*) FROM billing_usage_ledger",
    "distinct ledger event ids": "SELECT count(DISTINCT event_id) FROM billing_usage_ledger",
    "holdings in the SQL graph": (
        "SELECT count(*) FROM graph_edges WHERE edge_id LIKE 'OWNS:holding:%'"
    ),
}


def exactly_once_counts(engine: Engine) -> dict[str, int]:
    return {name: int(scalar(engine, sql)) for name, sql in EXACTLY_ONCE.items()}


def drained(engine: Engine) -> bool:
    """Every holding billed, nothing queued: the sync side has caught up with ingestion."""
    counts = exactly_once_counts(engine)
    return (
        counts["ledger rows"] >= counts["holdings"]
        and scalar(engine, "SELECT count(*) FROM broker_messages") == 0
    )
