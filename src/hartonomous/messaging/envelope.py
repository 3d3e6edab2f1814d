"""CloudEvents on the queue: parse and validate a message body (JSON structured mode)."""

from __future__ import annotations

import json
from typing import Any

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
_FORMAT = JSONFormat()


class MalformedMessageError(ValueError):
    """The body is not a valid CloudEvent; the message says what is wrong with it."""


def to_body(event: CloudEvent) -> dict[str, Any]:
    """The structured-mode JSON object stored in `broker_messages.body`."""
    body: dict[str, Any] = json.loads(_FORMAT.write(event))
    return body


def parse_cloudevent(body: Any) -> CloudEvent:
    """A CloudEvent from a stored body: an object, or a JSON text holding one."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise MalformedMessageError(f"malformed CloudEvent: invalid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise MalformedMessageError(
            f"malformed CloudEvent: expected a JSON object, got {type(body).__name__}"
        )
    missing = [name for name in REQUIRED_ATTRIBUTES if not body.get(name)]
    if missing:
        raise MalformedMessageError(
            "malformed CloudEvent: missing required attribute(s) " + ", ".join(missing)
        )
    if body["specversion"] != "1.0":
        raise MalformedMessageError(
            f"malformed CloudEvent: unsupported specversion {body['specversion']!r}"
        )
    try:
        event = _FORMAT.read(None, json.dumps(body))
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise MalformedMessageError(f"malformed CloudEvent: {exc}") from None
    assert isinstance(event, CloudEvent)
    return event
