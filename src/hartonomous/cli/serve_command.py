"""`hartonomous serve`: the HTTP API alone, beside a running `up` or on `database.url`."""

from __future__ import annotations

from typing import Annotated

import typer

from hartonomous.cli.context import cli_context


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (0: any free port)")] = None,
) -> None:
    """Serve the HTTP API only: no migrations, no CES consumer, no sync worker.

    Runs against `database.url`, or the embedded server a running `hartonomous up` started in
    the same data dir; several can run beside one `up`.
    """
    # Imported here: the web stack takes seconds to import, which other commands never need.
    from hartonomous.cli.http_server import serve_api, shutdown_on_signals
    from hartonomous.services.platform import open_serving_platform

    state = cli_context(ctx)
    settings = state.settings()
    with shutdown_on_signals(), open_serving_platform(settings) as platform:
        database = platform.database
        assert database is not None  # open_serving_platform always opens one

        def announce(url: str) -> None:
            state.emit(
                {"url": url, "database": database.display_url, "embedded": database.embedded},
                f"Hartonomous API serving at {url} (database: {database.display_url})",
            )

        serve_api(
            platform,
            host or settings.server.host,
            settings.server.port if port is None else port,
            announce,
        )
