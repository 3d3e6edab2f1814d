"""`hartonomous principals …` and `hartonomous keys …`, run as an operator would."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from tests.conftest import Cli

from hartonomous.errors import NotAuthenticatedError
from hartonomous.security.authentication import authenticate
from hartonomous.security.roles import Role


def test_principals_and_keys_from_the_command_line(
    cli: Cli, data_dir: Path, database_url: str
) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    created = cli("--json", "principals", "create", "acme", "alice", "--role", "data-scientist")
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["role"] == "data-scientist"
    again = cli("principals", "create", "acme", "alice")
    assert again.exit_code == 1
    assert "tenant 'acme' already has principal 'alice'" in again.stderr
    ghost = cli("principals", "create", "ghost", "x")
    assert ghost.exit_code == 1
    assert "unknown tenant 'ghost'" in ghost.stderr
    # The options are the API body's members (`display_name`, `kind`), spelt as options.
    bot = cli("--json", "principals", "create", "acme", "bot", "--kind", "service",
              "--display-name", "Build bot")  # fmt: skip
    assert bot.exit_code == 0, bot.stderr
    assert json.loads(bot.stdout)["kind"] == "service"
    assert json.loads(bot.stdout)["display_name"] == "Build bot"

    issued = cli("--json", "keys", "create", "acme", "alice", "--label", "ci")
    assert issued.exit_code == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    key_id = json.loads(issued.stdout)["key_id"]
    human = cli("keys", "create", "acme", "alice")
    assert "token (shown once, not stored): hk_" in human.stdout
    engine = create_engine(database_url)
    try:
        assert authenticate(engine, token).role is Role.DATA_SCIENTIST
        listed = cli("--json", "keys", "list", "acme", "--principal", "alice")
        keys = json.loads(listed.stdout)
        assert keys[0]["key_id"] == key_id
        assert len(keys) == 2
        assert all("token" not in k and "secret_sha256" not in k for k in keys)
        assert token.split("_", 2)[2] not in listed.stdout

        rotated = cli("--json", "keys", "rotate", "acme", key_id, "--grace-seconds", "600")
        assert rotated.exit_code == 0, rotated.stderr
        answer = json.loads(rotated.stdout)
        assert answer["old"]["state"] == "active"  # for the grace period
        # Times as the API writes them (RFC 3339, UTC, Z), not str(datetime).
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", answer["old"]["revoked_at"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", answer["new"]["created_at"])
        # Rotated once: a second rotation would make a second live successor.
        again = cli("--json", "keys", "rotate", "acme", key_id)
        assert again.exit_code == 1, again.stdout
        assert json.loads(again.stderr)["code"] == "key-revocation-pending"
        authenticate(engine, token)
        revoked = cli("keys", "revoke", "acme", key_id)
        assert revoked.exit_code == 0, revoked.stderr
        assert "revoked" in revoked.stdout
        with pytest.raises(NotAuthenticatedError, match="was revoked"):
            authenticate(engine, token)
        new_token = answer["new"]["token"]
        assert authenticate(engine, new_token).principal_id == "alice"

        role = cli("--json", "principals", "set-role", "acme", "alice", "admin")
        assert json.loads(role.stdout)["role"] == "admin"
        assert authenticate(engine, new_token).role is Role.ADMIN
        assert cli("principals", "disable", "acme", "alice").exit_code == 0
        with pytest.raises(NotAuthenticatedError, match="principal 'alice' is disabled"):
            authenticate(engine, new_token)
    finally:
        engine.dispose()
    # A disabled principal's ingestion is refused before anything is written.
    (data_dir / "f.txt").write_text("hello\n")
    refused = cli("ingest", str(data_dir / "f.txt"), "--tenant", "acme", "--principal", "alice")
    assert refused.exit_code == 1
    assert "principal 'alice' of tenant 'acme' is disabled" in refused.stderr
    assert "principals enable acme alice" in refused.stderr
    listed = json.loads(cli("--json", "principals", "list", "acme").stdout)
    assert [(p["principal_id"], p["state"], p["active_keys"]) for p in listed] == [
        ("alice", "disabled", 2),
        ("bot", "active", 0),
    ]
    assert cli("principals", "enable", "acme", "alice").exit_code == 0
    accepted = cli("ingest", str(data_dir / "f.txt"), "--tenant", "acme", "--principal", "alice")
    assert accepted.exit_code == 0, accepted.stderr
    missing_key = cli("keys", "revoke", "acme", "0123456789abcdef")
    assert missing_key.exit_code == 1
    assert "no API key '0123456789abcdef'" in missing_key.stderr
    bad_expiry = cli("keys", "create", "acme", "alice", "--expires-at", "soon")
    assert bad_expiry.exit_code == 2
    assert "not an ISO-8601 time" in bad_expiry.stderr
