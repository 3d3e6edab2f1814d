"""The services `up` runs for the event path: the CES consumer and the sync worker.

The sync worker takes the place of the placeholder pump (`messaging.pump.acknowledge`): both
would consume the same queue. A worker stopped by an unwritable ledger ends its thread with
the reason logged (`service_crashed`), and the events wait in the queue.
"""

from __future__ import annotations

from hartonomous.config import Settings
from hartonomous.messaging.services import BackgroundService


def sync_services(url: str, settings: Settings) -> list[BackgroundService]:
    from hartonomous.cdc.consumer import CesConsumer
    from hartonomous.sync.worker import SyncWorker

    consumer = CesConsumer(url, settings)
    worker = SyncWorker(url, settings)
    return [
        BackgroundService("ces-consumer", consumer.run),
        BackgroundService("sync-worker", worker.run),
    ]
