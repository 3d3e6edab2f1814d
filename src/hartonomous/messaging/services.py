"""Background services `up` runs in daemon threads (the CES consumer, the sync worker).

Each service runs `run(stop_event)` in a daemon thread with its own database sessions, so it
shares nothing with the HTTP server but the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)
_STOP_TIMEOUT_SECONDS = 10.0


@dataclass
class BackgroundService:
    name: str
    target: Callable[[threading.Event], None]
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        log.info("service_started", service=self.name)
        try:
            self.target(self._stop)
        except Exception as exc:  # noqa: BLE001 - report and end this thread, not the process
            log.error("service_crashed", service=self.name, error=f"{type(exc).__name__}: {exc}")
        log.info("service_stopped", service=self.name)

    def stop(self, timeout: float = _STOP_TIMEOUT_SECONDS) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
