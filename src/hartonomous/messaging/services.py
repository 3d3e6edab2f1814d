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
    on_abandon: Callable[[], object] | None = None
    """Run when ``stop`` gives up waiting for the thread (the inference worker gives back the
    job it holds)."""
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
        """Ask the service to stop and wait up to ``timeout`` seconds; a thread still busy
        then is abandoned (it dies with the process) after ``on_abandon`` has run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self.on_abandon is not None:
                log.warning("service_abandoned", service=self.name, waited_seconds=timeout)
                try:
                    self.on_abandon()
                except Exception as exc:  # noqa: BLE001 - the stop goes on; the log says why
                    log.error(
                        "service_abandon_failed",
                        service=self.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
