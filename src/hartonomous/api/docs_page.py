"""The interactive API documentation (`/docs`, Swagger UI) served whole by this server.

FastAPI's default page loads Swagger UI's script and style sheet from a public CDN, so on a
machine without Internet access (an air-gapped deployment) it stays blank. Here the page is
FastAPI's own (``get_swagger_ui_html``) with every asset at a same-origin URL under
``DOCS_ASSETS`` (``/docs/assets/``), served from the Swagger UI distribution that the
`swagger-ui-py` package ships (its ``static`` folder: ``swagger-ui-bundle.js``,
``swagger-ui.css``, favicons). FastAPI's ReDoc page (`/redoc`, also from a CDN) is not
offered. docs/api.md, "OpenAPI".
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_ASSETS", "DOCS_PATH", "install_docs_page"]

DOCS_PATH = "/docs"
DOCS_ASSETS = "/docs/assets"
_SWAGGER_UI = Path(swagger_ui.__file__).parent / "static"


def install_docs_page(app: FastAPI, title: str) -> None:
    """Serve `/docs` (Swagger UI over ``app.openapi_url``) and its assets from this server.
    Create ``app`` with ``docs_url=None`` and ``redoc_url=None``."""
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{title} - Swagger UI",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )
    html = bytes(page.body)

    async def docs() -> HTMLResponse:
        return HTMLResponse(html)

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_ASSETS, StaticFiles(directory=_SWAGGER_UI), name="docs-assets")
