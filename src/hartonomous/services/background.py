"""The background services run on their own: `ces-consumer` and `sync`, once or serving.

`up` runs the same two in threads (`sync.service.sync_services`); serving, each records its
heartbeat (docs/operations.md, "Heartbeats and readiness"). Stopping is the caller's: it sets
``stop`` (the CLI does on SIGINT / SIGTERM).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hartonomous.cdc import CesConsumer
from hartonomous.cdc.replication import SlotHolder
from hartonomous.messaging.transport import check_transport
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import database_url
from hartonomous.services.sync_control import require_running
from hartonomous.sync.worker import SyncOutcome, SyncWorker

__all__ = [
    "CaptureDrained",
    "SlotInUse",
    "SyncDrained",
    "drain_change_capture",
    "drain_sync",
    "serve_change_capture",
    "serve_sync",
]


@dataclass(frozen=True)
class CaptureDrained:
    events: int  # CloudEvents enqueued
    status: dict[str, Any]  # the slot's state after (``CdcStatus.as_dict``)


@dataclass(frozen=True)
class SlotInUse:
    """Another consumer (the running `up`'s) holds the slot: nothing was done."""

    holder: SlotHolder | None
    status: dict[str, Any]


@dataclass(frozen=True)
class SyncDrained:
    outcome: SyncOutcome
    neo4j_projection: Literal["on", "off"]


def drain_change_capture(platform: Platform) -> CaptureDrained | SlotInUse:
    """Enqueue what is committed now, unless another consumer holds the slot;
    ``SyncPausedError`` while sync is paused."""
    require_running(platform)
    check_transport(platform.settings.message_broker)
    consumer = CesConsumer(database_url(platform), platform.settings)
    with database_errors():
        try:
            if not consumer.try_acquire():
                return SlotInUse(consumer.holder(), consumer.status())
            consumer.prepare()
            consumer.prune_history()
            events = consumer.drain()
            return CaptureDrained(events, consumer.status())
        finally:
            consumer.close()


def serve_change_capture(
    platform: Platform, stop: threading.Event, started: Callable[[dict[str, Any]], None]
) -> None:
    """Arm capture, call ``started`` with the slot's state, then serve until ``stop`` is set;
    ``UnavailableError`` naming the servers when the Kafka transport does not answer."""
    check_transport(platform.settings.message_broker)
    url = database_url(platform)
    consumer = CesConsumer(url, platform.settings)
    with database_errors():
        try:
            consumer.prepare()
            status = consumer.status()
        finally:
            consumer.close()
    started(status)
    consumer.run(stop)  # its sessions open again


def _projection(worker: SyncWorker) -> Literal["on", "off"]:
    return "on" if worker.projecting else "off"


def drain_sync(platform: Platform, batch_size: int) -> SyncDrained:
    """Handle what is queued now (`sync --once`); ``SyncPausedError`` while paused."""
    require_running(platform)
    check_transport(platform.settings.message_broker)
    worker = SyncWorker(database_url(platform), platform.settings, batch_size=batch_size)
    with database_errors():
        try:
            return SyncDrained(worker.drain(), _projection(worker))
        finally:
            worker.close()


def serve_sync(
    platform: Platform,
    batch_size: int,
    stop: threading.Event,
    started: Callable[[Literal["on", "off"]], None],
) -> None:
    """Call ``started`` with the projection state, then serve until ``stop`` is set.

    Raises ``SyncStoppedError`` when the ledger cannot be written (the events wait), and
    ``UnavailableError`` naming the servers when the Kafka transport does not answer at start.
    """
    check_transport(platform.settings.message_broker)
    worker = SyncWorker(database_url(platform), platform.settings, batch_size=batch_size)
    started(_projection(worker))
    worker.run(stop)
