"""Disabling a principal or tenant ends its open job event streams (docs/security.md): a last
`closed` event with the 401's code and detail, then the end of the stream. On a real server,
since a stream that never ends cannot be read through the in-process test client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from hartonomous.ingest.jobs import job_lease
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer
from .data_api_support import HANG_GUARD_SECONDS
from .real_server import ServerOutput, real_server


def _events(lines: Iterator[str]) -> Iterator[tuple[str, object]]:
    """(event, data) of each server-sent event; a hang guard, not a timing, on the wait."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    name, data = "", ""
    for line in lines:
        assert time.monotonic() < deadline, "the stream neither ended nor sent what was awaited"
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and name:
            yield name, json.loads(data)
            name, data = "", ""


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, ServerOutput]]:
    with real_server(database_url, tmp_path) as running:
        yield running


@pytest.mark.parametrize("disabled", ["principal", "tenant"])
def test_an_open_event_stream_ends_when_its_principal_or_tenant_is_disabled(
    server: tuple[str, Path, ServerOutput], issue_key: IssueKey, engine: Engine, disabled: str
) -> None:
    url, _, _ = server
    admin = bearer(issue_key(tenant="ops", role=Role.ADMIN, principal="root"))
    token = issue_key(tenant="acme", role=Role.USER, principal="alice")
    target = "/v1/tenants/acme" + ("/principals/alice" if disabled == "principal" else "")
    # A job that stays running while the test holds its lease: its stream would never end.
    with (
        job_lease(engine, "acme", "alice", ["a.txt"]) as job_id,
        httpx.Client(base_url=url, timeout=HANG_GUARD_SECONDS) as client,
        client.stream("GET", f"/v1/jobs/{job_id}/events", headers=bearer(token)) as stream,
    ):
        assert stream.status_code == 200
        events = _events(stream.iter_lines())
        assert next(events)[0] == "progress"
        changed = client.patch(target, json={"state": "disabled"}, headers=admin)
        assert changed.status_code == 200, changed.text
        rest = list(events)  # ends: the server closed the stream
    assert [name for name, _ in rest] == ["closed"]
    assert rest[0][1] == {
        "code": f"{disabled}-disabled",
        "detail": rest[0][1]["detail"],  # type: ignore[index]
    }
    assert "is disabled" in rest[0][1]["detail"]  # type: ignore[index]
