"""`hartonomous up`: the main job in one supervised process."""

from __future__ import annotations

import signal
import socket
import sys
from types import FrameType
from typing import Annotated

import structlog
import typer
import uvicorn
from sqlalchemy import text

from hartonomous.api import create_app
from hartonomous.cli.context import cli_context
from hartonomous.db import Database, head_revision, open_database
from hartonomous.db.embedded import prepare_data_dir
from hartonomous.errors import UnavailableError
from hartonomous.ingest.jobs import interrupt_abandoned_jobs
from hartonomous.ops.instance import InstanceLock
from hartonomous.ops.provision import provision
from hartonomous.ops.seed import seed
from hartonomous.services import Platform
from hartonomous.sync.service import sync_services

log = structlog.get_logger(__name__)
_GRACEFUL_SHUTDOWN_SECONDS = 5


class PortUnavailableError(UnavailableError):
    pass


class _ShutdownRequestedError(BaseException):
    """Raised by our signal handler so every context manager unwinds (and stops PostgreSQL)."""


def _request_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise _ShutdownRequestedError(signal.Signals(signum).name)


def _bind(host: str, port: int) -> socket.socket:
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


def up(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (0: any free port)")] = None,
) -> None:
    """Start everything: database, migrations, seed data and the HTTP server."""
    state = cli_context(ctx)
    settings = state.settings()
    listen_host = host or settings.server.host
    listen_port = settings.server.port if port is None else port
    previous = {
        sig: signal.signal(sig, _request_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        prepare_data_dir(settings.data_dir)
        with (
            InstanceLock(settings.data_dir),
            open_database(settings, require_current_schema=False) as database,
        ):
            provision(database, settings)
            log.info(
                "database_ready",
                server_version=database.facts.server_version,
                pgvector=_installed_pgvector(database),
                embedded=database.embedded,
            )
            report = seed(database.engine, settings)
            interrupted = interrupt_abandoned_jobs(database.engine)
            if interrupted:
                log.warning("ingestion jobs interrupted", job_ids=[str(j) for j in interrupted])
            sock = _bind(listen_host, listen_port)
            bound_port = sock.getsockname()[1]
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(Platform(database.engine, settings, head_revision(), database)),
                    log_config=None,
                    timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
                    lifespan="off",
                )
            )
            url = f"http://{listen_host}:{bound_port}"
            state.emit(
                {"url": url, "database": database.display_url, "embedded": database.embedded},
                f"Hartonomous is up at {url} (database: {database.display_url})",
            )
            if report.sample_api_key and not state.as_json:
                sys.stdout.write(f"sample API key (shown once): {report.sample_api_key}\n")
                sys.stdout.flush()
            services = sync_services(database.url, settings)
            for service in services:
                service.start()
            try:
                server.run(sockets=[sock])
            finally:
                for service in services:
                    service.stop()
            log.info("up_stopping")
    except _ShutdownRequestedError as requested:
        log.info("up_stopped", signal=str(requested))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _installed_pgvector(database: Database) -> str | None:
    # Read after provisioning: the facts were gathered before migrations created the extension.
    with database.engine.connect() as connection:
        version: str | None = connection.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar_one_or_none()
    return version
