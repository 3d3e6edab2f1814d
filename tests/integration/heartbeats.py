"""Heartbeats for tests that check readiness without running `up`'s services."""

from __future__ import annotations

from hartonomous.config import Settings
from hartonomous.config.sections import SERVICE_NAMES
from hartonomous.messaging.heartbeat import Heartbeat


def beat_every_service(url: str, settings: Settings | None = None) -> None:
    """Record a fresh ``running`` beat for each background service, as their loops do."""
    for name in SERVICE_NAMES:
        beat = Heartbeat(url, settings or Settings(), name)
        beat.beat("running")
        beat.end_session()
