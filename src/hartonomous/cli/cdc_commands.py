"""`hartonomous ces-consumer [--once]`: WAL changes → CloudEvents on the broker."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context


def _lag(status: dict[str, object]) -> str:
    return (
        f"slot {status['slot']} "
        + ("present" if status["slot_exists"] else "MISSING")
        + f", lag {status['lag_bytes']} bytes, publication {status['publication']} "
        + ("present" if status["publication_exists"] else "MISSING")
        + f" ({', '.join(status['published_tables'])})"  # type: ignore[arg-type]
    )


def ces_consumer(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Drain what is committed, then exit")
    ] = False,
) -> None:
    """Capture changes of the captured tables as CloudEvents on the broker."""
    from hartonomous.cdc import CesConsumer
    from hartonomous.db import open_database

    state = cli_context(ctx)
    settings = state.settings()
    with open_database(settings) as database:
        consumer = CesConsumer(database.url, settings)
        try:
            if once:
                consumer.acquire(threading.Event())
                consumer.prepare()
                consumer.prune_history()
                events = consumer.drain()
                status = consumer.status()
                state.emit(
                    {"events": events, **status}, f"enqueued {events} event(s); " + _lag(status)
                )
                return
            consumer.prepare()
            state.emit(consumer.status(), "ces-consumer running; " + _lag(consumer.status()))
        finally:
            consumer.close()
        stop = threading.Event()

        def request_stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
        consumer.run(stop)
