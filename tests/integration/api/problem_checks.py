"""Checks of problem+json answers (RFC 9457, docs/api.md) shared by the API tests."""

from __future__ import annotations

from typing import Any

from hartonomous.api.problems import PROBLEM_MEDIA_TYPE


def problem(answer: Any, status: int) -> dict[str, Any]:
    """The answer's problem body, after checking its status and media type."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


def fields(body: dict[str, Any]) -> list[str]:
    """The fields a validation problem names (``errors[].field``)."""
    return [error["field"] for error in body.get("errors", [])]
