"""Rendering a template with what every page needs: the viewer, its CSRF token, the root."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["render", "templates"]

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``templates/name`` rendered; the viewer (``request.state.viewer``, when signed in) and
    ``root`` (the UI's mount path) are always in the context. Autoescaping is on."""
    values: dict[str, Any] = {
        "root": "/ui",
        "viewer": getattr(request.state, "viewer", None),
        **(context or {}),
    }
    return templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=headers
    )
