"""Broker status: queue depth and age, claims, throughput, dead letters, change capture.

The figures are those of `messaging.status.broker_status` (docs/messaging.md, "Operator
tools") plus the change capture feeding the queue (docs/cdc.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from hartonomous.cdc.replication import CdcStatus, cdc_status
from hartonomous.messaging.broker import Broker
from hartonomous.messaging.status import broker_status as read_broker_status
from hartonomous.messaging.status import throughput_by_minute
from hartonomous.services.health import KafkaLag, kafka_lag
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = ["BrokerStatus", "ThroughputMinute", "broker_status", "throughput_history"]


class OrphanedClaim(BaseModel):
    """Messages claimed by a session that is gone or whose lease lapsed (retaken on receive)."""

    pid: int
    messages: int
    state: Literal["consumer gone", "lease lapsed"]
    claimed_seconds: float


class Throughput(BaseModel):
    completed: int
    dead_lettered: int
    completed_per_second: float


class LongConversation(BaseModel):
    conversation_id: str
    messages: int
    age_seconds: float
    in_flight: bool


class BrokerStatus(BaseModel):
    """One queue's state; ages in seconds, counts of messages. ``kafka``: on the Kafka
    transport, the sync workers' consumer group (its lag: records not committed, the oldest's
    age), where the events wait instead of the queue; None on the broker transport."""

    queue: str
    depth: int
    oldest_age_seconds: float
    in_flight: int
    delayed: int
    orphaned_claims: int
    orphaned_by: list[OrphanedClaim]
    throughput_last_minute: Throughput
    dead_letters: int
    dead_letters_total: int
    dead_letters_last_hour: int
    dead_letter_spike: bool
    conversation_lifetime_seconds: int
    long_running_conversations: list[LongConversation]
    change_capture: CdcStatus
    kafka: KafkaLag | None = None


def broker_status(platform: Platform) -> BrokerStatus:
    """The configured queue's status; ``DatabaseFailedError`` when the database refuses."""
    settings = platform.settings
    with driver_session(platform) as connection:
        data = read_broker_status(connection, Broker(settings.message_broker))
        capture = cdc_status(connection, settings.cdc)
    kafka = kafka_lag(settings.message_broker)
    return BrokerStatus.model_validate({**data, "change_capture": capture, "kafka": kafka})


class ThroughputMinute(BaseModel):
    """Messages of the queue completed and dead-lettered in the minute starting at ``minute``."""

    minute: datetime
    completed: int
    dead_lettered: int


def throughput_history(platform: Platform, minutes: int = 60) -> list[ThroughputMinute]:
    """The configured queue's throughput per minute over the last ``minutes`` minutes, oldest
    first (zeros included); ``DatabaseFailedError`` when the database refuses."""
    with driver_session(platform) as connection:
        rows = throughput_by_minute(connection, Broker(platform.settings.message_broker), minutes)
    return [ThroughputMinute.model_validate(row) for row in rows]
