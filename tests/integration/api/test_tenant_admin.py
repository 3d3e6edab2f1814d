"""Tenant administration over /v1/tenants: tenants, principals, keys; what disabling stops."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from hartonomous.security.keys import KeyRevocationPendingError
from hartonomous.security.roles import Role
from hartonomous.services import Platform, tenancy

from .conftest import KEY_CACHE_SECONDS, IssueKey, ManualClock, bearer


def _admin(api: TestClient, issue_key: IssueKey) -> dict[str, str]:
    return bearer(issue_key(tenant="ops", role=Role.ADMIN, principal="root"))


def test_create_a_tenant_principal_and_key_then_call_with_it(
    api: TestClient, issue_key: IssueKey
) -> None:
    admin = _admin(api, issue_key)
    created = api.post(
        "/v1/tenants", json={"tenant_id": "acme", "display_name": "Acme"}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "active"
    again = api.post("/v1/tenants", json={"tenant_id": "acme"}, headers=admin)
    assert again.status_code == 409
    # A display name with a control character is refused, as the CLI and the admin UI refuse it.
    for name, said in (("Bell\x07", "U+0007 at character 5"), ("Nul\x00", "NUL character")):
        refused = api.post(
            "/v1/tenants", json={"tenant_id": "ctl", "display_name": name}, headers=admin
        )
        assert refused.status_code == 400, refused.text
        assert said in refused.json()["detail"]
        refused = api.post(
            "/v1/tenants/acme/principals",
            json={"principal_id": "ctl", "display_name": name},
            headers=admin,
        )
        assert refused.status_code == 400, refused.text
        assert said in refused.json()["detail"]
    assert api.get("/v1/tenants/ctl", headers=admin).status_code == 404
    principal = api.post(
        "/v1/tenants/acme/principals",
        json={"principal_id": "alice", "role": "admin"},
        headers=admin,
    )
    assert principal.status_code == 201, principal.text
    assert principal.json()["role"] == "admin"
    issued = api.post(
        "/v1/tenants/acme/keys", json={"principal_id": "alice", "label": "ci"}, headers=admin
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    key_id = issued.json()["key"]["key_id"]
    assert token.startswith(f"hk_{key_id}_")
    # The new key works (alice is an admin) and the listing never shows a secret or hash.
    listed = api.get("/v1/tenants/acme/keys", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    [key] = listed.json()["items"]
    assert key["key_id"] == key_id
    assert key["state"] == "active"
    assert key["last_used_at"] is not None
    assert set(key) == {
        "key_id",
        "tenant_id",
        "principal_id",
        "label",
        "state",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    }
    assert token.split("_", 2)[2] not in listed.text
    shown = api.get("/v1/tenants/acme", headers=admin).json()
    assert (shown["principals"], shown["display_name"]) == (1, "Acme")


def test_an_unknown_tenant_principal_or_key_in_a_path_is_a_404_naming_it(
    api: TestClient, issue_key: IssueKey
) -> None:
    admin = _admin(api, issue_key)
    for method, path, body in [
        ("GET", "/v1/tenants/ghost", None),
        ("PATCH", "/v1/tenants/ghost", {"state": "disabled"}),
        ("GET", "/v1/tenants/ghost/principals", None),
        ("POST", "/v1/tenants/ghost/principals", {"principal_id": "p"}),
        ("GET", "/v1/tenants/ghost/keys", None),
        ("POST", "/v1/tenants/ghost/keys", {"principal_id": "p"}),
        ("POST", "/v1/tenants/ghost/keys/0123456789abcdef/revoke", None),
    ]:
        answer = api.request(method, path, json=body, headers=admin)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "unknown tenant 'ghost'" in answer.json()["detail"], path
    missing = api.post("/v1/tenants/ops/keys", json={"principal_id": "nobody"}, headers=admin)
    assert missing.status_code == 404
    assert "no principal 'nobody'" in missing.json()["detail"]
    no_key = api.post("/v1/tenants/ops/keys/0123456789abcdef/rotate", headers=admin)
    assert no_key.status_code == 404
    assert "no API key '0123456789abcdef'" in no_key.json()["detail"]
    # Not shaped like a tenant id: a 422 naming the parameter, as every malformed id is.
    bad = api.get("/v1/tenants/not%20an%20id", headers=admin)
    assert bad.status_code == 422
    assert [error["field"] for error in bad.json()["errors"]] == ["path.tenant_id"]


def test_revoke_and_rotate_stop_the_old_key_now_or_after_the_grace_period(
    api: TestClient, issue_key: IssueKey
) -> None:
    admin = _admin(api, issue_key)
    first = api.post("/v1/tenants/ops/keys", json={"principal_id": "root"}, headers=admin).json()
    rotated = api.post(
        f"/v1/tenants/ops/keys/{first['key']['key_id']}/rotate",
        json={"grace_seconds": 3600},
        headers=admin,
    )
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["new"]["token"]
    assert rotated.json()["new"]["key"]["principal_id"] == "root"
    # In the grace period both keys work; the old one is still `active` until revoked_at.
    assert api.get("/v1/tenants/ops", headers=bearer(first["token"])).status_code == 200
    assert api.get("/v1/tenants/ops", headers=bearer(new_token)).status_code == 200
    assert rotated.json()["old"]["state"] == "active"
    assert rotated.json()["old"]["revoked_at"] is not None
    # Revoking now (shortening the grace) stops it at once; a second revoke is a conflict.
    revoked = api.post(
        f"/v1/tenants/ops/keys/{first['key']['key_id']}/revoke", headers=bearer(new_token)
    )
    assert revoked.json()["state"] == "revoked"
    gone = api.get("/v1/tenants/ops", headers=bearer(first["token"]))
    assert gone.status_code == 401
    assert "was revoked" in gone.json()["detail"]
    twice = api.post(
        f"/v1/tenants/ops/keys/{first['key']['key_id']}/revoke", headers=bearer(new_token)
    )
    assert twice.status_code == 409
    # Rotation without grace: the old key stops with the answer.
    now = api.post(
        f"/v1/tenants/ops/keys/{rotated.json()['new']['key']['key_id']}/rotate",
        headers=bearer(new_token),
    )
    assert now.status_code == 200
    assert api.get("/v1/tenants/ops", headers=bearer(new_token)).status_code == 401
    assert api.get("/v1/tenants/ops", headers=bearer(now.json()["new"]["token"])).status_code == 200
    past = api.post(
        "/v1/tenants/ops/keys",
        json={"principal_id": "root", "expires_at": "2000-01-01T00:00:00Z"},
        headers=admin,
    )
    assert past.status_code == 400
    assert "is not in the future" in past.json()["detail"]


def test_a_key_is_rotated_once_even_by_concurrent_rotations(
    api: TestClient, issue_key: IssueKey, platform: Platform
) -> None:
    """A rotated key (revocation pending) or one revoked with a grace period is not rotated
    again: 409 `key-revocation-pending`, no second live successor; of concurrent rotations
    exactly one succeeds."""
    admin = _admin(api, issue_key)
    for first_move in ("rotate", "revoke"):
        key = api.post("/v1/tenants/ops/keys", json={"principal_id": "root"}, headers=admin)
        key_id = key.json()["key"]["key_id"]
        moved = api.post(
            f"/v1/tenants/ops/keys/{key_id}/{first_move}",
            json={"grace_seconds": 3600},
            headers=admin,
        )
        assert moved.status_code == 200, moved.text
        before = len(api.get("/v1/tenants/ops/keys", headers=admin).json()["items"])
        for grace in (0, 600):
            again = api.post(
                f"/v1/tenants/ops/keys/{key_id}/rotate",
                json={"grace_seconds": grace},
                headers=admin,
            )
            assert again.status_code == 409, again.text
            assert again.headers["content-type"] == "application/problem+json"
            assert again.json()["code"] == "key-revocation-pending"
            assert re.search(r"stops at \d{4}-\d\d-\d\dT[\d:.]+Z", again.json()["detail"])
        assert len(api.get("/v1/tenants/ops/keys", headers=admin).json()["items"]) == before

    key_id = api.post("/v1/tenants/ops/keys", json={"principal_id": "root"}, headers=admin).json()[
        "key"
    ]["key_id"]

    def rotate(_: int) -> str:
        try:
            tenancy.rotate_key(platform, "ops", key_id, grace_seconds=600)
        except KeyRevocationPendingError:
            return "409"
        return "200"

    with ThreadPoolExecutor(6) as pool:
        outcomes = sorted(pool.map(rotate, range(6)))
    assert outcomes == ["200"] + ["409"] * 5
    keys = api.get("/v1/tenants/ops/keys?principal_id=root", headers=admin).json()["items"]
    successors = [k for k in keys if k["revoked_at"] is None and k["key_id"] != key_id]
    # The admin's own key, the first round's successor (the second revoked its key, making
    # none), and this round's one.
    assert len(successors) == 3, keys


def test_disabling_a_principal_or_tenant_stops_its_keys_at_once(
    api: TestClient, issue_key: IssueKey
) -> None:
    admin = _admin(api, issue_key)
    user = issue_key(tenant="acme", role=Role.ADMIN, principal="bob")
    assert api.get("/v1/tenants/acme", headers=bearer(user)).status_code == 200
    off = api.patch("/v1/tenants/acme/principals/bob", json={"state": "disabled"}, headers=admin)
    assert off.json()["state"] == "disabled"
    refused = api.get("/v1/tenants/acme", headers=bearer(user))
    assert refused.status_code == 401
    assert "principal 'bob' is disabled" in refused.json()["detail"]
    api.patch("/v1/tenants/acme/principals/bob", json={"state": "active"}, headers=admin)
    assert api.get("/v1/tenants/acme", headers=bearer(user)).status_code == 200
    # A role change applies to the next request.
    demoted = api.patch("/v1/tenants/acme/principals/bob", json={"role": "user"}, headers=admin)
    assert demoted.json()["role"] == "user"
    assert api.get("/v1/tenants/acme", headers=bearer(user)).status_code == 403
    api.patch("/v1/tenants/acme/principals/bob", json={"role": "admin"}, headers=admin)
    assert (
        api.patch("/v1/tenants/acme", json={"state": "disabled"}, headers=admin).status_code == 200
    )
    tenant_off = api.get("/v1/tenants/acme", headers=bearer(user))
    assert tenant_off.status_code == 401
    assert "tenant 'acme' is disabled" in tenant_off.json()["detail"]
    # The administrator of another tenant still reads it, disabled.
    assert api.get("/v1/tenants/acme", headers=admin).json()["state"] == "disabled"


def test_listings_page_with_signed_cursors(api: TestClient, issue_key: IssueKey) -> None:
    admin = _admin(api, issue_key)
    for name in ("p1", "p2", "p3"):
        api.post("/v1/tenants/ops/principals", json={"principal_id": name}, headers=admin)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/tenants/ops/principals", params=params, headers=admin).json()
        seen += [p["principal_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p1", "p2", "p3", "root"]
    first = api.get("/v1/tenants/ops/principals", params={"limit": 1}, headers=admin).json()
    tampered = first["next_cursor"][:-2] + (
        "AA" if not first["next_cursor"].endswith("AA") else "BB"
    )
    answer = api.get("/v1/tenants/ops/principals", params={"cursor": tampered}, headers=admin)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid-cursor"
    # A cursor of one tenant's listing is refused for another's.
    api.post("/v1/tenants", json={"tenant_id": "beta"}, headers=admin)
    other = api.get(
        "/v1/tenants/beta/principals", params={"cursor": first["next_cursor"]}, headers=admin
    )
    assert other.status_code == 400
    # A cursor of one principal's keys is refused for the tenant's keys (another filter).
    for _ in range(2):
        api.post("/v1/tenants/ops/keys", json={"principal_id": "p1"}, headers=admin)
    keys = api.get("/v1/tenants/ops/keys?principal_id=p1&limit=1", headers=admin).json()
    answer = api.get(f"/v1/tenants/ops/keys?cursor={keys['next_cursor']}", headers=admin)
    assert answer.status_code == 400
    assert "made for other filters" in answer.json()["detail"]


def test_last_used_at_is_kept_with_one_write_for_a_hundred_requests(
    api: TestClient, issue_key: IssueKey, engine: Engine, key_cache_clock: ManualClock
) -> None:
    token = issue_key(tenant="ops", role=Role.ADMIN, principal="root")
    key_id = token.split("_")[1]
    with engine.begin() as connection:  # count real UPDATEs of the key row
        connection.execute(text("CREATE TABLE key_writes (n int)"))
        connection.execute(
            text(
                "CREATE FUNCTION count_key_write() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO key_writes VALUES (1); RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER count_key_write AFTER UPDATE ON api_keys "
                "FOR EACH ROW EXECUTE FUNCTION count_key_write()"
            )
        )
    for _ in range(100):
        assert api.get("/v1/tenants/ops", headers=bearer(token)).status_code == 200
    with engine.connect() as connection:
        writes = connection.execute(text("SELECT count(*) FROM key_writes")).scalar_one()
        last_used = connection.execute(
            text(
                "SELECT last_used_at > now() - interval '1 minute' FROM api_keys WHERE key_id = :k"
            ),
            {"k": key_id},
        ).scalar_one()
    assert last_used is True
    assert writes == 1
    # A stored use older than a minute is renewed by the next request, and only once. Here
    # another process set it back: this one reads it once its verified key is past the
    # cache's bound (security/key_cache.py).
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE key_id = :k"
            ),
            {"k": key_id},
        )
    key_cache_clock.now += KEY_CACHE_SECONDS
    for _ in range(10):
        api.get("/v1/tenants/ops", headers=bearer(token))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM key_writes")).scalar_one() == 3


def test_malformed_ids_are_400_problems_naming_them_and_nothing_is_written(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    admin = _admin(api, issue_key)
    for method, path, body, expected in [
        # NUL in any JSON body is refused before routing, naming the member (api/middleware.py).
        ("POST", "/v1/tenants/ops/principals", {"principal_id": "a\x00b"}, "principal_id"),
        ("GET", "/v1/tenants/ops/principals/a%00b", None, "path holds a NUL character"),
        ("POST", "/v1/tenants/ops/keys", {"principal_id": "r\x00"}, "principal_id"),
        # A new principal must be addressable as one path segment (the fresh user's a/b, ..).
        ("POST", "/v1/tenants/ops/principals", {"principal_id": "a/b"}, "not a principal id"),
        ("POST", "/v1/tenants/ops/principals", {"principal_id": ".."}, "not a principal id"),
        ("POST", "/v1/tenants/ops/principals", {"principal_id": "  "}, "not a principal id"),
        ("POST", "/v1/tenants/ops/principals", {"principal_id": "a\tb"}, "not a principal id"),
    ]:
        answer = api.request(method, path, json=body, headers=admin)
        assert answer.status_code == 400, (path, answer.text)
        assert expected in answer.json()["detail"], (path, answer.text)
    for path in (
        "/v1/tenants/ops/keys/not-a-key/revoke",
        "/v1/tenants/ops/keys/ABCDEF0123456789/rotate",
    ):
        answer = api.post(path, headers=admin)
        assert answer.status_code == 422, (path, answer.text)
        assert [error["field"] for error in answer.json()["errors"]] == ["path.key_id"]
    # JSON may escape an unpaired surrogate, which no UTF-8 text holds: refused as invalid.
    surrogate = api.post(
        "/v1/tenants/ops/principals",
        content=b'{"principal_id": "a\\ud800"}',
        headers=admin | {"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422
    assert [e["field"] for e in surrogate.json()["errors"]] == ["body.principal_id"]
    with engine.connect() as connection:
        principals = connection.execute(
            text("SELECT count(*) FROM principals WHERE tenant_id = 'ops'")
        ).scalar_one()
    assert principals == 1
    # NUL is refused in every JSON member, free text included (api/middleware.py).
    labelled = api.post(
        "/v1/tenants/ops/keys", json={"principal_id": "root", "label": "a\x00b"}, headers=admin
    )
    assert labelled.status_code == 400
    assert [e["field"] for e in labelled.json()["errors"]] == ["body.label"]


def test_times_with_no_utc_value_are_refused_naming_the_field(
    api: TestClient, issue_key: IssueKey
) -> None:
    # 9999-12-31T23:59:59-14:00 is valid RFC 3339 but lies in year 10000 once in UTC.
    beyond = "9999-12-31T23:59:59-14:00"
    admin = _admin(api, issue_key)
    assert api.post("/v1/tenants", json={"tenant_id": "acme"}, headers=admin).status_code == 201
    principal = {"principal_id": "alice", "role": "user"}
    assert api.post("/v1/tenants/acme/principals", json=principal, headers=admin).is_success
    for path, body in (
        ("/v1/tenants/acme/keys", {"principal_id": "alice", "expires_at": beyond}),
        ("/v1/billing/plans", {"plan_code": "far", "name": "Far", "effective_from": beyond}),
    ):
        answer = api.post(path, json=body, headers=admin)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        detail = answer.json()["detail"]
        assert "outside the years 0001-9999" in detail, (path, detail)
        assert beyond in detail, (path, detail)
    issued = api.post("/v1/tenants/acme/keys", json={"principal_id": "alice"}, headers=admin)
    rotated = api.post(
        f"/v1/tenants/acme/keys/{issued.json()['key']['key_id']}/rotate",
        json={"expires_at": beyond},
        headers=admin,
    )
    assert rotated.status_code == 400, rotated.text
    listed = api.get("/v1/tenants/acme/keys", headers=admin).json()["items"]
    assert [key["state"] for key in listed] == ["active"]  # nothing half-written


def test_http_answers_speak_of_the_api_never_of_the_command_line(
    api: TestClient, issue_key: IssueKey
) -> None:
    """A 404 for an unknown tenant or principal names the
    things, not a `hartonomous …` command, and escape what they quote."""
    admin = bearer(issue_key(role=Role.ADMIN))
    unknown = api.get("/v1/tenants/nope", headers=admin)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "unknown tenant 'nope'"
    principal = api.patch(
        "/v1/tenants/acme/principals/ghost", headers=admin, json={"state": "disabled"}
    )
    assert principal.status_code == 404, principal.text
    assert principal.json()["detail"] == "tenant 'acme' has no principal 'ghost'"
    for answer in (unknown, principal):
        assert "hartonomous " not in answer.json()["detail"]
