"""One message → one decision: resolve, policy, throttle, handler, meter (docs/sync.md).

Pure of side effects on the broker: the worker applies the decision. Errors that no retry can
cure (a malformed CloudEvent, a row of the wrong shape, usage that cannot fit the ledger)
become dead-letter decisions with a reason; anything else propagates to the worker's retry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import Column, String

from hartonomous.billing.ledger import LedgerEntry
from hartonomous.billing.meter import MetadataValue, measure_usage
from hartonomous.billing.numeric import LedgerValueError
from hartonomous.billing.plan_provider import PlanProvider
from hartonomous.billing.usage_events import USAGE_EVENT_MESSAGE_TYPE
from hartonomous.db.tables import billing_usage_ledger
from hartonomous.messaging.broker import ReceivedMessage
from hartonomous.messaging.envelope import MalformedMessageError, parse_cloudevent
from hartonomous.security.policy import AccessPolicyEngine
from hartonomous.security.throttle import ThrottleContext, ThrottleEvaluator
from hartonomous.sync.decisions import CompleteWith, DeadLetter, Decision, Delay
from hartonomous.sync.events import OPERATIONS, SyncEvent
from hartonomous.sync.handlers import handler_for
from hartonomous.sync.lookups import Connection, Lookups
from hartonomous.sync.rows import InvalidEventError, Row
from hartonomous.sync.usage_events import decide_usage_event
from hartonomous.sync.verdicts import BatchVerdicts

CDC_TYPE_PREFIX = "io.hartonomous.cdc."
# The tables whose rows are a tenant's or principal's own state: their events are projected
# whatever that state (the graph must show a disable), never refused as the party's work.
_PARTY_TABLES = frozenset({"tenants", "principals", "api_keys"})


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def to_sync_event(event: CloudEvent) -> SyncEvent:
    """The CDC fields of an event; table and operation from extensions, else from the type."""
    attributes: Mapping[str, Any] = event.get_attributes()
    event_type = event.get_type()
    table, operation = _text(attributes.get("table")), _text(attributes.get("operation"))
    if (not table or not operation) and event_type.startswith(CDC_TYPE_PREFIX):
        table, _, operation = event_type.removeprefix(CDC_TYPE_PREFIX).rpartition(".")
    if not table or operation not in OPERATIONS:
        raise InvalidEventError(
            f"event {event.get_id()} of type {event_type!r} names no table and "
            "insert/update/delete operation"
        )
    row = Row(f"{table}.{operation}", event.get_data())
    tenant = _text(attributes.get("tenantid")) or _text(row.value("tenant_id"))
    principal = _text(attributes.get("principalid")) or _text(row.value("principal_id"))
    extensions = {
        key: value
        for key, value in attributes.items()
        if key not in ("id", "source", "specversion", "type", "time", "subject")
    }
    _check_lengths(event.get_id(), event_type, tenant, principal)
    return SyncEvent(
        time=event.get_time(),
        event_id=event.get_id(),
        event_type=event_type,
        table=table,
        operation=operation,
        row=row,
        extensions=extensions,
        tenant_id=tenant,
        principal_id=principal,
        subject=_text(attributes.get("subject")),
    )


def _length(column: Column[Any]) -> int:
    kind = column.type
    assert isinstance(kind, String)
    assert kind.length is not None
    return kind.length


# What the usage ledger (and the graph's `source_event_id`) keep of an event's attributes: a
# longer value would fail the batch's ledger write, which stops the worker (seed incident rule),
# so such an event is refused up front, alone, as invalid.
_LEDGER = billing_usage_ledger.c
_KEPT = (
    ("id", _length(_LEDGER.event_id)),
    ("type", _length(_LEDGER.message_type)),
    ("tenant", _length(_LEDGER.tenant_id)),
    ("principal", _length(_LEDGER.principal_id)),
)


def _check_lengths(*values: str) -> None:
    for (name, limit), value in zip(_KEPT, values, strict=True):
        if len(value) > limit:
            raise InvalidEventError(
                f"event {name} is {len(value)} characters, over the {limit} that the usage "
                f"ledger keeps: {value[:40]!r}..."
            )


@dataclass
class BatchContext:
    """What the decisions of one claimed batch share (`Dispatcher.prepare`): the lookups
    (prefetched for the batch), the policy's verdicts, and each CDC message's parsed event
    (or its dead letter), by the message's identity."""

    lookups: Lookups
    verdicts: BatchVerdicts
    events: dict[int, SyncEvent | DeadLetter] = field(default_factory=dict)


def _parsed(message: ReceivedMessage) -> SyncEvent | DeadLetter:
    try:
        return to_sync_event(parse_cloudevent(message.body))
    except MalformedMessageError as exc:
        return DeadLetter("malformed_event", str(exc))
    except InvalidEventError as exc:
        return DeadLetter("invalid_event", str(exc))


def _job_keys(events: Sequence[SyncEvent]) -> Iterator[tuple[int, tuple[str, str]]]:
    """(tenant, job) of each event (by its identity) whose row names a job but whose event
    names no principal: the job's principal may be the party (a holding's), so it is fetched
    ahead."""
    for event in events:
        if event.tenant_id and not event.principal_id and event.row.has("job_id"):
            try:
                job = event.row.optional_uuid("job_id")
            except InvalidEventError:
                continue  # the decision refuses the event itself
            if job is not None:
                yield id(event), (event.tenant_id, job)


@dataclass
class Dispatcher:
    policy: AccessPolicyEngine
    throttle: ThrottleEvaluator
    plans: PlanProvider

    def prepare(self, connection: Connection, messages: Sequence[ReceivedMessage]) -> BatchContext:
        """The batch's shared context: parse each CDC message once, then fetch the jobs'
        principals and whether each (tenant, principal) is active in one statement each."""
        context = BatchContext(Lookups(connection), BatchVerdicts(self.policy))
        events: list[SyncEvent] = []
        for message in messages:
            if message.message_type == USAGE_EVENT_MESSAGE_TYPE:
                continue
            parsed = _parsed(message)
            context.events[id(message)] = parsed
            if isinstance(parsed, SyncEvent):
                events.append(parsed)
        jobs = dict(_job_keys(events))
        lookups = context.lookups
        lookups.prefetch_job_principals(jobs.values())
        parties = []
        for event in events:
            if not event.tenant_id:
                continue
            principal = event.principal_id
            job = jobs.get(id(event))
            if not principal and job is not None:
                principal = lookups.job_principal(event.tenant_id, job[1]) or ""
            parties.append((event.tenant_id, principal))
        lookups.prefetch_parties(parties)
        return context

    def needs_savepoint(self, message: ReceivedMessage) -> bool:
        """Whether deciding ``message`` runs statements worth a savepoint of their own (and
        may take throttle permits). A usage event's decision reads only the plan cache (a
        statement on a miss, whose failure the worker's batch isolation still confines), so
        it saves the savepoint's two round trips per event."""
        return message.message_type != USAGE_EVENT_MESSAGE_TYPE

    def decide(
        self,
        connection: Connection,
        message: ReceivedMessage,
        batch: BatchContext | None = None,
    ) -> Decision:
        """The message's decision; with ``batch`` (`prepare`d for the message's batch) its
        parsed event, lookups and verdicts come from there."""
        if batch is None:
            batch = BatchContext(Lookups(connection), BatchVerdicts(self.policy))
        if message.message_type == USAGE_EVENT_MESSAGE_TYPE:
            return decide_usage_event(
                connection, message, verdicts=batch.verdicts, plans=self.plans
            )
        parsed = batch.events.get(id(message))
        if parsed is None:
            parsed = _parsed(message)
        if isinstance(parsed, DeadLetter):
            return parsed
        try:
            return self._decide(connection, parsed, batch)
        except InvalidEventError as exc:
            return DeadLetter("invalid_event", str(exc))

    def _decide(self, connection: Connection, event: SyncEvent, batch: BatchContext) -> Decision:
        handler = handler_for(event.table)
        lookups = batch.lookups
        party = handler.party(event, lookups)
        operation = handler.billable_operation(event)
        # Unbilled events are checked under their event type, as the original did for all.
        checked_operation = operation or event.event_type
        # A disable refuses the events committed after it, not the work done and stored
        # before it, nor the tenant's or principal's own change (the disable itself).
        tenant_active, principal_active = (
            lookups.party_active(party.tenant_id, party.principal_id, event.time)
            if party.tenant_id and event.table not in _PARTY_TABLES
            else (True, True)
        )
        verdict = batch.verdicts.evaluate(
            tenant_id=party.tenant_id,
            principal_id=party.principal_id,
            operation=checked_operation,
            message_type=event.event_type,
            attributes=event.extensions,
            tenant_active=tenant_active,
            principal_active=principal_active,
        )
        if not verdict.is_allowed:
            policy = verdict.policy or "unknown"
            return DeadLetter(
                f"policy_denied:{policy}",
                verdict.reason or "Access denied",
                {"policy": policy, "policy_reason": verdict.reason or ""},
            )
        throttled = self.throttle.evaluate(
            ThrottleContext(party.tenant_id, party.principal_id, checked_operation)
        )
        if throttled.is_throttled:
            return Delay(_seconds(throttled.retry_after), throttled.policy or "default")
        outcome = handler.apply(event, lookups)
        counters = [outcome.skipped] if outcome.skipped else []
        ledger: LedgerEntry | None = None
        if operation is None:
            counters.append(f"unbilled:{event.name}")
        elif not party.tenant_id:
            counters.append(f"unbilled:no_tenant:{event.name}")
        else:
            configuration = self.plans.configuration(connection, party.tenant_id)
            metering = handler.metering(event, lookups)
            # Added after the meter's own keys (replacing none): billed once per thing, not
            # per event, keep which event billed it; and the event's subject.
            extra: dict[str, MetadataValue] = {}
            if metering.idempotency_key != event.event_id:
                extra["cloudevent_id"] = event.event_id
            if event.subject:
                extra["subject"] = event.subject
            record = measure_usage(
                configuration,
                metering.attributes,
                operation=operation,
                tenant_id=party.tenant_id,
                principal_id=party.principal_id,
                message_type=event.event_type,
                handler=handler.name,
                extra_metadata=extra,
            )
            if record is not None:
                try:
                    amounts = record.ledger_amounts()
                except LedgerValueError as exc:
                    return DeadLetter("ledger_value_out_of_range", str(exc))
                # Counted `billed:` by the worker once the ledger row is written (not replays).
                ledger = LedgerEntry(
                    metering.idempotency_key,
                    record,
                    configuration.rate_plan_id,
                    occurred_at=event.time,
                    amounts=amounts,  # checked above: the ledger write does not compute them again
                )
        return CompleteWith(outcome.change, event.event_id, ledger, tuple(counters))


def _seconds(wait: timedelta) -> float:
    # At least a tick: a zero retry-after would spin on the same message.
    return max(wait.total_seconds(), 0.05)
