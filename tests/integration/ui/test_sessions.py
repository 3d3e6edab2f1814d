"""Sign-in, sessions and CSRF of the admin UI over a real database (docs/admin-ui.md)."""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi.testclient import TestClient
from tests.integration.api.conftest import IssueKey

from hartonomous.security.roles import Role
from hartonomous.services import Platform, tenancy
from hartonomous.services.web_sessions import session_signing_key
from hartonomous.ui.sessions import SESSION_COOKIE, SESSION_SECONDS, Session, SessionCodec

from .conftest import csrf_of, sign_in


def test_a_page_without_a_session_goes_to_sign_in_and_back_to_it(
    client: TestClient, issue_key: IssueKey
) -> None:
    token = issue_key("acme", Role.ADMIN)
    first = client.get("/ui/dead-letters?replayed=true", follow_redirects=False)
    assert first.status_code == 303
    wanted = quote("/ui/dead-letters?replayed=true", safe="")
    assert first.headers["location"] == f"/ui/sign-in?next={wanted}"
    assert sign_in(client, token, "/ui/dead-letters?replayed=true") == (
        "/ui/dead-letters?replayed=true"
    )
    cookie = next(c for c in client.cookies.jar if c.name == SESSION_COOKIE)
    assert cookie.path == "/ui"
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "strict"
    assert not cookie.secure  # plain HTTP here; Secure when the request came over HTTPS
    page = client.get("/ui/dead-letters?replayed=true")
    assert page.status_code == 200
    assert "Showing replayed letters too" in page.text


def test_the_session_cookie_never_holds_the_key_secret(
    client: TestClient, issue_key: IssueKey
) -> None:
    token = issue_key("acme", Role.USER)
    sign_in(client, token)
    secret = token.split("_", 2)[2]
    assert secret not in (client.cookies.get(SESSION_COOKIE) or "")


def test_a_wrong_or_empty_key_is_refused_beside_the_field(
    client: TestClient, issue_key: IssueKey
) -> None:
    token = issue_key("acme", Role.USER)
    for offered, says in (("", "Enter an API key"), (token[:-2] + "zz", "is not known")):
        form = client.get("/ui/sign-in")
        answer = client.post(
            "/ui/sign-in", data={"api_key": offered, "csrf_token": csrf_of(form.text)}
        )
        assert answer.status_code == 400
        assert 'id="api_key-error"' in answer.text
        assert says in answer.text
        assert SESSION_COOKIE not in client.cookies


def test_an_open_redirect_is_not_followed(client: TestClient, issue_key: IssueKey) -> None:
    token = issue_key("acme", Role.USER)
    assert sign_in(client, token, "https://elsewhere.example/") == "/ui/dashboard"
    assert sign_in(client, token, "//elsewhere.example/ui/") == "/ui/dashboard"
    assert sign_in(client, token, "/ui/../evil") == "/ui/dashboard"  # a browser's /evil


def test_a_revoked_key_ends_the_session(
    client: TestClient, issue_key: IssueKey, platform: Platform
) -> None:
    token = issue_key("acme", Role.ADMIN)
    sign_in(client, token)
    assert client.get("/ui/dashboard").status_code == 200
    key_id = token.split("_")[1]
    tenancy.revoke_key(platform, "acme", key_id)
    after = client.get("/ui/tenants", follow_redirects=False)
    assert after.status_code == 303
    assert after.headers["location"] == f"/ui/sign-in?next={quote('/ui/tenants', safe='')}"


def test_a_disabled_tenant_ends_its_sessions(
    client: TestClient, issue_key: IssueKey, platform: Platform
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    tenancy.set_tenant_state(platform, "acme", "disabled")
    assert client.get("/ui/dashboard", follow_redirects=False).status_code == 303


def test_an_expired_or_altered_session_signs_in_again_and_returns(
    client: TestClient, issue_key: IssueKey, platform: Platform
) -> None:
    token = issue_key("acme", Role.ADMIN)
    key_id = token.split("_")[1]
    issued_long_ago = SessionCodec(
        session_signing_key(platform),
        SESSION_SECONDS,
        clock=lambda: time.time() - SESSION_SECONDS - 60,
    ).dumps(Session(key_id, "acme", "x" * 43))
    fresh = SessionCodec(session_signing_key(platform), SESSION_SECONDS).dumps(
        Session(key_id, "acme", "x" * 43)
    )
    for cookie in (issued_long_ago, fresh[:-3] + "AAA"):
        client.cookies.set(SESSION_COOKIE, cookie, path="/ui")
        answer = client.get("/ui/tenants", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].endswith(quote("/ui/tenants", safe=""))
    client.cookies.set(SESSION_COOKIE, fresh, path="/ui")
    assert client.get("/ui/tenants").status_code == 200  # the same key, within its age
    client.cookies.clear()
    assert sign_in(client, token, "/ui/tenants") == "/ui/tenants"


def test_a_missing_or_forged_csrf_token_is_refused(client: TestClient, issue_key: IssueKey) -> None:
    # The sign-in form: the token must match the cookie set with the form.
    client.get("/ui/sign-in")
    token = issue_key("acme", Role.ADMIN)
    for data in ({"api_key": token}, {"api_key": token, "csrf_token": "forged"}):
        refused = client.post("/ui/sign-in", data=data, follow_redirects=False)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
        assert SESSION_COOKIE not in client.cookies
    sign_in(client, token)
    # A signed-in form: creating a tenant without the session's token creates nothing.
    for data in ({"tenant_id": "forged1"}, {"tenant_id": "forged1", "csrf_token": "x" * 43}):
        refused = client.post("/ui/tenants", data=data, follow_redirects=False)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert client.get("/ui/tenants/forged1").status_code == 404
    # htmx sends it as a header: that is accepted.
    csrf = csrf_of(client.get("/ui/tenants").text)
    made = client.post(
        "/ui/tenants",
        data={"tenant_id": "madeok"},
        headers={"X-CSRF-Token": csrf},
        follow_redirects=False,
    )
    assert made.status_code == 303


def test_a_user_key_cannot_open_admin_pages(client: TestClient, issue_key: IssueKey) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    dashboard = client.get("/ui/dashboard")
    assert dashboard.status_code == 200
    assert "/ui/dead-letters" not in dashboard.text  # no link to what it may not open
    assert "Queue depth" not in dashboard.text  # platform figures are an operator's
    for path in ("/ui/dead-letters", "/ui/dead-letters/1", "/ui/tenants", "/ui/tenants/acme"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "needs the &#39;admin&#39; role" in answer.text
    csrf = csrf_of(dashboard.text)
    switched = client.post("/ui/tenant", data={"tenant_id": "acme", "csrf_token": csrf})
    assert switched.status_code == 403


def test_an_admin_switches_tenant_and_an_unknown_one_is_named(
    client: TestClient, issue_key: IssueKey
) -> None:
    issue_key("globex", Role.USER)
    sign_in(client, issue_key("acme", Role.ADMIN))
    csrf = csrf_of(client.get("/ui/dashboard").text)
    unknown = client.post("/ui/tenant", data={"tenant_id": "nosuch", "csrf_token": csrf})
    assert unknown.status_code == 400
    assert 'id="tenant_id-error"' in unknown.text
    assert "nosuch" in unknown.text
    for bad in ("Bad Id!", "y" * 5000):  # malformed: beside the field, echoed cut short
        refused = client.post("/ui/tenant", data={"tenant_id": bad, "csrf_token": csrf})
        assert refused.status_code == 400
        assert '<p class="field-error" id="tenant_id-error">' in refused.text
        assert "is not a tenant id" in refused.text
    assert "(5000 characters)" in refused.text
    assert refused.text.count("y" * 5000) == 1  # in the field's value, not the message
    # `next` is normalised and kept within /ui/ (a browser resolves /ui/../x to /x).
    for wanted in ("/ui/../evil", "/ui/%2e%2e/evil", "/ui/..\\evil", "https://evil.example/ui/"):
        moved = client.post(
            "/ui/tenant",
            data={"tenant_id": "acme", "csrf_token": csrf, "next": wanted},
            follow_redirects=False,
        )
        assert moved.headers["location"] == "/ui/dashboard", wanted
    client.post(
        "/ui/tenant", data={"tenant_id": "globex", "csrf_token": csrf, "next": "/ui/dashboard"}
    )
    assert "Tenant <strong>globex</strong>" in client.get("/ui/dashboard").text


def test_over_https_the_session_cookie_is_secure(client: TestClient, issue_key: IssueKey) -> None:
    secure = TestClient(client.app, base_url="https://testserver")
    sign_in(secure, issue_key("acme", Role.USER))
    cookie = next(c for c in secure.cookies.jar if c.name == SESSION_COOKIE)
    assert cookie.secure
    assert secure.get("/ui/dashboard").status_code == 200


def test_signing_out_ends_the_session(client: TestClient, issue_key: IssueKey) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    csrf = csrf_of(client.get("/ui/dashboard").text)
    out = client.post("/ui/sign-out", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/ui/sign-in"
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/ui/dashboard", follow_redirects=False).status_code == 303


def test_unknown_addresses_and_wrong_methods_answer_the_uis_error_page(
    client: TestClient, issue_key: IssueKey
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    for path, status, says in (
        ("/ui/no/such/page", 404, "there is no page at /ui/no/such/page"),
        ("/ui/sign-out", 405, "/ui/sign-out does not take GET"),
        ("/ui/search/by-example", 405, "/ui/search/by-example does not take GET"),
    ):
        answer = client.get(path)
        assert answer.status_code == status, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert f'<p class="error" role="alert">{says}' in answer.text, answer.text
    # The icon ships in the package and every page names it.
    assert 'rel="icon" href="/ui/static/favicon.svg"' in client.get("/ui/dashboard").text
    icon = client.get("/ui/static/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")


def test_a_query_the_database_cannot_hold_answers_the_uis_error_page(
    client: TestClient, issue_key: IssueKey
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    for path, says in (
        ("/ui/search?q=a%00b", "query parameter &#39;q&#39; holds a NUL character"),
        ("/ui/ingest?cursor=%FF", "cursor"),
        ("/ui/dead-letters?x=%00", "holds a NUL character"),
    ):
        answer = client.get(path)
        assert answer.status_code == 400, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert '<p class="error" role="alert">' in answer.text, answer.text
        assert says in answer.text, answer.text
    # The API keeps answering problem+json for the same fault.
    api = client.get("/v1/holdings?cursor=%00")
    assert api.status_code == 400
    assert api.headers["content-type"].startswith("application/problem+json")
