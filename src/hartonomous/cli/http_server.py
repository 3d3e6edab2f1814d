"""The HTTP server of `up` and `serve`: bind, announce, run uvicorn until a signal."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import structlog
import uvicorn

from hartonomous.api import create_app
from hartonomous.api.http_protocol import BoundedHeadProtocol
from hartonomous.api.shutdown import ShutdownNotice
from hartonomous.errors import UnavailableError
from hartonomous.services import Platform

log = structlog.get_logger(__name__)
_GRACEFUL_SHUTDOWN_SECONDS = 5


class PortUnavailableError(UnavailableError):
    """The address to listen on is taken or not allowed."""


class ShutdownRequestedError(BaseException):
    """Raised by our signal handler so every context manager unwinds (and stops PostgreSQL)."""


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# A stop that takes longer than this prints every thread's stack to stderr (and goes on), so
# an operator, or a CI log, sees what the stop waits for instead of a silent hang.
_STOP_STACKS_AFTER_SECONDS = 60


def _print_stacks_if_the_stop_hangs() -> None:
    # stderr may not be a file (a test runner capturing it): then there is nowhere to print.
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.dump_traceback_later(_STOP_STACKS_AFTER_SECONDS, exit=False, file=sys.stderr)


def _request_shutdown(signum: int, _frame: FrameType | None) -> None:
    _print_stacks_if_the_stop_hangs()
    raise ShutdownRequestedError(signal.Signals(signum).name)


@contextmanager
def shutdown_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``ShutdownRequestedError`` in the block (logged, not raised)."""
    previous = {sig: signal.signal(sig, _request_shutdown) for sig in _STOP_SIGNALS}
    try:
        yield
    except ShutdownRequestedError as requested:
        log.info("stopped", signal=str(requested))
    finally:
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); ``PortUnavailableError`` if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailableError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when its graceful shutdown begins, so that uploads
    still arriving answer 503 and event streams end (api/shutdown.py) instead of being
    cancelled at the timeout with a plain-text 500."""

    def __init__(self, config: uvicorn.Config, notice: ShutdownNotice) -> None:
        super().__init__(config)
        self._notice = notice
        self.stopped_by: signal.Signals | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._notice.trigger()
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(sig)
            _print_stacks_if_the_stop_hangs()
        super().handle_exit(sig, frame)


def listening_url(host: str, sock: socket.socket) -> str:
    """The URL clients reach a socket ``bind(host, …)`` returned at."""
    return f"http://{host}:{sock.getsockname()[1]}"


def serve_api(platform: Platform, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the API on ``host:port``; call ``announce(url)`` once listening; return on stop."""
    sock = bind(host, port)
    serve_on(platform, sock, lambda: announce(listening_url(host, sock)))


def serve_on(platform: Platform, sock: socket.socket, ready: Callable[[], None]) -> None:
    """Serve the API on the listening socket ``sock``; call ``ready()`` just before accepting;
    return on SIGINT/SIGTERM (then raise ``ShutdownRequestedError``, after a graceful stop)."""
    app = create_app(platform)
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            http=BoundedHeadProtocol,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
            lifespan="off",
        ),
        app.state.shutdown,
    )
    # uvicorn's own handler takes SIGINT/SIGTERM before we announce. Ours raises, and an
    # exception raised by a signal handler while uvloop runs a callback is logged and swallowed
    # (the timer it interrupted never fires): a signal arriving between the announcement and
    # uvicorn's ``capture_signals`` was lost and the process ran on. uvicorn's handler only sets
    # a flag, so it is safe at any point; the signal is re-raised as ours once the loop is gone.
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in _STOP_SIGNALS}
    try:
        ready()
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if server.stopped_by is not None:
        raise ShutdownRequestedError(server.stopped_by.name)
