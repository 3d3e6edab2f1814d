"""Usage events from other services: check each CloudEvent, remember its (source, id) and put
it on the broker in one transaction; the sync worker prices it into the ledger
(docs/billing.md, "Usage events"; docs/api.md, "Usage events").

Each event is answered ``accepted`` (queued now), ``duplicate`` (its tenant, source and id
were accepted before and are still remembered, or came earlier in the same batch) or
``rejected`` with the reason; nothing is written for a rejected event. Runs on the maintenance
engine: the broker holds every tenant's events, which the API role may not write; every row
written carries the caller's tenant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from hartonomous.billing.configuration import BillingConfiguration
from hartonomous.billing.meter import DEFAULT_UNIT_PRICE, measure_usage
from hartonomous.billing.numeric import LedgerValueError
from hartonomous.billing.plan_provider import load_configuration
from hartonomous.billing.usage_events import (
    USAGE_EVENT_MESSAGE_TYPE,
    UsageEvent,
    UsageEventRejectedError,
    parse_usage_event,
    queued_body,
)
from hartonomous.db.tables import MULTIPLIER_DIMENSIONS
from hartonomous.errors import PayloadTooLargeError, UsageError
from hartonomous.messaging.broker import Broker, MessageTooLargeError, OutgoingMessage
from hartonomous.messaging.transport import SizeLimited
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = [
    "UsageEventOutcome",
    "UsageEventResult",
    "prune_usage_event_receipts",
    "submit_usage_events",
]

UsageEventStatus = Literal["accepted", "duplicate", "rejected"]

# Well under NUMERIC(18,6)'s 10**12, so rounding at six places cannot cross it.
_SURELY_FITS = Decimal(10) ** 11

# Binary arrays, as the ledger's (billing/ledger.py): the text form escapes every element.
_REMEMBER = """
INSERT INTO billing_usage_event_receipts (tenant_id, source, event_id, received_at)
SELECT %(tenant)s, s, i, now() FROM unnest(%(sources)b::text[], %(ids)b::text[]) AS u(s, i)
ON CONFLICT (tenant_id, source, event_id) DO NOTHING
RETURNING source, event_id
"""


@dataclass(frozen=True)
class UsageEventResult:
    """One event's answer; ``id`` and ``source`` as sent (None when absent or not text)."""

    id: str | None
    source: str | None
    status: UsageEventStatus
    reason: str | None = None


@dataclass(frozen=True)
class UsageEventOutcome:
    results: tuple[UsageEventResult, ...]

    def count(self, status: UsageEventStatus) -> int:
        return sum(1 for result in self.results if result.status == status)


@dataclass(frozen=True)
class _Checked:
    index: int
    event: UsageEvent
    body_text: str


def submit_usage_events(
    platform: Platform,
    tenant_id: str,
    principal_id: str,
    events: Sequence[object],
    *,
    now: datetime | None = None,
) -> UsageEventOutcome:
    """Check, deduplicate and queue ``events`` (CloudEvents parsed with
    ``json_types.exact_loads``) for ``tenant_id``, answering each in order.

    Raises ``UsageError`` for an empty batch and ``PayloadTooLargeError`` for one over
    ``[billing] usage_event_batch_limit``; nothing is written then. Per-event problems are
    ``rejected`` results, not exceptions."""
    limit = platform.settings.billing.usage_event_batch_limit
    if not events:
        raise UsageError("the batch holds no usage event")
    if len(events) > limit:
        raise PayloadTooLargeError(
            f"the batch holds {len(events)} usage events, over the limit of {limit} "
            "([billing] usage_event_batch_limit)"
        )
    received = now or datetime.now(UTC)
    broker = Broker(platform.settings.message_broker)
    # Where the sync workers read: the broker's queue, or Kafka (acknowledged before the
    # receipts commit; a resend after a lost commit is billed once, by the event's id).
    transport = platform.transport()
    results: list[UsageEventResult | None] = [None] * len(events)
    checked: list[_Checked] = []
    seen: set[tuple[str, str]] = set()
    with driver_session(platform) as connection:
        configuration = load_configuration(connection, tenant_id, platform.settings.billing)
        factors = _largest_factors(configuration)
        for index, value in enumerate(events):
            try:
                event = parse_usage_event(value, now=received)
                _check_priced(configuration, factors, event, (tenant_id, principal_id))
                body_text = broker.serialise(queued_body(event, tenant_id, principal_id))
                if isinstance(transport, SizeLimited):
                    transport.check_size(_message(body_text))
            except (UsageEventRejectedError, MessageTooLargeError) as exc:
                results[index] = _answer(value, "rejected", str(exc))
                continue
            key = (event.source, event.event_id)
            if key in seen:
                results[index] = _answer(value, "duplicate", "sent earlier in this batch")
                continue
            seen.add(key)
            checked.append(_Checked(index, event, body_text))
        if checked:
            with connection.transaction():
                rows = connection.execute(
                    _REMEMBER,
                    {
                        "tenant": tenant_id,
                        "sources": [c.event.source for c in checked],
                        "ids": [c.event.event_id for c in checked],
                    },
                ).fetchall()
                new = {(str(source), str(event_id)) for source, event_id in rows}
                accepted = [c for c in checked if (c.event.source, c.event.event_id) in new]
                transport.send_batch(connection, [_message(c.body_text) for c in accepted])
            for item in checked:
                fresh = (item.event.source, item.event.event_id) in new
                results[item.index] = _answer(
                    events[item.index],
                    "accepted" if fresh else "duplicate",
                    None if fresh else "accepted before (same source and id)",
                )
    return UsageEventOutcome(tuple(result for result in results if result is not None))


def _message(body_text: str) -> OutgoingMessage:
    return OutgoingMessage(None, message_type=USAGE_EVENT_MESSAGE_TYPE, body_text=body_text)


def _largest_factors(configuration: BillingConfiguration) -> Decimal:
    """The largest multiplier the plan can give any event (each dimension's largest value, or
    1 for a miss) times the unit price, or more: an upper bound of cost per DCU."""
    largest = Decimal(1)
    for dimension in MULTIPLIER_DIMENSIONS:
        table: Mapping[str, Decimal] = getattr(configuration, f"{dimension}_multipliers")
        largest *= max([Decimal(1), *table.values()])
    return largest * max(Decimal(1), configuration.unit_price_per_dcu, DEFAULT_UNIT_PRICE)


def _check_priced(
    configuration: BillingConfiguration,
    factors: Decimal,
    event: UsageEvent,
    party: tuple[str, str],
) -> None:
    """Refuse an operation the tenant's plan does not price, or usage whose cost cannot fit
    the ledger (the worker prices it again with the plan of its own time). The meter runs only
    when the plan's upper bound (``factors``) does not already show that the cost fits."""
    if event.operation not in configuration.operation_rates:
        known = ", ".join(sorted(configuration.operation_rates)) or "none"
        raise UsageEventRejectedError(
            f"unknown operation {event.operation!r} (type): the tenant's plan prices {known}"
        )
    rate = max(Decimal(1), configuration.operation_rates[event.operation])
    # The multiplier column holds the exact product alone too: the bound covers it as well.
    if factors < _SURELY_FITS and event.units * rate * factors < _SURELY_FITS:
        return
    tenant_id, principal_id = party
    record = measure_usage(
        configuration,
        event.attributes,
        operation=event.operation,
        tenant_id=tenant_id,
        principal_id=principal_id,
    )
    try:
        if record is not None:
            record.ledger_amounts()
    except LedgerValueError as exc:
        raise UsageEventRejectedError(f"the event's cost cannot be billed: {exc}") from None


def _answer(value: object, status: UsageEventStatus, reason: str | None) -> UsageEventResult:
    fields = value if isinstance(value, dict) else {}
    event_id, source = fields.get("id"), fields.get("source")
    return UsageEventResult(
        id=event_id if isinstance(event_id, str) else None,
        source=source if isinstance(source, str) else None,
        status=status,
        reason=reason,
    )


def prune_usage_event_receipts(platform: Platform, *, now: datetime | None = None) -> int:
    """Forget receipts older than ``[billing] usage_event_retention_days`` (at least 35); the
    number forgotten. A resend after that is accepted again, and still billed once while its
    ledger row stays in the hot table (the ledger's (tenant_id, event_id) is unique)."""
    days = platform.settings.billing.usage_event_retention_days
    cut_off = (now or datetime.now(UTC)) - timedelta(days=days)
    with driver_session(platform) as connection:
        cursor = connection.execute(
            "DELETE FROM billing_usage_event_receipts WHERE received_at < %s", (cut_off,)
        )
        return cursor.rowcount
