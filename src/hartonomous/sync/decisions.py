"""What the dispatcher decides for one message, in the settlement vocabulary of every consumer
(`messaging/settlement.py`); the worker applies it (sync/worker.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hartonomous.billing.ledger import LedgerEntry
from hartonomous.messaging.settlement import Complete, DeadLetter, Delay
from hartonomous.sync.graph import GraphChange


@dataclass(frozen=True)
class CompleteWith(Complete):
    """`Complete`, with the effects the batch's transaction writes: graph change, ledger row
    (None: unbilled) and sync counters."""

    change: GraphChange
    event_id: str
    ledger: LedgerEntry | None
    counters: tuple[str, ...] = ()


Decision = CompleteWith | Delay | DeadLetter

__all__ = ["CompleteWith", "DeadLetter", "Decision", "Delay"]
