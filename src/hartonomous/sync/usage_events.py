"""The sync worker's decision for a usage event from another service (docs/billing.md, "Usage
events"): policy, then the tenant's plan prices it with the meter into one ledger entry billed
in the period of the event's `time`. No graph change.

The endpoint checked the event when it accepted it; a body that no longer passes (or an
operation the tenant's plan dropped since) is dead-lettered with the reason, never billed at a
guessed rate.
"""

from __future__ import annotations

from hartonomous.billing.ledger import LedgerEntry
from hartonomous.billing.meter import measure_usage
from hartonomous.billing.numeric import LedgerValueError
from hartonomous.billing.plan_provider import PlanProvider
from hartonomous.billing.usage_events import (
    UsageEvent,
    UsageEventRejectedError,
    ledger_event_id,
    parse_usage_event,
)
from hartonomous.messaging.broker import ReceivedMessage
from hartonomous.sync.decisions import CompleteWith, DeadLetter, Decision
from hartonomous.sync.graph import GraphChange
from hartonomous.sync.lookups import Connection
from hartonomous.sync.verdicts import BatchVerdicts

HANDLER = "usage_events"


def decide_usage_event(
    connection: Connection,
    message: ReceivedMessage,
    *,
    verdicts: BatchVerdicts,
    plans: PlanProvider,
) -> Decision:
    """CompleteWith the event's ledger entry, or DeadLetter (invalid, unknown operation, policy)."""
    try:
        event = parse_usage_event(message.body)
    except UsageEventRejectedError as exc:
        return DeadLetter("invalid_usage_event", str(exc))
    body = event.body
    tenant = body.get("tenantid")
    principal = body.get("principalid")
    if not isinstance(tenant, str) or not tenant or not isinstance(principal, str):
        return DeadLetter("invalid_usage_event", "the queued usage event names no tenantid")
    denied = _denied(verdicts, event, tenant, principal)
    if denied is not None:
        return denied
    configuration = plans.configuration_at(connection, tenant, event.time)
    if event.operation not in configuration.operation_rates:
        return DeadLetter(
            "unknown_operation",
            f"operation {event.operation!r} is not in tenant {tenant!r}'s plan",
        )
    record = measure_usage(
        configuration,
        event.attributes,
        operation=event.operation,
        tenant_id=tenant,
        principal_id=principal,
        message_type=event.operation,
        handler=HANDLER,
        extra_metadata={
            "cloudevent_id": event.event_id,
            "cloudevent_source": event.source,
            "cloudevent_time": body["time"],
            **({"cloudevent_subject": event.subject} if event.subject is not None else {}),
        },
    )
    try:
        if record is None:
            raise LedgerValueError("no tenant or operation to bill")
        amounts = record.ledger_amounts()
    except LedgerValueError as exc:
        return DeadLetter("ledger_value_out_of_range", str(exc))
    entry = LedgerEntry(
        ledger_event_id(tenant, event.source, event.event_id),
        record,
        configuration.rate_plan_id,
        occurred_at=event.time,
        amounts=amounts,  # checked above: the ledger write does not compute them again
    )
    return CompleteWith(GraphChange(), event.event_id, entry)


def _denied(
    verdicts: BatchVerdicts,
    event: UsageEvent,
    tenant: str,
    principal: str,
) -> DeadLetter | None:
    """The access policy's refusal (a banned tenant or principal, a denied operation), if any.

    The tenant and principal count as active: the endpoint authenticated them when it accepted
    the event, and usage that happened while they were active is billed even if they are
    disabled before the worker gets to it (and the worker saves a lookup per event)."""
    verdict = verdicts.evaluate(
        tenant_id=tenant,
        principal_id=principal,
        operation=event.operation,
        message_type=event.operation,
        attributes=event.attributes,
    )
    if verdict.is_allowed:
        return None
    name = verdict.policy or "unknown"
    return DeadLetter(
        f"policy_denied:{name}",
        verdict.reason or "Access denied",
        {"policy": name, "policy_reason": verdict.reason or ""},
    )
