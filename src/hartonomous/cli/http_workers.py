"""`serve --workers N` (and `up` with `[server] workers` > 1): N API server processes on one
listening socket, supervised by the command's own process.

One Python process serves requests on one interpreter lock: its event loop, its worker threads
and their hand-offs take turns, so under concurrent searches it leaves part of the cores idle
(docs/api.md, "Measured"). Each worker here is a fresh interpreter (``python -m
hartonomous.cli.http_workers``) that opens its own serving platform (engine pool, model) with
``open_serving_platform`` and runs uvicorn on the socket the supervisor bound and passed down;
the kernel hands each new connection to one of the workers that wait in ``accept``. Rate
limits hold across workers as across any API processes: their counters are in the database.

The supervisor talks to a worker over two pipes: the worker's stdin carries the pickled
``Settings`` and then stays open (end of file: the supervisor is gone, so the worker stops
itself, leaving no orphan even after a SIGKILL of the supervisor); the worker's stdout says
``ready`` once it accepts connections and reaches end of file when it exits. Workers run in
sessions of their own, so a terminal's Ctrl-C reaches the supervisor only, which stops every
worker with SIGTERM (uvicorn's graceful shutdown) and kills any still running after
``_STOP_SECONDS``. A worker that exits before it is ready stops them all (``WorkerFailedError``:
it would fail the same way again); one that exits later is logged and replaced.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import IO

import structlog

from hartonomous.cli.http_server import (
    bind,
    listening_url,
    serve_on,
    shutdown_on_signals,
)
from hartonomous.config import Settings
from hartonomous.errors import UnavailableError

log = structlog.get_logger(__name__)

_READY = b"ready\n"
# uvicorn's graceful shutdown (5 s) and the platform's close, with room to spare.
_STOP_SECONDS = 30.0


class WorkerFailedError(UnavailableError):
    """An API worker process exited before it accepted connections."""


class _Worker:
    """One worker process, started on ``sock`` with ``settings``."""

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hartonomous.cli.http_workers", str(sock.fileno())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout: IO[bytes] = self.process.stdout
        try:
            pickle.dump(settings, self.stdin)
            self.stdin.flush()
        except BrokenPipeError:
            pass  # exited at once: wait_ready() reports it

    def wait_ready(self) -> None:
        """Return once the worker accepts connections; ``WorkerFailedError`` if it exits."""
        while line := self.stdout.readline():
            if line == _READY:
                return
        code = self.process.wait()
        raise WorkerFailedError(
            f"API worker process {self.process.pid} exited with {code} before serving "
            "(its log above says why)"
        )

    def stop(self) -> None:
        """Ask the worker to stop (SIGTERM: uvicorn's graceful shutdown). Its stdin stays
        open until it is reaped: end of file would make it signal itself a second time."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def reap(self) -> int:
        """Wait for the worker's exit (kill it after ``_STOP_SECONDS``); its exit code."""
        try:
            code = self.process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("api_worker_killed", pid=self.process.pid, after_seconds=_STOP_SECONDS)
            self.process.kill()
            code = self.process.wait()
        for pipe in (self.stdin, self.stdout):
            with suppress(OSError):
                pipe.close()
        return code


def serve_api_workers(
    settings: Settings, host: str, port: int, workers: int, announce: Callable[[str], None]
) -> None:
    """Serve the API on ``host:port`` from ``workers`` processes; call ``announce(url)`` once
    every one accepts connections; return when stopped by SIGINT/SIGTERM (raised as
    ``ShutdownRequestedError`` by ``shutdown_on_signals``, which the caller holds), after
    stopping every worker. Raises ``PortUnavailableError`` (address taken) and
    ``WorkerFailedError`` (a worker exited before serving)."""
    sock = bind(host, port)
    running: list[_Worker] = []
    try:
        for _ in range(workers):
            running.append(_Worker(settings, sock))
        for worker in running:
            worker.wait_ready()
        log.info("api_workers_ready", pids=[worker.process.pid for worker in running])
        announce(listening_url(host, sock))
        _supervise(settings, sock, running)
    finally:
        for worker in running:
            worker.stop()
        for worker in running:
            worker.reap()
        sock.close()


def _supervise(settings: Settings, sock: socket.socket, running: list[_Worker]) -> None:
    """Replace each worker that exits, until a signal raises out of the wait."""
    with selectors.DefaultSelector() as selector:
        for worker in running:
            selector.register(worker.stdout, selectors.EVENT_READ, worker)
        while True:
            for key, _events in selector.select():
                worker = key.data
                assert isinstance(worker, _Worker)
                if os.read(worker.stdout.fileno(), 4096):
                    continue  # a stray line of the worker's: it still runs
                selector.unregister(worker.stdout)
                running.remove(worker)
                code = worker.reap()
                log.warning("api_worker_exited", pid=worker.process.pid, code=code)
                replacement = _Worker(settings, sock)
                running.append(replacement)
                replacement.wait_ready()
                selector.register(replacement.stdout, selectors.EVENT_READ, replacement)


def _stop_when_the_supervisor_goes() -> None:
    """End of file on stdin: the supervisor closed it or died; stop as if sent SIGTERM."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(fd: int) -> None:
    """A worker: the settings from stdin, then the API on the inherited socket ``fd``."""
    from hartonomous.observability import configure_logging
    from hartonomous.observability.tracing import configure_tracing
    from hartonomous.services.platform import open_serving_platform

    # Pickled (secrets included, which JSON dumps mask) by our supervisor over a private pipe.
    settings = pickle.load(sys.stdin.buffer)  # noqa: S301
    assert isinstance(settings, Settings)
    configure_logging(settings.logging.level, settings.logging.format)
    configure_tracing(settings.telemetry)
    sock = socket.socket(fileno=fd)
    threading.Thread(target=_stop_when_the_supervisor_goes, daemon=True).start()

    def ready() -> None:
        sys.stdout.buffer.write(_READY)
        sys.stdout.buffer.flush()

    # A stop raises ShutdownRequestedError out of serve_on: shutdown_on_signals logs it.
    with shutdown_on_signals(), open_serving_platform(settings) as platform:
        serve_on(platform, sock, ready)


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]))
