"""What every handler shares: the event it reads, the party it bills, what it changes, and
what the meter reads for a billed event (docs/sync.md, "Handlers, graph and billing")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hartonomous.sync.graph import GraphChange, GraphNode, tenant_ref
from hartonomous.sync.lookups import Lookups
from hartonomous.sync.rows import InvalidEventError, Row

OPERATIONS = ("insert", "update", "delete")


@dataclass(frozen=True)
class SyncEvent:
    """The parts of a CDC CloudEvent the worker uses."""

    event_id: str
    event_type: str
    table: str
    operation: str
    row: Row
    extensions: Mapping[str, object]
    tenant_id: str
    principal_id: str
    # The CloudEvent's `time` (the change's commit time): the ledger row's billing period.
    time: datetime | None = None
    # The CloudEvent subject, `<table>/<key>`: kept in the ledger row's metadata so that
    # `graph catch-up` can tell which source row a ledger row bills.
    subject: str = ""

    @property
    def name(self) -> str:
        return f"{self.table}.{self.operation}"


@dataclass(frozen=True)
class Party:
    """Who an event is billed to and checked against policy ('' when nobody)."""

    tenant_id: str
    principal_id: str


@dataclass(frozen=True)
class HandlerOutcome:
    change: GraphChange
    # Why nothing (or less) was projected, as a counter name; None when fully handled.
    skipped: str | None = None


@dataclass(frozen=True)
class Metering:
    """What the meter reads for a billed event (`billing.meter.measure_usage` attributes) and
    the ledger row's `event_id`, on which the ledger skips a second row.

    Most events are billed once per CloudEvent (`idempotency_key` = the event id, deterministic
    from the WAL). An inference is billed once per inference whatever number of events carry
    it completed (its completion, later feedback updates, replays): its key names the
    inference, not the event.
    """

    attributes: Mapping[str, object]
    idempotency_key: str


class Handler(Protocol):
    name: str

    def handles(self, table: str) -> bool: ...

    def billable_operation(self, event: SyncEvent) -> str | None: ...

    def party(self, event: SyncEvent, lookups: Lookups) -> Party: ...

    def metering(self, event: SyncEvent, lookups: Lookups) -> Metering: ...

    def apply(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome: ...


class MeteredPerEvent:
    """The default metering: the event's extension attributes, one ledger row per event."""

    def metering(self, event: SyncEvent, lookups: Lookups) -> Metering:
        return Metering(event.extensions, event.event_id)


def own_party(event: SyncEvent) -> Party:
    return Party(event.tenant_id, event.principal_id)


def require_tenant(event: SyncEvent) -> str:
    if not event.tenant_id:
        raise InvalidEventError(
            f"{event.name}: no tenant (extension tenantid and column tenant_id are missing)"
        )
    return event.tenant_id


def tenant_node(tenant_id: str) -> GraphNode:
    return GraphNode(tenant_ref(tenant_id), tenant_id, {"tenant_id": tenant_id})
