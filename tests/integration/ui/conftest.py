"""The admin UI over a fresh database: the API's fixtures (tests/integration/api/conftest.py)
and ``sign_in(client, token, next=None)``, which signs a client in as a browser would."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from tests.integration.api.conftest import api, api_engine, issue_key, platform, settings

__all__ = ["api", "api_engine", "csrf_of", "issue_key", "platform", "settings", "sign_in"]

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, token: str, next_page: str | None = None) -> str:
    """Signs ``client`` in with ``token``; returns the page it was sent to."""
    form = client.get("/ui/sign-in", params={"next": next_page} if next_page else None)
    assert form.status_code == 200
    answer = client.post(
        "/ui/sign-in",
        data={"api_key": token, "csrf_token": csrf_of(form.text), "next": next_page or ""},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


@pytest.fixture
def client(api: TestClient) -> TestClient:
    return api
