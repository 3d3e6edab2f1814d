"""The service lifecycle every background consumer shares (the CES consumer, consumer loops).

`serve` turns a service's loop until ``stop`` is set: each turn does one batch, beats
`running`, then rests as the batch's result says (idle waits end early on new work). While
the sync pause is on it only beats `paused`. A failed turn is logged, beaten `failing` (alive
but not getting through, so `/health/ready` does not count it as working) and retried after
``failure_wait`` seconds; an exception of ``fatal`` ends the service. The heartbeat ends
`stopped` or `failed` with the reason (docs/operations.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import psycopg
import structlog

from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.pause import held_by_pause
from hartonomous.messaging.spans import untraced

log = structlog.get_logger(__name__)
T = TypeVar("T")


def serve(
    stop: threading.Event,
    beat: Heartbeat | None,
    turn: Callable[[], T],
    rest: Callable[[T], None],
    *,
    failure_wait: float,
    failure_event: str,
    pause_connection: Callable[[], psycopg.Connection[Any]] | None = None,
    fatal: tuple[type[BaseException], ...] = (),
    hold: Callable[[float], None] | None = None,
) -> None:
    """Call ``turn`` (one batch), then ``rest`` with its result, until ``stop`` is set.

    ``pause_connection`` gives the session that reads the sync pause (None: not pausable);
    ``hold(seconds)`` is how a paused turn waits (default ``stop.wait``: `Transport.hold`).
    Raises what ``turn`` raises of ``fatal``, after ending the heartbeat `failed`.
    """
    if beat is not None:
        beat.beat("starting")
    ended: tuple[Literal["stopped", "failed"], str | None] = ("failed", "ended unexpectedly")
    try:
        while not stop.is_set():
            try:
                if beat is not None and pause_connection is not None:
                    # Read every turn: an untraced poll, like the receive it guards.
                    with untraced():
                        held = held_by_pause(pause_connection(), beat, stop, hold)
                    if held:
                        continue
                result = turn()
            except fatal:
                raise
            except Exception as exc:  # noqa: BLE001 - the service outlives any one failure
                log.error(failure_event, error=f"{type(exc).__name__}: {exc}")
                if beat is not None:
                    beat.beat("failing", f"{type(exc).__name__}: {exc}")
                stop.wait(failure_wait)
                continue
            if beat is not None:
                beat.beat("running")
            rest(result)
        ended = ("stopped", None)
    except BaseException as exc:
        ended = ("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if beat is not None:
            beat.end(*ended)
