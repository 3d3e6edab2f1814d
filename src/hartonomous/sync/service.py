"""The services `up` runs for the event path: the CES consumer and the sync worker.

Both share the service lifecycle of `messaging/lifecycle.py`; the sync worker is a consumer
loop (`messaging/consumer.py`). A worker stopped by an unwritable ledger ends its thread with
the reason logged (`service_crashed`) and its heartbeat `failed`, and the events wait in the
queue. Both record heartbeats that `/health/ready` reads (docs/operations.md).
"""

from __future__ import annotations

from functools import partial

from hartonomous.config import Settings
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.services import BackgroundService


def sync_services(url: str, settings: Settings) -> list[BackgroundService]:
    from hartonomous.cdc.consumer import CesConsumer
    from hartonomous.sync.worker import SyncWorker

    consumer = CesConsumer(url, settings)
    worker = SyncWorker(url, settings)
    consumer_beat = Heartbeat(url, settings, "ces-consumer")
    worker_beat = Heartbeat(url, settings, "sync-worker")
    # Written before `up` serves: its first `/health/ready` already sees both services.
    consumer_beat.beat("starting")
    worker_beat.beat("starting")
    return [
        BackgroundService("ces-consumer", partial(consumer.run, heartbeat=consumer_beat)),
        BackgroundService("sync-worker", partial(worker.run, heartbeat=worker_beat)),
    ]
