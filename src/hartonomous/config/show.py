"""Rendering of effective settings with secrets masked (`config show`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hartonomous.config.settings import Settings

MASK = "***"


def masked_url(url: str) -> str:
    """The URL with its password replaced, for logs and output."""
    if not url:
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        return MASK
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def effective_settings(settings: Settings) -> dict[str, Any]:
    """JSON-ready settings; SecretStr fields render masked, database URLs lose their password."""
    values: dict[str, Any] = settings.model_dump(mode="json")
    values["database"]["url"] = masked_url(settings.database.url)
    values["database"]["api_url"] = masked_url(settings.database.api_url)
    if settings.neo4j.password.get_secret_value():
        values["neo4j"]["password"] = MASK
    return values
