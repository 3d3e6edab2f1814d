"""Graph maintenance: status, repair (rebuild the SQL graph), replay (re-project into Neo4j).

The work is `sync.maintenance`'s (docs/sync.md, "Maintenance"); these are operator (admin)
use cases over the whole platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from neo4j.exceptions import DriverError, Neo4jError
from pydantic import BaseModel

from hartonomous.cdc.replication import CdcStatus, cdc_status
from hartonomous.config import Settings
from hartonomous.errors import UnavailableError, UsageError
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import dedicated_session
from hartonomous.sync import maintenance

__all__ = [
    "GraphRepair",
    "GraphReplay",
    "GraphStatus",
    "ProjectionNotConfiguredError",
    "graph_repair",
    "graph_replay",
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
    neo4j_projection: Literal["on", "off"]
    graph_nodes: GraphTable
    graph_edges: GraphTable
    queue: EventBacklog
    ledger_rows: int
    counters: dict[str, int]
    change_capture: CdcStatus


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


def graph_status(platform: Platform) -> GraphStatus:
    """Graph sizes, projection lag (Neo4j on), pending events, ledger rows, sync counters."""
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
