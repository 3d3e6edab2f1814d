"""A real server of the app and Debian's chromium driven by Playwright, for the browser tests.

``ui_server`` serves ``create_app(platform)`` with uvicorn on a free port in a thread;
``page`` is a fresh browser context's page whose screenshot is saved when its test fails
(the path is printed). ``check_accessibility(page)`` runs axe-core (vendored here, see
vendor/) with the WCAG 2.1 A and AA rules and fails naming each violation. With
``HARTONOMOUS_UI_SCREENSHOTS=1`` ``document(page, name)`` writes docs/images/ui-<name>.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from hartonomous.api import create_app
from hartonomous.services import Platform

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DOCS_IMAGES = Path(__file__).parents[3] / "docs" / "images"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def chromium_path() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium package is not installed (./dev setup installs it)"
    return found


# Module-scoped, not session-scoped: sync Playwright keeps an asyncio loop running on the
# main thread while it is open, and a later test calling anyio.run in the same process would
# fail ("Already running asyncio in this thread"). One module holds the browser tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: the tests may run as root, where chromium's sandbox cannot start.
    launched = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
    )
    yield launched
    launched.close()


@pytest.fixture
def ui_server(platform: Platform) -> Iterator[str]:
    """The base URL of a uvicorn server of the app (API and UI) over ``platform``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(
        uvicorn.Config(create_app(platform), log_config=None, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)
    sock.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shot = tmp_path / f"{request.node.name}.png"
        opened.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failed test: {shot}")
    context.close()


def check_accessibility(page: Page) -> None:
    """Fails naming every WCAG 2.1 A/AA violation axe-core finds on the page as it is."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async (tags) => { const r = await axe.run(document, "
        "{runOnly: {type: 'tag', values: tags}}); return {passes: r.passes.length, "
        "violations: r.violations.map(v => "
        "`${v.id}: ${v.help} (${v.nodes.map(n => n.target).join(' | ')})`)}; }",
        WCAG_21_AA,
    )
    assert found["passes"] > 0, f"{page.url}: axe-core checked nothing"
    assert found["violations"] == [], f"{page.url}: {found['violations']}"


def document(page: Page, name: str) -> None:
    """With ``HARTONOMOUS_UI_SCREENSHOTS=1``: the page as docs/images/ui-<name>.png."""
    if os.environ.get("HARTONOMOUS_UI_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / f"ui-{name}.png"), full_page=True)
