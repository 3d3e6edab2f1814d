"""Usage events from other services: CloudEvents 1.0 in structured JSON mode, each one usage
of one operation by the caller's tenant (docs/billing.md, "Usage events").

An event's ``type`` names the operation (one of the tenant's plan's operations), its ``time``
decides the billing period, and its ``data`` is a JSON object whose ``units`` member (a JSON
number or a decimal string, read as ``Decimal`` from the JSON text, never a float) is the
usage; the other members of ``data`` are the meter's attributes (multiplier dimensions such as
``generation`` or ``complexity``, docs/billing.md "Meter"). Events are idempotent on the
tenant, ``source`` and ``id``.

Pure: no database. The endpoint checks each event with `parse_usage_event`; the sync worker
parses the queued body again with the same function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from hartonomous.billing.numeric import LEDGER_PRECISION, LEDGER_SCALE
from hartonomous.instants import in_utc

# The broker `message_type` of a queued usage event: the sync worker dispatches on it.
USAGE_EVENT_MESSAGE_TYPE = "io.hartonomous.usage-event"
# How far ahead of the receiving clock an event's `time` may be (clock skew between services).
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Column sizes of `billing_usage_event_receipts` and of the ledger's `operation`.
MAX_ID_CHARACTERS = 256
MAX_SOURCE_CHARACTERS = 512
MAX_TYPE_CHARACTERS = 128
# `data` members that the meter would read as units: the event's `units` decides alone.
_UNIT_KEYS = frozenset({"units", "usage_units", "usage", "token_count", "duration_seconds"})
_LEDGER_LIMIT = Decimal(10) ** (LEDGER_PRECISION - LEDGER_SCALE)
_JSON_CONTENT_TYPES = ("application/json", "text/json")


class UsageEventRejectedError(ValueError):
    """One event cannot be billed; the message is the reason given to the sender."""


@dataclass(frozen=True)
class UsageEvent:
    """A valid usage event: ``time`` aware (UTC), ``units`` exact and positive, ``attributes``
    the meter's (``usage_units`` set to ``units``), ``body`` the CloudEvent as received."""

    event_id: str
    source: str
    operation: str
    time: datetime
    units: Decimal
    subject: str | None
    attributes: Mapping[str, object]
    body: Mapping[str, Any]


def parse_usage_event(value: object, *, now: datetime | None = None) -> UsageEvent:
    """Check one structured-mode CloudEvent (parsed with ``json_types.exact_loads``).

    Raises ``UsageEventRejectedError`` naming the first problem: not an object, a missing or
    empty ``id``/``source``/``type``/``time``/``specversion``, a specversion other than 1.0,
    a value too long for its column, a ``time`` that is not RFC 3339 with an offset or is more
    than ``MAX_CLOCK_SKEW`` after ``now``, ``data`` that is not a JSON object (or is
    ``data_base64``), and ``units`` missing, non-numeric, not positive or not fitting
    NUMERIC(18,6)."""
    if not isinstance(value, dict):
        raise UsageEventRejectedError(
            f"a usage event must be a JSON object, not {_json_kind(value)}"
        )
    missing = [
        name
        for name in ("specversion", "id", "source", "type", "time")
        if not isinstance(value.get(name), str) or not value[name].strip()
    ]
    if missing:
        raise UsageEventRejectedError(
            "missing or empty CloudEvents attribute(s): " + ", ".join(missing)
        )
    if value["specversion"] != "1.0":
        raise UsageEventRejectedError(
            f"specversion {value['specversion']!r} is not supported (only CloudEvents 1.0)"
        )
    for name, limit in (
        ("id", MAX_ID_CHARACTERS),
        ("source", MAX_SOURCE_CHARACTERS),
        ("type", MAX_TYPE_CHARACTERS),
    ):
        if len(value[name]) > limit or "\x00" in value[name]:
            raise UsageEventRejectedError(
                f"{name} is longer than {limit} characters or holds a NUL character"
            )
    time = _time(value["time"], now)
    content_type = value.get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str)
        or content_type.split(";", 1)[0].strip().lower() not in _JSON_CONTENT_TYPES
    ):
        raise UsageEventRejectedError(
            f"datacontenttype {content_type!r} is not application/json: data must be a JSON object"
        )
    if "data_base64" in value:
        raise UsageEventRejectedError("data_base64 is not accepted: data must be a JSON object")
    data = value.get("data")
    if not isinstance(data, dict):
        raise UsageEventRejectedError(
            f"data must be a JSON object holding units, not {_json_kind(data)}"
        )
    units = _units(data.get("units", _MISSING))
    subject = value.get("subject")
    attributes: dict[str, object] = {
        key: member for key, member in data.items() if key not in _UNIT_KEYS
    }
    attributes["usage_units"] = units
    return UsageEvent(
        event_id=value["id"],
        source=value["source"],
        operation=value["type"],
        time=time,
        units=units,
        subject=subject if isinstance(subject, str) else None,
        attributes=attributes,
        body=value,
    )


_MISSING = object()


def _json_kind(value: object) -> str:
    if value is None or value is _MISSING:
        return "null or absent"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Decimal, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _time(text: str, now: datetime | None) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise UsageEventRejectedError(
            f"time {text[:64]!r} is not an RFC 3339 timestamp (e.g. 2026-11-30T12:00:00Z)"
        ) from None
    if moment.tzinfo is None or "T" not in text.upper():
        raise UsageEventRejectedError(
            f"time {text[:64]!r} needs a date, a time and a UTC offset (e.g. Z or +01:00)"
        )
    try:
        moment = in_utc(moment)
    except ValueError as exc:
        raise UsageEventRejectedError(f"time {exc}") from None
    if now is not None and moment > now + MAX_CLOCK_SKEW:
        raise UsageEventRejectedError(
            f"time {text[:64]!r} is in the future (more than "
            f"{int(MAX_CLOCK_SKEW.total_seconds())} s after the receipt time)"
        )
    return moment


def _units(value: object) -> Decimal:
    if value is _MISSING or value is None:
        raise UsageEventRejectedError("data.units is missing: the usage to bill")
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise UsageEventRejectedError(
            f"data.units must be a number (or a decimal string), not {_json_kind(value)}"
        )
    try:
        units = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise UsageEventRejectedError(f"data.units {str(value)[:40]!r} is not a number") from None
    if not units.is_finite():
        raise UsageEventRejectedError(f"data.units {str(value)[:40]!r} is not a finite number")
    if units <= 0:
        raise UsageEventRejectedError(f"data.units must be greater than 0, not {units}")
    # The limit first: quantize cannot take a number beyond the context's 28 digits.
    if units >= _LEDGER_LIMIT or units != units.quantize(Decimal(1).scaleb(-LEDGER_SCALE)):
        raise UsageEventRejectedError(
            f"data.units {units} does not fit NUMERIC({LEDGER_PRECISION},{LEDGER_SCALE}): at "
            f"most {LEDGER_SCALE} decimals and {LEDGER_PRECISION - LEDGER_SCALE} integer digits"
        )
    return units


def ledger_event_id(tenant_id: str, source: str, event_id: str) -> str:
    """The ledger ``event_id`` of a usage event: ``usage:`` and the SHA-256 (hex) of tenant,
    source and id joined by NUL, so any lengths fit the ledger's 128 characters."""
    digest = hashlib.sha256("\x00".join((tenant_id, source, event_id)).encode()).hexdigest()
    return f"usage:{digest}"


def queued_body(event: UsageEvent, tenant_id: str, principal_id: str) -> dict[str, Any]:
    """The CloudEvent put on the broker: as received, with ``time`` in UTC (``…Z``, so a close
    can read the period from the text) and the caller's ``tenantid`` and ``principalid``
    extensions, which replace any the sender set."""
    body = dict(event.body)
    body["time"] = event.time.isoformat().replace("+00:00", "Z")
    body["tenantid"] = tenant_id
    body["principalid"] = principal_id
    return body
