"""What the dispatcher decides for one message; the worker applies it (sync/worker.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hartonomous.billing.ledger import LedgerEntry
from hartonomous.sync.graph import GraphChange


@dataclass(frozen=True)
class Complete:
    change: GraphChange
    event_id: str
    ledger: LedgerEntry | None
    counters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delay:
    seconds: float
    policy: str


@dataclass(frozen=True)
class Reject:
    reason: str
    detail: str
    metadata: dict[str, str] = field(default_factory=dict)


Decision = Complete | Delay | Reject
