"""What application services run against: the database engines and the effective settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine

from hartonomous.config import Settings
from hartonomous.db import Database, head_revision, open_database
from hartonomous.db.api_role import api_role_url
from hartonomous.db.connection import open_engine
from hartonomous.db.isolation import scope_to_bound_tenant
from hartonomous.db.runtime import EmbeddedStart
from hartonomous.messaging.transport import Transport, open_transport

__all__ = ["Platform", "api_platform", "open_platform", "open_serving_platform"]


@dataclass(frozen=True)
class Platform:
    """An open database and the settings every service reads its limits from.

    ``engine`` is what tenant work runs on (services only: entry points never touch it). In the
    HTTP API it connects as the API role, bound by row-level security to the tenant of the
    authenticated request (``hartonomous.db.tenant_context``): with no tenant bound it
    sees no tenant-scoped row (docs/security.md, "Isolation"). ``maintenance_engine`` connects
    as the database owner and sees every tenant: services that must (tenant administration,
    dead letters, graph repair and replay, authentication itself) use it and say so. In the
    CLI, on the database's own machine, both are the owner's engine (the default when
    ``maintenance_engine`` is not given). ``migrations_head`` is the revision this code needs.

    Events a service sends itself (usage events, catch-up's re-emitted events) go on
    ``transport()``, the transport the sync workers read; ``close`` releases it.
    """

    engine: Engine
    settings: Settings
    migrations_head: str
    database: Database | None = None
    maintenance_engine: Engine = field(default=None)  # type: ignore[assignment]

    _transports: list[Transport] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.maintenance_engine is None:
            object.__setattr__(self, "maintenance_engine", self.engine)

    def transport(self) -> Transport:
        """The transport `[message_broker] transport` names (the broker, or Kafka), opened on
        first use and kept (one Kafka producer for the process, not one per request)."""
        with self._lock:
            if not self._transports:
                self._transports.append(open_transport(self.settings.message_broker))
            return self._transports[0]

    def close(self) -> None:
        """Release the transport's clients (a Kafka producer flushes what it holds)."""
        with self._lock:
            while self._transports:
                self._transports.pop().close()


@contextmanager
def open_platform(
    settings: Settings,
    *,
    require_current_schema: bool = True,
    embedded_start: EmbeddedStart = "start",
    read_only: bool = False,
) -> Iterator[Platform]:
    """Open the configured database (``db.open_database``) as a ``Platform``; close it after.

    ``embedded_start``: ``initialise`` only for the commands that may create a cluster (`db
    upgrade`); every other command is refused on a data dir without one (``NoClusterError``)
    and joins, never starts, the server of a running `up` (``EmbeddedNotRunningError``).

    Both engines are the owner's (the CLI's maintenance path). Raises ``UnavailableError``
    subclasses when the database cannot be used or (with ``require_current_schema``) its
    migrations are not at head. ``read_only``: the command writes nothing (an embedded server
    it starts does not archive: ``db.open_database``).
    """
    with open_database(
        settings,
        require_current_schema=require_current_schema,
        embedded_start=embedded_start,
        read_only=read_only,
    ) as database:
        platform = Platform(
            engine=database.engine,
            settings=settings,
            migrations_head=head_revision(),
            database=database,
        )
        try:
            yield platform
        finally:
            platform.close()


@contextmanager
def api_platform(database: Database, settings: Settings) -> Iterator[Platform]:
    """The ``Platform`` the HTTP API runs on over an open ``database``.

    ``engine`` connects as the API role (``db.api_role.api_role_url``) and starts every
    transaction with the bound tenant; ``maintenance_engine`` is ``database.engine``. Raises
    ``ApiRoleError`` when the API role's credentials are unknown.
    """
    engine = scope_to_bound_tenant(
        open_engine(api_role_url(settings, database.url), settings.database)
    )
    platform = Platform(
        engine=engine,
        settings=settings,
        migrations_head=head_revision(),
        database=database,
        maintenance_engine=database.engine,
    )
    try:
        yield platform
    finally:
        platform.close()
        engine.dispose()


@contextmanager
def open_serving_platform(settings: Settings) -> Iterator[Platform]:
    """For `serve`: the API's ``Platform`` on a database someone else provisions and runs.

    ``database.url``, or the embedded server that a running `up` started in the data dir (this
    never starts, initialises or migrates a server). Raises ``EmbeddedNotRunningError`` when
    no embedded server runs there, ``SchemaNotCurrentError`` when migrations are not at head.
    """
    with (
        open_database(settings, embedded_start="join") as database,
        api_platform(database, settings) as platform,
    ):
        yield platform
