"""The admin UI dashboard's figures in one read (docs/admin-ui.md, "Dashboard").

Gathered from the use cases the HTTP API and CLI answer with: ``broker_status`` (depth, oldest
message age, in-flight, dead letters, change-capture lag), ``graph_status`` (projection lag),
``throughput_history`` (messages per minute, the last hour), ``readiness`` (service
heartbeats), ``running_jobs`` and ``ledger_report`` (today's billed DCU
and cost). Platform figures are an operator's (admin role); a tenant's own figures are anyone's.
``state`` and ``problems`` are ``hartonomous status``'s verdicts on whether work flows
(``services.status.flow_checks``: one rule set for both): the worst verdict, and each check not
OK as "name: detail" (a paused sync is a WARN naming who paused it, since when and why).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel

from hartonomous.errors import HartonomousError
from hartonomous.services.broker import ThroughputMinute, broker_status, throughput_history
from hartonomous.services.graph import graph_status
from hartonomous.services.health import ServiceHeartbeat, readiness
from hartonomous.services.ingestion import running_jobs
from hartonomous.services.ledger import ledger_report
from hartonomous.services.platform import Platform
from hartonomous.services.status import StatusCheck, Verdict, flow_checks, worst

__all__ = ["JobProgress", "Overview", "PlatformFigures", "operations_overview"]


class JobProgress(BaseModel):
    job_id: str
    files_done: int
    files_total: int
    files_failed: int
    started_at: datetime


class PlatformFigures(BaseModel):
    """Platform-wide figures (seconds, counts, bytes); None where nothing is measured
    (projection lag without Neo4j, capture lag before the consumer first caught up)."""

    depth: int
    oldest_age_seconds: float
    in_flight: int
    completed_per_second: float
    dead_letters: int
    cdc_lag_bytes: int | None
    cdc_lag_seconds: float | None
    projection: str  # "on" | "off": Neo4j projection configured
    projection_lag_seconds: float | None
    unprojected_rows: int | None
    services: list[ServiceHeartbeat]
    throughput_last_hour: list[ThroughputMinute]
    """Completed and dead-lettered messages per minute, the last 60 minutes, oldest first."""


class Overview(BaseModel):
    """``tenant_id``'s figures; for an operator the platform's, ``state`` (the worst flow
    verdict: FAIL is shown as stalled, WARN as a warning) and ``problems`` (each check not OK,
    "name: detail"); for anyone else ``state`` OK and no problems."""

    tenant_id: str
    at: datetime
    jobs: list[JobProgress]
    billed_dcu_today: Decimal
    billed_cost_today: Decimal
    platform: PlatformFigures | None
    state: Verdict
    problems: list[str]


def operations_overview(platform: Platform, tenant_id: str, *, operator: bool) -> Overview:
    """The dashboard's figures for ``tenant_id`` (bound on ``platform.engine`` by the caller),
    with the platform's when ``operator``. Raises what the underlying use cases raise
    (``DatabaseFailedError``, ``UnavailableError``)."""
    today = datetime.now(UTC).date()
    report = ledger_report(
        platform,
        since=today,
        until=today + timedelta(days=1),
        group_by=(),
        tenant_id=tenant_id,
    )
    jobs = [
        JobProgress(
            job_id=job.job_id,
            files_done=job.files_done,
            files_total=job.files_total,
            files_failed=job.files_failed,
            started_at=job.created_at,
        )
        for job in running_jobs(platform, tenant_id)
    ]
    figures, checks = _platform_figures(platform) if operator else (None, [])
    return Overview(
        tenant_id=tenant_id,
        at=datetime.now(UTC),
        jobs=jobs,
        billed_dcu_today=report.total.total_dcu,
        billed_cost_today=report.total.total_cost,
        platform=figures,
        state=worst(checks),
        problems=[f"{c.name}: {c.detail}" for c in checks if c.verdict != "OK"],
    )


def _platform_figures(platform: Platform) -> tuple[PlatformFigures, list[StatusCheck]]:
    broker = broker_status(platform)
    graph = graph_status(platform, kafka=False)
    try:
        ready = readiness(platform)
    except HartonomousError as exc:
        checks = [StatusCheck("database", "FAIL", str(exc))]
        services: list[ServiceHeartbeat] = []
    else:
        checks = flow_checks(platform, ready, broker)
        services = ready.services
    lags = [
        table.oldest_unprojected_seconds
        for table in (graph.graph_nodes, graph.graph_edges)
        if table.oldest_unprojected_seconds is not None
    ]
    unprojected = [
        table.unprojected
        for table in (graph.graph_nodes, graph.graph_edges)
        if table.unprojected is not None
    ]
    # On Kafka the events wait on the topic: the group's lag is queue depth too.
    kafka = broker.kafka if broker.kafka is not None and broker.kafka.reachable else None
    figures = PlatformFigures(
        depth=broker.depth + ((kafka.lag or 0) if kafka is not None else 0),
        oldest_age_seconds=max(
            broker.oldest_age_seconds,
            (kafka.oldest_age_seconds or 0.0) if kafka is not None else 0.0,
        ),
        in_flight=broker.in_flight,
        completed_per_second=broker.throughput_last_minute.completed_per_second,
        dead_letters=broker.dead_letters,
        cdc_lag_bytes=broker.change_capture.lag_bytes,
        cdc_lag_seconds=broker.change_capture.lag_seconds,
        projection=graph.neo4j_projection,
        projection_lag_seconds=max(lags, default=None),
        unprojected_rows=sum(unprojected) if unprojected else None,
        services=services,
        throughput_last_hour=throughput_history(platform, 60),
    )
    return figures, checks
