"""CloudEvents on the queue: parse and validate a message body (JSON structured mode).

Event data keeps its numbers exact: a body read from the queue holds `Decimal`s for JSON
numbers with a fraction or exponent, and they stay `Decimal`s in the event's data.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse  # type: ignore[import-untyped]

from hartonomous.json_types import exact_loads
from hartonomous.storable import TOO_DEEP, NotStorableError, loads_storable

REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
_FORMAT = JSONFormat()


class MalformedMessageError(ValueError):
    """The body is not a valid CloudEvent; the message says what is wrong with it."""


class UnreadableBody(str):
    """A received body that is not storable JSON (`storable.loads_storable`): its text made
    storable (`storable.storable_text`), and ``problem``, why it could not be read (not
    UTF-8, not JSON, nested too deep, NaN, NUL...). `parse_cloudevent` refuses it with that
    reason, so it is dead-lettered as `malformed_event` (docs/messaging.md)."""

    problem: str

    def __new__(cls, text: str, problem: str) -> UnreadableBody:
        body = super().__new__(cls, text)
        body.problem = problem
        return body


def loads_stored(data: bytes | str) -> Any:
    """psycopg's ``json``/``jsonb`` loader wherever a stored value is read on the event path
    (queued bodies, dead letters, graph rows): the value as `json_types.exact_loads` reads it
    (numbers exact), or, for one nested deeper than the parser's recursion limit (Python's
    parser follows about 1,000 levels; ``jsonb`` takes about 16,300 of arrays at PostgreSQL's
    default ``max_stack_depth``), an `UnreadableBody`
    holding its JSON text, never a `RecursionError` that would fail every read of its batch.
    A message body so read is dead-lettered as `malformed_event` (docs/messaging.md)."""
    try:
        return exact_loads(data)
    except RecursionError:
        text = data.decode() if isinstance(data, bytes) else data
        return UnreadableBody(text, TOO_DEEP)


def to_body(event: CloudEvent) -> dict[str, Any]:
    """The structured-mode JSON object stored in `broker_messages.body`."""
    body: dict[str, Any] = json.loads(_FORMAT.write(event))
    return body


def parse_cloudevent(body: Any) -> CloudEvent:
    """A CloudEvent from a stored body: an object, or a JSON text holding one."""
    if isinstance(body, UnreadableBody):
        raise MalformedMessageError(f"malformed CloudEvent: {body.problem}")
    if isinstance(body, str):
        try:
            body = loads_storable(body.encode(errors="surrogatepass"))
        except NotStorableError as exc:
            raise MalformedMessageError(f"malformed CloudEvent: {exc}") from None
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
    # The attributes as the SDK's JSON reader gives them (a number with a fraction is a float
    # there; `time` parsed with the reader's own `isoparse`), validated by the SDK's event, built
    # once: the reader itself would need the attributes written out and parsed again. The data
    # is taken as it is, since the reader would turn exact numbers into floats.
    attributes = {
        k: float(v) if isinstance(v, Decimal) else v
        for k, v in body.items()
        if k not in ("data", "data_base64")
    }
    data: Any = body.get("data")
    try:
        if isinstance(attributes.get("time"), str):
            attributes["time"] = isoparse(attributes["time"])
        if data is None and body.get("data_base64") is not None:
            data = base64.b64decode(body["data_base64"], validate=True)
        event = CloudEvent(attributes, data)
    except (BaseCloudEventException, ValueError, TypeError) as exc:
        raise MalformedMessageError(f"malformed CloudEvent: {exc}") from None
    return event
