"""Graph maintenance: status, repair (rebuild the SQL graph), replay (re-project into Neo4j).

The work is `sync.maintenance`'s (docs/sync.md, "Maintenance"); these are operator (admin)
use cases over the whole platform.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Literal

from neo4j.exceptions import DriverError, Neo4jError
from pydantic import BaseModel

from hartonomous.backup.neo4j_dump import Neo4jDump, dump_database, load_database, neo4j_admin
from hartonomous.cdc.replication import CdcStatus, cdc_status
from hartonomous.config import Settings
from hartonomous.errors import UnavailableError, UsageError
from hartonomous.messaging.transport import open_transport
from hartonomous.services.health import KafkaLag, kafka_lag
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import dedicated_session
from hartonomous.sync import maintenance
from hartonomous.sync.catch_up import CaptureWait, catch_up, catch_up_neo4j

__all__ = [
    "GraphCatchUp",
    "GraphRepair",
    "GraphReplay",
    "GraphStatus",
    "ProjectionNotConfiguredError",
    "graph_backup",
    "graph_catch_up",
    "graph_repair",
    "graph_replay",
    "graph_restore",
    "graph_status",
    "require_projection",
]

_SESSION_NAME = "hartonomous-graph"


class ProjectionNotConfiguredError(UsageError):
    """Replay asked for while `[neo4j] uri` is not set."""

    code = "projection-not-configured"


class GraphTable(BaseModel):
    """Rows of graph_nodes or graph_edges; the unprojected figures are None without Neo4j."""

    rows: int
    unprojected: int | None
    oldest_unprojected_seconds: float | None


class EventBacklog(BaseModel):
    pending_events: int
    oldest_event_seconds: float | None


class GraphStatus(BaseModel):
    """``queue``: the broker's queue; ``kafka``: on the Kafka transport, the sync workers'
    consumer group (its lag: the events waiting there instead); None on the broker."""

    neo4j_projection: Literal["on", "off"]
    graph_nodes: GraphTable
    graph_edges: GraphTable
    queue: EventBacklog
    ledger_rows: int
    counters: dict[str, int]
    change_capture: CdcStatus
    kafka: KafkaLag | None = None


class GraphRepair(BaseModel):
    """What a repair did: source rows read per table, upserts, orphans removed, rows refused."""

    rows: dict[str, int]
    nodes: int
    edges: int
    invalid: dict[str, int]
    failed: dict[str, int]
    errors: list[str]
    removed_nodes: int
    removed_edges: int


class GraphReplay(BaseModel):
    nodes: int
    edges: int
    removed_nodes: int
    removed_edges: int
    since: datetime | None


def graph_status(platform: Platform, *, kafka: bool = True) -> GraphStatus:
    """Graph sizes, projection lag (Neo4j on), pending events, ledger rows, sync counters;
    on the Kafka transport the consumer group's lag unless ``kafka`` is False (a caller that
    read it already)."""
    settings = platform.settings
    projecting = bool(settings.neo4j.uri)
    with dedicated_session(platform, _SESSION_NAME) as connection:
        data = maintenance.status(connection, settings.message_broker.queue_name)
        capture = cdc_status(connection, settings.cdc)
    if not projecting:
        # Nothing is projected without Neo4j: "unprojected" would count every row.
        for table in ("graph_nodes", "graph_edges"):
            data[table].update(unprojected=None, oldest_unprojected_seconds=None)
    return GraphStatus.model_validate(
        {
            **data,
            "neo4j_projection": "on" if projecting else "off",
            "change_capture": capture,
            "kafka": kafka_lag(settings.message_broker) if kafka else None,
        }
    )


def graph_repair(platform: Platform, batch_size: int = 1000) -> GraphRepair:
    """Rebuild graph_nodes / graph_edges from atoms, holdings, relations, models and jobs."""
    with dedicated_session(platform, _SESSION_NAME) as connection:
        report = maintenance.repair(connection, batch_size)
    return GraphRepair(
        rows=report.rows,
        nodes=report.nodes,
        edges=report.edges,
        invalid=report.invalid,
        failed=report.failed,
        errors=report.errors,
        removed_nodes=report.removed_nodes,
        removed_edges=report.removed_edges,
    )


def require_projection(settings: Settings) -> None:
    """``ProjectionNotConfiguredError`` unless `[neo4j] uri` is set (replay's precondition)."""
    if not settings.neo4j.uri:
        raise ProjectionNotConfiguredError(
            "graph replay needs [neo4j] uri (HARTONOMOUS_NEO4J__URI)"
        )


def graph_replay(
    platform: Platform, *, since: datetime | None = None, batch_size: int = 1000
) -> GraphReplay:
    """Re-project the SQL graph (rows changed at or after ``since``, or all) into Neo4j.

    Without ``since`` it also deletes from Neo4j what the SQL graph no longer has. Raises
    ``ProjectionNotConfiguredError`` without `[neo4j] uri`, ``UsageError`` for a ``since``
    without a UTC offset, ``UnavailableError`` when Neo4j cannot be reached.
    """
    from hartonomous.sync.projector import Neo4jProjector

    settings = platform.settings
    require_projection(settings)
    if since is not None and since.tzinfo is None:
        raise UsageError(f"since {since.isoformat()!r} needs a UTC offset (e.g. +00:00)")
    projector = Neo4jProjector(settings.neo4j)
    try:
        with dedicated_session(platform, _SESSION_NAME) as connection:
            report = maintenance.replay(connection, projector, since=since, batch_size=batch_size)
    except (DriverError, Neo4jError) as exc:
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise UnavailableError(f"neo4j: {first}") from exc
    finally:
        projector.close()
    return GraphReplay(
        nodes=report.nodes,
        edges=report.edges,
        removed_nodes=report.removed_nodes,
        removed_edges=report.removed_edges,
        since=since,
    )


class GraphCatchUp(BaseModel):
    """What `graph catch-up` found missing and re-emitted (docs/sync.md, "Catch-up")."""

    since: datetime | None
    rows: dict[str, int]
    graph_gaps: dict[str, int]
    ledger_gaps: dict[str, int]
    nodes_written: int
    edges_written: int
    events_emitted: int
    events_already_queued: int
    # None when Neo4j projection is off.
    neo4j_nodes_missing: int | None
    neo4j_edges_missing: int | None


def graph_catch_up(
    platform: Platform, *, since: datetime | None = None, batch_size: int = 500
) -> GraphCatchUp:
    """Re-emit what the SQL graph, the ledger and (when configured) Neo4j lack relative to
    the source tables, rows changed at or after ``since`` (or all). Idempotent.

    Raises ``UsageError`` for a ``since`` without a UTC offset, ``UnavailableError`` when
    Neo4j cannot be reached or a running CES consumer does not catch up within 120 s
    (``CaptureBehindError``: rows not yet billed may be on their way, nothing re-emitted).
    """
    from hartonomous.sync.projector import Neo4jProjector

    settings = platform.settings
    if since is not None and since.tzinfo is None:
        raise UsageError(f"since {since.isoformat()!r} needs a UTC offset (e.g. +00:00)")
    transport = open_transport(settings.message_broker)
    with closing(transport), dedicated_session(platform, _SESSION_NAME) as connection:
        # Waits for a running CES consumer: what it has not enqueued yet is not a gap.
        capture = CaptureWait(
            settings.cdc.slot_name,
            settings.cdc.consumer_name,
            publication_name=settings.cdc.publication_name,
        )
        report = catch_up(
            connection, transport, since=since, batch_size=batch_size, capture=capture
        )
        neo4j = None
        if settings.neo4j.uri:
            projector = Neo4jProjector(settings.neo4j)
            try:
                neo4j = catch_up_neo4j(connection, projector, since=since, batch_size=batch_size)
            except (DriverError, Neo4jError) as exc:
                first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
                raise UnavailableError(f"neo4j: {first}") from exc
            finally:
                projector.close()
    return GraphCatchUp(
        since=since,
        rows=report.rows,
        graph_gaps=report.graph_gaps,
        ledger_gaps=report.ledger_gaps,
        nodes_written=report.nodes_written,
        edges_written=report.edges_written,
        events_emitted=report.events_emitted,
        events_already_queued=report.events_already_queued,
        neo4j_nodes_missing=None if neo4j is None else neo4j.nodes_missing,
        neo4j_edges_missing=None if neo4j is None else neo4j.edges_missing,
    )


def graph_backup(settings: Settings, to_dir: Path) -> Neo4jDump:
    """Dump the Neo4j database (`[neo4j] database`, else `neo4j`) with neo4j-admin into
    ``to_dir`` (backup/neo4j_dump.py: what it needs, what it refuses and raises). Neither
    PostgreSQL nor the running Neo4j is contacted."""
    admin = neo4j_admin(settings.neo4j.admin_command)
    return dump_database(admin, settings.neo4j.database or "neo4j", to_dir)


def graph_restore(settings: Settings, from_dir: Path, *, overwrite: bool) -> Neo4jDump:
    """Load ``from_dir``'s dump into the (stopped) Neo4j database with neo4j-admin; then start
    Neo4j and run `graph catch-up` for what changed after the dump (docs/operations.md)."""
    admin = neo4j_admin(settings.neo4j.admin_command)
    database = settings.neo4j.database or "neo4j"
    return load_database(admin, database, from_dir, overwrite=overwrite)
