"""Liveness and readiness (docs/operations.md, "Heartbeats and readiness").

Ready means: the database answers, its migrations are at this code's head, change capture
keeps up, and every service in ``[health] expected_services`` has an instance whose last
heartbeat is fresher than ``heartbeat_stale_seconds`` and whose state is ``starting`` or
``running``. The first two failing raise ``NotReadyError`` (HTTP 503); the others make the
report ``degraded`` (HTTP 200: the API itself can serve, the background work needs an
operator), so readiness never says "ready" while work is stuck.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from hartonomous.cdc.replication import CdcStatus, cdc_status, uncaptured_changes
from hartonomous.config.sections import MessageBrokerSettings
from hartonomous.db.tables import broker_messages
from hartonomous.db.tables import service_heartbeats as beats
from hartonomous.db.tables.operations import beat_age_seconds, beat_seen_at, heartbeats_seen
from hartonomous.errors import UnavailableError
from hartonomous.messaging.broker import Broker, psycopg_connection
from hartonomous.messaging.pause import SyncPause, read_pause
from hartonomous.services.platform import Platform

__all__ = [
    "KafkaLag",
    "NotReadyError",
    "Readiness",
    "ServiceHeartbeat",
    "SyncControl",
    "kafka_lag",
    "readiness",
]

_WORKING_STATES = ("starting", "running")
# Instances that last beat longer ago than this are history, not reported (a restart is a new
# instance: host:pid).
_REPORTED_SECONDS = 86_400


class NotReadyError(UnavailableError):
    """The database does not answer, or its migrations are not at this code's head."""

    code = "not-ready"
    title = "Not ready"


class ServiceHeartbeat(BaseModel):
    """One instance of a background service as its heartbeat row shows it.

    ``age_seconds``: since its last beat (database clock); ``fresh``: younger than
    ``[health] heartbeat_stale_seconds``; ``working``: fresh and ``starting`` or ``running``.
    """

    service: str
    instance: str
    host: str
    pid: int
    state: Literal["starting", "running", "failing", "standby", "paused", "stopped", "failed"]
    detail: str | None
    started_at: datetime
    last_beat_at: datetime
    age_seconds: float
    fresh: bool
    working: bool


class CaptureLag(BaseModel):
    slot_exists: bool
    lag_bytes: int | None
    lag_seconds: float | None
    lagging: bool


class SyncControl(BaseModel):
    """The operator's `sync pause`; ``backlog``: queued events waiting (counted when paused):
    the database's queue, plus the consumer group's lag on the Kafka transport;
    ``uncaptured_bytes``: what waits before capture (see the field)."""

    paused: bool
    paused_at: datetime | None
    paused_by: str | None
    reason: str | None
    backlog: int | None
    # Paused: bytes of WAL waiting in the CDC slot when they hold changes of captured tables
    # (the CES consumer is paused too: they are not queued events yet); 0 when none do, None
    # when not paused or the slot could not be read.
    uncaptured_bytes: int | None = None


class KafkaPartitionLag(BaseModel):
    partition: int
    committed: int
    end: int
    lag: int


class KafkaLag(BaseModel):
    """The Kafka transport's consumer group (`[message_broker] transport = "kafka"`):
    ``reachable`` False with ``error`` when the cluster did not answer; ``lag`` records not
    committed in all, ``oldest_age_seconds`` of the oldest of them."""

    reachable: bool
    group: str
    topic: str
    lag: int | None = None
    oldest_age_seconds: float | None = None
    partitions: list[KafkaPartitionLag] = []
    error: str | None = None

    def describe(self) -> str:
        """One line: `kafka group G on topic T: N record(s) not committed, oldest Ss
        (partition P: L, …)`, or why Kafka did not answer."""
        head = f"kafka group {self.group} on topic {self.topic}: "
        if not self.reachable:
            return head + (self.error or "unreachable")
        lagging = self.lagging()
        return (
            head
            + f"{self.lag} record(s) not committed"
            + ("" if self.oldest_age_seconds is None else f", oldest {self.oldest_age_seconds}s")
            + (f" ({lagging})" if lagging else "")
        )

    def lagging(self) -> str:
        """The partitions that lag, as `partition N: lag`, comma-separated."""
        return ", ".join(f"partition {p.partition}: {p.lag}" for p in self.partitions if p.lag)


class Readiness(BaseModel):
    """``status`` ``ready`` or ``degraded``; ``detail`` says what is wrong when degraded."""

    status: Literal["ready", "degraded"]
    revision: str
    change_capture: CaptureLag
    sync: SyncControl
    services: list[ServiceHeartbeat]
    kafka: KafkaLag | None = None
    detail: str | None = None


def readiness(platform: Platform) -> Readiness:
    """The readiness report; ``NotReadyError`` when the database or its schema is not usable."""
    health = platform.settings.health
    try:
        with platform.engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if revision != platform.migrations_head:
                raise NotReadyError(
                    f"migrations at {revision or 'no revision'}, head is {platform.migrations_head}"
                )
            capture = cdc_status(psycopg_connection(connection), platform.settings.cdc)
            # The last beat: the row's write or, since, a statement on its heartbeat session.
            rows = connection.execute(
                select(
                    *(column for column in beats.c if column.name != "last_beat_at"),
                    beat_seen_at.label("last_beat_at"),
                    beat_age_seconds,
                )
                .select_from(heartbeats_seen)
                .where(beat_age_seconds.element < _REPORTED_SECONDS)
                .order_by(beats.c.service_name, beat_seen_at.desc())
            ).mappings()
            services = [_heartbeat(dict(row), health.heartbeat_stale_seconds) for row in rows]
            pause = read_pause(psycopg_connection(connection))
        backlog = _backlog(platform) if pause.paused else None
        uncaptured = _uncaptured_bytes(platform, capture) if pause.paused else None
    except DBAPIError as exc:
        first = next(iter(str(exc.orig).strip().splitlines()), type(exc.orig).__name__)
        raise NotReadyError(f"database unavailable: {first}") from exc
    kafka = kafka_lag(platform.settings.message_broker)
    if backlog is not None and kafka is not None and kafka.lag is not None:
        # On Kafka the events wait on the topic, not in the database's queue.
        backlog += kafka.lag
    problems = [
        _capture_problem(capture),
        _pause_problem(pause, backlog, uncaptured),
        _kafka_problem(kafka, health.backlog_alert_seconds),
    ] + [
        _service_problem(name, services, health.heartbeat_stale_seconds, pause.paused)
        for name in health.expected_services
    ]
    found = [problem for problem in problems if problem]
    return Readiness(
        status="degraded" if found else "ready",
        revision=str(revision),
        change_capture=CaptureLag(
            slot_exists=capture.slot_exists,
            lag_bytes=capture.lag_bytes,
            lag_seconds=capture.lag_seconds,
            lagging=capture.lagging,
        ),
        sync=SyncControl(**asdict(pause), backlog=backlog, uncaptured_bytes=uncaptured),
        services=services,
        kafka=kafka,
        detail="; ".join(found) or None,
    )


def kafka_lag(settings: MessageBrokerSettings) -> KafkaLag | None:
    """The consumer group's lag when the transport is Kafka (the client imported only then);
    None on the broker transport. Kafka not answering is ``reachable`` False, not raised."""
    if settings.transport != "kafka":
        return None
    from hartonomous.messaging.kafka import group_backlog

    kafka = settings.kafka
    try:
        backlog = group_backlog(settings)
    except UnavailableError as exc:
        return KafkaLag(
            reachable=False, group=kafka.consumer_group, topic=kafka.topic, error=str(exc)
        )
    return KafkaLag(
        reachable=True,
        group=backlog.group,
        topic=backlog.topic,
        lag=backlog.lag,
        oldest_age_seconds=backlog.oldest_age_seconds,
        partitions=[
            KafkaPartitionLag(partition=p.partition, committed=p.committed, end=p.end, lag=p.lag)
            for p in backlog.partitions
        ],
    )


def _kafka_problem(kafka: KafkaLag | None, alert_seconds: float) -> str | None:
    # Records flowing through is normal; the oldest waiting past the alert is work stuck.
    if kafka is None:
        return None
    if not kafka.reachable:
        return f"kafka: {kafka.error}"
    if kafka.oldest_age_seconds is None or kafka.oldest_age_seconds <= alert_seconds:
        return None
    return (
        f"kafka: consumer group {kafka.group!r} has {kafka.lag} record(s) of topic "
        f"{kafka.topic!r} not committed, the oldest {kafka.oldest_age_seconds}s old (past "
        f"{alert_seconds}s; {kafka.lagging()})"
    )


def _heartbeat(row: dict[str, object], stale_seconds: float) -> ServiceHeartbeat:
    age = round(float(row["age_seconds"]), 3)  # type: ignore[arg-type]
    fresh = age < stale_seconds
    return ServiceHeartbeat.model_validate(
        {
            **row,
            "service": row["service_name"],
            "age_seconds": age,
            "fresh": fresh,
            "working": fresh and row["state"] in _WORKING_STATES,
        }
    )


def _service_problem(
    name: str, services: list[ServiceHeartbeat], stale_seconds: float, paused: bool
) -> str | None:
    instances = [service for service in services if service.service == name]
    working = [instance for instance in instances if instance.working]
    if working:
        # One instance failing beside working ones is still work stuck: on Kafka each worker
        # owns its partitions, so the failing worker's partitions wait (docs/operations.md).
        failing = [i for i in instances if i.fresh and i.state in ("failing", "failed")]
        if not failing:
            return None
        return (
            f"service {name}: "
            + "; ".join(
                f"{i.state} on {i.instance}" + (f": {i.detail}" if i.detail else "")
                for i in failing
            )
            + f" ({len(working)} other instance(s) working)"
        )
    if paused and any(i.fresh and i.state == "paused" for i in instances):
        return None  # held by the operator: the pause itself is reported
    if not instances:
        # Read over HTTP too (/health/ready): it names no CLI command (docs/operations.md).
        return f"service {name}: no heartbeat (is the platform running?)"
    latest = instances[0]  # newest beat first
    if not latest.fresh:
        return (
            f"service {name}: last heartbeat {latest.age_seconds}s ago ({latest.state} on "
            f"{latest.instance}), stale past {stale_seconds}s"
        )
    reason = f": {latest.detail}" if latest.detail else ""
    return f"service {name}: {latest.state} on {latest.instance}{reason}"


def _backlog(platform: Platform) -> int:
    """Queued events of every tenant: read as the owner (the API role may not see the queue)."""
    queue = Broker(platform.settings.message_broker).queue_name
    with platform.maintenance_engine.connect() as connection:
        depth = connection.execute(
            select(func.count()).where(broker_messages.c.queue_name == queue)
        ).scalar_one()
    return int(depth)


def _uncaptured_bytes(platform: Platform, capture: CdcStatus) -> int | None:
    """Paused: the slot's pending WAL bytes when they hold a change of a captured table, else
    0 (None: unknown). The pending bytes come from pg_replication_slots (cheap); the slot is
    peeked only when some are pending, as the owner (a peek needs REPLICATION)."""
    if not capture.slot_exists or capture.lag_bytes is None:
        return None
    if capture.lag_bytes <= 0:
        return 0
    cdc = platform.settings.cdc
    with platform.maintenance_engine.connect() as connection:
        found = uncaptured_changes(
            psycopg_connection(connection), cdc.slot_name, cdc.publication_name, upto_nchanges=1
        )
    if found is None:
        return None
    return capture.lag_bytes if found else 0


def waiting_while_paused(backlog: int | None, uncaptured_bytes: int | None) -> str:
    """`N queued event(s)` and, when the slot holds changes, `uncaptured changes (B bytes of
    WAL in the replication slot)`: what a paused sync leaves waiting."""
    text = f"{backlog or 0} queued event(s)"
    if uncaptured_bytes:
        text += f" and uncaptured changes ({uncaptured_bytes} bytes of WAL in the replication slot)"
    return text


def _pause_problem(
    pause: SyncPause, backlog: int | None, uncaptured_bytes: int | None
) -> str | None:
    # Paused with nothing waiting is a quiet system; paused with a backlog (queued, or still
    # in the slot: the CES consumer is paused too) is work stuck.
    if not pause.paused or not (backlog or uncaptured_bytes):
        return None
    return (
        f"{pause.describe()}; {waiting_while_paused(backlog, uncaptured_bytes)} wait until "
        "sync is resumed"
    )


def _capture_problem(capture: CdcStatus) -> str | None:
    if not capture.slot_exists:
        return f"change capture: replication slot {capture.slot} is missing"
    if capture.lagging:
        return (
            f"change capture lags: {capture.lag_bytes} bytes, "
            + (
                "the CES consumer has never caught up"
                if capture.lag_seconds is None
                else f"{capture.lag_seconds}s since the CES consumer was caught up"
            )
            + " (thresholds "
            f"{capture.lag_alert_bytes} bytes, {capture.lag_alert_seconds}s)"
        )
    return None
