"""Heartbeats for tests that check readiness without running `up`'s services."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hartonomous.config import Settings
from hartonomous.config.sections import SERVICE_NAMES
from hartonomous.messaging.heartbeat import Heartbeat


def beat_every_service(url: str, settings: Settings | None = None) -> None:
    """Record a fresh ``running`` beat for each background service, as their loops do."""
    for name in SERVICE_NAMES:
        beat = Heartbeat(url, settings or Settings(), name)
        beat.beat("running")
        beat.end_session()


@contextmanager
def serving(run: Callable[[threading.Event], None]) -> Iterator[None]:
    """Run a service loop (``run(stop)``) in a thread for the block; stop and join it after."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(120)
    assert not thread.is_alive()
