"""`hartonomous serve`: the HTTP API alone, beside a running `up` or on `database.url`."""

from __future__ import annotations

from typing import Annotated

import typer

from hartonomous.cli.context import cli_context


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (0: any free port)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Server processes sharing the port (\\[server] workers)"),
    ] = None,
) -> None:
    """Serve the HTTP API only: no migrations, no CES consumer, no sync worker.

    Runs against `database.url`, or the embedded server a running `hartonomous up` started in
    the same data dir; several can run beside one `up`. With more than one worker, this
    process checks the database, then supervises that many server processes on one port.
    """
    # Imported here: the web stack takes seconds to import, which other commands never need.
    from hartonomous.cli.http_server import serve_api, shutdown_on_signals
    from hartonomous.cli.http_workers import serve_api_workers
    from hartonomous.services.platform import open_serving_platform

    state = cli_context(ctx)
    settings = state.settings()
    processes = settings.server.workers if workers is None else workers
    listen_host = host or settings.server.host
    listen_port = settings.server.port if port is None else port
    with shutdown_on_signals(), open_serving_platform(settings) as platform:
        database = platform.database
        assert database is not None  # open_serving_platform always opens one

        def announce(url: str) -> None:
            state.emit(
                {"url": url, "database": database.display_url, "embedded": database.embedded},
                f"Hartonomous API serving at {url} (database: {database.display_url})",
            )

        if processes == 1:
            serve_api(platform, listen_host, listen_port, announce)
        else:
            # The platform opened above checked the database (running, at head, the API
            # role) for a clear refusal before any worker starts; each worker opens its own.
            serve_api_workers(settings, listen_host, listen_port, processes, announce)
