"""`/docs` works without Internet access: its page names only same-origin assets, and this
server serves each of them (api/docs_page.py)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CONTENT_TYPES = {
    ".js": ("application/javascript", "text/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


def test_the_docs_page_loads_only_assets_this_server_serves(api: TestClient) -> None:
    page = api.get("/docs")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle" in html
    # Every address the page loads: script and style sheet, favicon, the OpenAPI document.
    addresses = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    addresses += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
    assert len(addresses) >= 4, html
    for address in addresses:
        assert address.startswith("/"), address
        assert not address.startswith("//"), address
        answer = api.get(address)
        assert answer.status_code == 200, (address, answer.status_code)
        suffix = address[address.rfind(".") :]
        media_type = answer.headers["content-type"].split(";")[0].strip()
        assert media_type in CONTENT_TYPES[suffix], (address, media_type)
        assert answer.content, address
    assert "cdn" not in html.lower()
    # FastAPI's ReDoc page loads from a CDN too: not offered.
    assert api.get("/redoc").status_code == 404
