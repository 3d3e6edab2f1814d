"""`hartonomous up`: the main job in one supervised process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from hartonomous.cli.context import CliContext, cli_context

if TYPE_CHECKING:
    from hartonomous.db import Database

log = structlog.get_logger(__name__)


def up(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (0: any free port)")] = None,
) -> None:
    """Start everything: database, migrations, seed data, workers and the HTTP API."""
    # Imported here: the web stack, the workers and their libraries take seconds to import,
    # which other commands never need.
    from hartonomous.cli.http_server import serve_api, shutdown_on_signals
    from hartonomous.cli.http_workers import serve_api_workers
    from hartonomous.db import open_database
    from hartonomous.db.embedded import prepare_data_dir
    from hartonomous.ingest.jobs import interrupt_abandoned_jobs
    from hartonomous.messaging.transport import check_transport
    from hartonomous.ops.instance import InstanceLock
    from hartonomous.ops.provision import installed_pgvector, provision
    from hartonomous.ops.seed import seed
    from hartonomous.services.backup import wal_receiver_services
    from hartonomous.services.inference import worker_service
    from hartonomous.services.platform import api_platform
    from hartonomous.services.sync_control import sync_pause
    from hartonomous.sync.service import sync_services

    state = cli_context(ctx)
    settings = state.settings()
    listen_host = host or settings.server.host
    listen_port = settings.server.port if port is None else port
    # Kafka unreachable (or without its topic): refused before anything starts, so nothing
    # is left running (the embedded database is not started).
    check_transport(settings.message_broker)
    with shutdown_on_signals():
        prepare_data_dir(settings.data_dir)
        with (
            InstanceLock(settings.data_dir),
            open_database(
                settings, require_current_schema=False, embedded_start="initialise"
            ) as database,
        ):
            provision(database, settings)
            log.info(
                "database_ready",
                server_version=database.facts.server_version,
                # Read after provisioning: the facts were gathered before the extension existed.
                pgvector=installed_pgvector(database.engine),
                embedded=database.embedded,
            )
            report = seed(database.engine, settings)
            interrupted = interrupt_abandoned_jobs(database.engine)
            if interrupted:
                log.warning("ingestion jobs interrupted", job_ids=[str(j) for j in interrupted])

            # Said at start (a restored directory keeps its source's pause): nothing syncs.
            paused: list[str] = []

            announce = _announcer(state, database, report.sample_api_key, paused)

            services = [
                *sync_services(database.url, settings),
                worker_service(database.url, database.engine, settings),
                *wal_receiver_services(database, settings),
            ]
            with api_platform(database, settings) as platform:
                pause = sync_pause(platform)
                if pause.paused:
                    paused.append(pause.describe())
                    log.warning("sync_paused_at_start", state=pause.describe())
                for service in services:
                    service.start()
                try:
                    if settings.server.workers == 1:
                        serve_api(platform, listen_host, listen_port, announce)
                    else:  # worker processes, each a `serve` on this database (http_workers.py)
                        serve_api_workers(
                            settings, listen_host, listen_port, settings.server.workers, announce
                        )
                finally:
                    for service in services:
                        service.stop()
            log.info("up_stopping")


def _announcer(
    state: CliContext, database: Database, sample_api_key: str | None, paused: list[str]
) -> Callable[[str], None]:
    """What `up` says once it serves at a URL: where, the database, a pause kept in the data
    directory (``paused``, filled before serving) and the sample API key, shown once."""

    def announce(url: str) -> None:
        note = (
            f"; {paused[0]}: nothing is synchronised until `hartonomous sync resume`"
            if paused
            else ""
        )
        state.emit(
            {
                "url": url,
                "database": database.display_url,
                "embedded": database.embedded,
                "sync_paused": paused[0] if paused else None,
            },
            f"Hartonomous is up at {url} (database: {database.display_url}){note}",
        )
        if sample_api_key and not state.as_json:
            sys.stdout.write(f"sample API key (shown once): {sample_api_key}\n")
            sys.stdout.flush()

    return announce
