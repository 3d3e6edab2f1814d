"""The admin UI over a fresh database: the API's fixtures (tests/integration/api/conftest.py)
and ``sign_in(client, token, next=None)``, which signs a client in as a browser would."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from tests.integration.api.conftest import api, api_engine, issue_key, platform, settings

from .browser import browser, page, playwright, ui_server

__all__ = [
    "api",
    "api_engine",
    "browser",
    "csrf_of",
    "issue_key",
    "page",
    "platform",
    "playwright",
    "settings",
    "sign_in",
    "ui_server",
]

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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keeps each phase's report on the test item (``rep_call``), for the screenshot on
    failure taken by tests/integration/ui/browser.py's ``page`` fixture."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
