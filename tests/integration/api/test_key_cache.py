"""Verified keys kept in-process (security/key_cache.py): a change made through this process
applies to the next request; one made elsewhere (another process, the CLI) within the bound.

The cache's clock is a manual one, so "within the bound" is a step of the clock, not a wait.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from hartonomous.security.key_cache import VerifiedKeyCache
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.tenancy import revoke_key, update_principal

from .conftest import KEY_CACHE_SECONDS, IssueKey, ManualClock, bearer


def _key_id(token: str) -> str:
    return token.split("_")[1]


def test_another_process_revoking_or_disabling_applies_within_the_bound(
    api: TestClient, issue_key: IssueKey, engine: Engine, key_cache_clock: ManualClock
) -> None:
    revoked = issue_key(tenant="acme", role=Role.USER, principal="alice")
    disabled = issue_key(tenant="acme", role=Role.USER, principal="bob")
    for token in (revoked, disabled):
        assert api.get("/v1/me", headers=bearer(token)).status_code == 200
    # As `hartonomous keys revoke` / `principals disable` in another process would.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE key_id = :k"),
            {"k": _key_id(revoked)},
        )
        connection.execute(
            text("UPDATE principals SET is_active = false WHERE principal_id = 'bob'")
        )
    # Within the bound the verified keys are still admitted (docs/security.md says so) ...
    key_cache_clock.now += KEY_CACHE_SECONDS - 0.5
    for token in (revoked, disabled):
        assert api.get("/v1/me", headers=bearer(token)).status_code == 200
    # ... and once it has passed, the next request reads the change.
    key_cache_clock.now += 0.5
    gone = api.get("/v1/me", headers=bearer(revoked))
    assert gone.status_code == 401
    assert "was revoked" in gone.json()["detail"]
    off = api.get("/v1/me", headers=bearer(disabled))
    assert off.status_code == 401
    assert "principal 'bob' is disabled" in off.json()["detail"]


def test_a_disabled_tenant_or_principal_behind_a_kept_key_is_a_401_never_a_409(
    api: TestClient, issue_key: IssueKey, engine: Engine, key_cache_clock: ManualClock
) -> None:
    """Disabled by another process within the bound: a route that finds the caller's tenant
    or principal disabled answers the authentication failure (401, `WWW-Authenticate`, a code
    saying which), and the key is looked up, and refused, from its next request on."""
    tenant_key = issue_key(tenant="acme", role=Role.USER, principal="frank")
    principal_key = issue_key(tenant="globex", role=Role.USER, principal="grace")
    assert api.get("/v1/holdings", headers=bearer(tenant_key)).status_code == 200
    assert api.get("/v1/me", headers=bearer(principal_key)).status_code == 200
    with engine.begin() as connection:
        connection.execute(text("UPDATE tenants SET is_active = false WHERE tenant_id = 'acme'"))
        connection.execute(
            text("UPDATE principals SET is_active = false WHERE principal_id = 'grace'")
        )
    key_cache_clock.now += 1  # well within the bound: both keys are still kept
    for token, method, path, code, named in (
        (tenant_key, "GET", "/v1/holdings", "tenant-disabled", "tenant 'acme' is disabled"),
        (tenant_key, "POST", "/v1/search", "tenant-disabled", "tenant 'acme' is disabled"),
        (principal_key, "POST", "/v1/ingest", "principal-disabled", "'grace' is disabled"),
    ):
        sent: dict[str, object] = {"json": {"query": "anything"}} if path == "/v1/search" else {}
        if path == "/v1/ingest":
            sent = {"files": [("files", ("a.txt", b"a file", "text/plain"))]}
        answer = api.request(method, path, headers=bearer(token), **sent)  # type: ignore[arg-type]
        assert answer.status_code == 401, (path, answer.text)
        assert answer.headers["www-authenticate"] == 'Bearer realm="hartonomous"'
        assert answer.json()["code"] == code
        assert named in answer.json()["detail"]
        # Dropped from the cache: refused at authentication from now on, on any route.
        again = api.get("/v1/me", headers=bearer(token))
        assert again.status_code == 401
        assert again.json()["code"] == code


def test_a_change_through_this_process_applies_to_the_next_request(
    api: TestClient, issue_key: IssueKey, platform: Platform, key_cache_clock: ManualClock
) -> None:
    token = issue_key(tenant="acme", role=Role.ADMIN, principal="carol")
    other = issue_key(tenant="acme", role=Role.USER, principal="dave")
    assert api.get("/v1/tenants/acme", headers=bearer(token)).status_code == 200
    assert api.get("/v1/me", headers=bearer(other)).status_code == 200
    # The services the CLI and the admin routes call; the clock does not move.
    update_principal(platform, "acme", "carol", role=Role.USER)
    assert api.get("/v1/tenants/acme", headers=bearer(token)).status_code == 403
    revoke_key(platform, "acme", _key_id(other))
    gone = api.get("/v1/me", headers=bearer(other))
    assert gone.status_code == 401
    assert "was revoked" in gone.json()["detail"]


def test_a_kept_key_still_checks_the_secret_presented(
    api: TestClient, issue_key: IssueKey, key_cache_clock: ManualClock
) -> None:
    token = issue_key(tenant="acme", role=Role.USER, principal="erin")
    assert api.get("/v1/me", headers=bearer(token)).status_code == 200
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused = api.get("/v1/me", headers=bearer(forged))
    assert refused.status_code == 401
    assert f"API key {_key_id(token)} is not known" in refused.json()["detail"]
    assert api.get("/v1/me", headers=bearer(token)).status_code == 200


def test_a_bound_of_zero_looks_every_key_up(
    api: TestClient, issue_key: IssueKey, engine: Engine, platform: Platform
) -> None:
    api.app.state.key_cache = VerifiedKeyCache(platform.maintenance_engine, 0)  # type: ignore[attr-defined]
    token = issue_key(tenant="acme", role=Role.USER, principal="frank")
    assert api.get("/v1/me", headers=bearer(token)).status_code == 200
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE key_id = :k"),
            {"k": _key_id(token)},
        )
    assert api.get("/v1/me", headers=bearer(token)).status_code == 401
