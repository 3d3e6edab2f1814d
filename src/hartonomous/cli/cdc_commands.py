"""`hartonomous ces-consumer [--once]`: WAL changes → CloudEvents on the broker."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hartonomous.cli.context import CliContext, cli_context
from hartonomous.services import open_platform

if TYPE_CHECKING:
    from hartonomous.services.background import SlotInUse


def _lag(status: dict[str, object]) -> str:
    age = status["lag_seconds"]
    return (
        f"slot {status['slot']} "
        + ("present" if status["slot_exists"] else "MISSING")
        + f", lag {status['lag_bytes']} bytes, age {'-' if age is None else f'{age}s'}"
        + (" (LAGGING)" if status["lagging"] else "")
        + f", {status['dead_lettered_total']} change(s) set aside"
        + f", {status['truncations_total']} TRUNCATE(s) not captured"
        + f", publication {status['publication']} "
        + ("present" if status["publication_exists"] else "MISSING")
        + f" ({', '.join(status['published_tables'])})"  # type: ignore[arg-type]
    )


def _report_in_use(state: CliContext, in_use: SlotInUse) -> None:
    """Answer at once when the running service (or another consumer) holds the slot."""
    holder = in_use.holder
    status = in_use.status
    who = (
        "another session"
        if holder is None
        else f"pid {holder.pid} ({holder.application_name or 'unnamed'}"
        + (f", since {holder.backend_start:%Y-%m-%d %H:%M:%S%z}" if holder.backend_start else "")
        + ")"
    )
    state.emit(
        {
            "events": 0,
            "slot_in_use_by": None
            if holder is None
            else {
                "pid": holder.pid,
                "application_name": holder.application_name,
                "backend_start": holder.backend_start,
            },
            **status,
        },
        f"slot {status['slot']} is in use by the running service ({who}), which is "
        f"consuming it; nothing done here. " + _lag(status),
    )


def ces_consumer(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Drain what is committed, then exit")
    ] = False,
) -> None:
    """Capture changes of the captured tables as CloudEvents on the broker."""
    from hartonomous.services.background import (
        SlotInUse,
        drain_change_capture,
        serve_change_capture,
    )

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        if once:
            drained = drain_change_capture(platform)
            if isinstance(drained, SlotInUse):
                _report_in_use(state, drained)
                return
            status = drained.status
            state.emit(
                {"events": drained.events, **status},
                f"enqueued {drained.events} event(s); " + _lag(status),
            )
            return
        stop = threading.Event()

        def request_stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        def started(status: dict[str, Any]) -> None:
            state.emit(status, "ces-consumer running; " + _lag(status))

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
        serve_change_capture(platform, stop, started)
