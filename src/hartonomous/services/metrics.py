"""`/metrics`: the platform's figures in the Prometheus text format (docs/operations.md, "Metrics").

Two sources, shown together:

- read from the database at each scrape (``PlatformCollector``), so they are the same whichever
  process serves them and whichever process did the work (`up`'s threads, a separate `sync`,
  `ces-consumer` or `worker`): queue depth and oldest age (by transport: the Kafka consumer
  group's lag too), dead letters, sync outcomes per handler, billing events and DCU, CDC lag
  and events, ingestion files and bytes, heartbeats, the sync pause, and PostgreSQL's own:
  pg_stat_statements (when installed), lock waits, table and database sizes, WAL position;
  Neo4j's heap and transactions when projection is on;
- this process's histograms (``observability.metrics``): search latency, embedding batch
  latency, Neo4j projection transaction time.

No figure is labelled by tenant: one tenant's activity is not shown to whoever scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Float, cast, func, select, text

from hartonomous.cdc.replication import cdc_status
from hartonomous.db.tables.operations import (
    beat_age_seconds,
    beat_seen_at,
    heartbeats_seen,
    service_heartbeats,
    shown_state,
)
from hartonomous.messaging.broker import Broker, psycopg_connection
from hartonomous.observability.metrics import PROCESS_REGISTRY
from hartonomous.services.health import kafka_lag
from hartonomous.services.platform import Platform
from hartonomous.services.wal_archive_age import archive_age
from hartonomous.sync.projector import Neo4jProjector

__all__ = ["CONTENT_TYPE", "PlatformCollector", "exposition"]

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The statements shown one by one (by total time); the rest only in the totals.
TOP_STATEMENTS = 10


def exposition(collector: PlatformCollector) -> bytes:
    """The text exposition: this process's histograms, then the database's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(PROCESS_REGISTRY) + generate_latest(registry)


class PlatformCollector(Collector):
    """Reads the platform's state on each ``collect`` (one short owner session)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._projector: Neo4jProjector | None = None

    def close(self) -> None:
        if self._projector is not None:
            self._projector.close()

    def collect(self) -> Iterator[Metric]:
        yield from _answered(
            "hartonomous_database_up",
            "1 when the database answered this scrape, else 0.",
            self._read_database,
        )
        if self._platform.settings.neo4j.uri:
            yield from _answered(
                "hartonomous_neo4j_up", "1 when Neo4j answered this scrape.", self._read_neo4j
            )

    def _read_database(self) -> list[Metric]:
        with self._platform.maintenance_engine.connect() as connection:
            return list(self._database(connection))

    # -- the database --------------------------------------------------------------------------

    def _database(self, connection: Connection) -> Iterator[Metric]:
        settings = self._platform.settings
        queue = Broker(settings.message_broker).queue_name
        row = _one(
            connection,
            "SELECT count(*) AS depth, "
            "coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)::float8 AS oldest, "
            "count(*) FILTER (WHERE locked_by IS NOT NULL) AS claimed "
            "FROM broker_messages WHERE queue_name = :queue",
            queue=queue,
        )
        yield from self._backlog(row["depth"], row["oldest"])
        yield _gauge("hartonomous_broker_in_flight", "Queued messages claimed.", row["claimed"])
        dead = _one(
            connection,
            "SELECT count(*) FILTER (WHERE replayed_at IS NULL) AS pending, count(*) AS total "
            "FROM message_dead_letters WHERE queue_name = :queue",
            queue=queue,
        )
        yield _gauge(
            "hartonomous_dead_letters_pending", "Dead letters awaiting replay.", dead["pending"]
        )
        # A gauge: `deadletters purge` deletes rows, and a counter must never go down (a
        # Prometheus rate() would read the fall as a reset). Set-aside events are counted by
        # hartonomous_sync_events_total{outcome="dead_lettered"}.
        yield _gauge(
            "hartonomous_dead_letters_kept",
            "Dead letters kept (awaiting replay or replayed, not yet purged); falls on purge.",
            dead["total"],
        )
        yield self._sync_events(connection)
        yield from self._billing(connection)
        yield from self._capture(connection)
        yield from self._ingestion(connection)
        yield from self._services(connection)
        yield from self._postgres(connection)
        yield from self._wal_archive()

    def _backlog(self, depth: int, oldest: float) -> Iterator[Metric]:
        """The queue's depth and oldest age by ``transport``: ``postgres`` (the database's
        queue, always) and, on the Kafka transport, ``kafka`` (the sync workers' consumer
        group: records not committed, the oldest's age by its Kafka timestamp) with
        ``hartonomous_kafka_up``; so the documented age alert fires on either transport."""
        kafka = kafka_lag(self._platform.settings.message_broker)
        queued = GaugeMetricFamily(
            "hartonomous_broker_queue_depth",
            "Messages queued (kafka: records of the topic the consumer group has not committed).",
            labels=["transport"],
        )
        age = GaugeMetricFamily(
            "hartonomous_broker_oldest_message_age_seconds",
            "Age of the oldest queued message (0 when empty).",
            labels=["transport"],
        )
        queued.add_metric(["postgres"], _value(depth))
        age.add_metric(["postgres"], _value(oldest))
        if kafka is not None:
            yield _gauge(
                "hartonomous_kafka_up",
                "1 when Kafka answered this scrape's consumer-group lag read, else 0.",
                int(kafka.reachable),
            )
            if kafka.reachable:
                queued.add_metric(["kafka"], _value(kafka.lag))
                age.add_metric(["kafka"], _value(kafka.oldest_age_seconds or 0.0))
        yield queued
        yield age

    def _sync_events(self, connection: Connection) -> Metric:
        # sync_counters names are `outcome:detail` (billed:<operation>, dead_lettered:<reason>,
        # delayed:transient, skipped:..., already_billed:<operation>): see sync/worker.py.
        family = CounterMetricFamily(
            "hartonomous_sync_events",
            "Events the sync worker handled, by outcome and detail (operation, reason, table).",
            labels=["outcome", "detail"],
        )
        for name, count in connection.execute(text("SELECT counter, count FROM sync_counters")):
            outcome, _, detail = str(name).partition(":")
            family.add_metric([outcome, detail], float(count))
        return family

    def _billing(self, connection: Connection) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "hartonomous_billing_events", "Ledger rows written, by operation.", labels=["operation"]
        )
        dcu = CounterMetricFamily(
            "hartonomous_billing_dcu", "DCU billed, by operation.", labels=["operation"]
        )
        rows = connection.execute(
            text(
                "SELECT operation, sum(row_count) AS events, sum(total_dcu) AS dcu "
                "FROM billing_usage_rollup GROUP BY operation"
            )
        )
        for operation, count, total in rows:
            events.add_metric([operation], float(count))
            dcu.add_metric([operation], float(total))  # a float: Prometheus has no decimals
        yield events
        yield dcu

    def _capture(self, connection: Connection) -> Iterator[Metric]:
        status = cdc_status(psycopg_connection(connection), self._platform.settings.cdc)
        yield _gauge(
            "hartonomous_cdc_slot_exists", "1 when the replication slot exists.", status.slot_exists
        )
        yield _gauge(
            "hartonomous_cdc_lag_bytes",
            "WAL bytes the CES consumer has not confirmed (NaN without a slot).",
            status.lag_bytes,
        )
        yield _gauge(
            "hartonomous_cdc_lag_seconds",
            "Seconds since the CES consumer was last caught up (NaN before it ever was).",
            status.lag_seconds,
        )
        events = CounterMetricFamily(
            "hartonomous_cdc_events", "CloudEvents the CES consumer enqueued.", labels=["consumer"]
        )
        dead = CounterMetricFamily(
            "hartonomous_cdc_dead_lettered",
            "Changes the CES consumer set aside as dead letters.",
            labels=["consumer"],
        )
        for name, total, set_aside in connection.execute(
            text("SELECT consumer_name, events_total, dead_lettered_total FROM cdc_checkpoints")
        ):
            events.add_metric([name], float(total))
            dead.add_metric([name], float(set_aside))
        yield events
        yield dead

    def _ingestion(self, connection: Connection) -> Iterator[Metric]:
        row = _one(
            connection,
            "SELECT coalesce(sum(file_count), 0) AS files, "
            "coalesce(sum(failed_count), 0) AS failed, coalesce(sum(new_bytes), 0) AS new, "
            "coalesce(sum(reused_bytes), 0) AS reused FROM ingestion_jobs",
        )
        files = CounterMetricFamily(
            "hartonomous_ingestion_files", "Files ingested, by status.", labels=["status"]
        )
        files.add_metric(["ingested"], float(row["files"]))
        files.add_metric(["failed"], float(row["failed"]))
        stored = CounterMetricFamily(
            "hartonomous_ingestion_bytes",
            "Bytes ingested: new (stored) or reused (already held content).",
            labels=["kind"],
        )
        stored.add_metric(["new"], float(row["new"]))
        stored.add_metric(["reused"], float(row["reused"]))
        yield files
        yield stored

    def _services(self, connection: Connection) -> Iterator[Metric]:
        beats = GaugeMetricFamily(
            "hartonomous_service_heartbeat_age_seconds",
            "Seconds since each service instance's last beat (instances of the last day); "
            'state "gone": a live state whose heartbeat session is closed (a killed process, '
            "or the source's instance in a restored cluster).",
            labels=["service", "instance", "state"],
        )
        heartbeats = service_heartbeats.c
        seen = beat_seen_at.element  # the later of the row's write and its session's last beat
        for service, instance, state, age in connection.execute(
            select(
                heartbeats.service_name,
                heartbeats.instance,
                shown_state,
                cast(beat_age_seconds.element, Float),
            )
            .select_from(heartbeats_seen)
            .where(seen > func.now() - text("interval '1 day'"))
        ):
            beats.add_metric([service, instance, state], age)
        yield beats
        paused = connection.execute(
            text("SELECT paused FROM sync_control WHERE scope = 'sync'")
        ).scalar()
        yield _gauge("hartonomous_sync_paused", "1 while `sync pause` holds sync.", bool(paused))

    def _postgres(self, connection: Connection) -> Iterator[Metric]:
        yield _gauge(
            "hartonomous_pg_lock_waits",
            "Sessions waiting for a lock now.",
            connection.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar(),
        )
        # An open transaction's snapshot keeps every row deleted since from being vacuumed: the
        # broker's completed messages pile up and each receive scans past them
        # (docs/operations.md, "Fault suite").
        yield _gauge(
            "hartonomous_pg_oldest_transaction_seconds",
            "Age of the oldest open transaction in the database (0 when none).",
            connection.execute(
                text(
                    "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
                )
            ).scalar(),
        )
        yield _gauge(
            "hartonomous_pg_database_bytes",
            "Size of the platform's database.",
            connection.execute(text("SELECT pg_database_size(current_database())")).scalar(),
        )
        yield _counter(
            "hartonomous_pg_wal_bytes",
            "WAL position in bytes (its rate is WAL growth).",
            connection.execute(
                text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8")
            ).scalar(),
        )
        tables = GaugeMetricFamily(
            "hartonomous_pg_table_bytes",
            "Size of each table of the platform (with indexes and TOAST).",
            labels=["table"],
        )
        for name, size in connection.execute(
            text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
            )
        ):
            tables.add_metric([name], float(size))
        yield tables
        yield from self._statements(connection)

    def _wal_archive(self) -> Iterator[Metric]:
        # Only while the platform archives WAL and something is archived.
        age = archive_age(self._platform)
        if age is not None and age.last_archived_age_seconds is not None:
            yield _gauge(
                "hartonomous_wal_archive_last_archived_age_seconds",
                "Seconds since the newest WAL segment reached the backup directory's wal/.",
                age.last_archived_age_seconds,
            )

    def _statements(self, connection: Connection) -> Iterator[Metric]:
        installed = connection.execute(
            text("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        ).scalar()
        yield _gauge(
            "hartonomous_pg_stat_statements_available",
            "1 when pg_stat_statements is installed (the statement figures below exist).",
            bool(installed),
        )
        if not installed:
            return
        totals = _one(
            connection,
            "SELECT coalesce(sum(calls), 0)::float8 AS calls, "
            "coalesce(sum(total_exec_time), 0)::float8 / 1000 AS seconds "
            "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
        )
        # Gauges, not counters: pg_stat_statements_reset() and the eviction of statements past
        # pg_stat_statements.max make these sums fall (a counter's rate() would read a reset).
        yield _gauge(
            "hartonomous_pg_statement_calls",
            "Statements run (pg_stat_statements' sum: falls on its reset or evictions).",
            totals["calls"],
        )
        yield _gauge(
            "hartonomous_pg_statement_seconds",
            "Time spent running statements (pg_stat_statements' sum: falls on its reset or "
            "evictions).",
            totals["seconds"],
        )
        top_seconds = GaugeMetricFamily(
            "hartonomous_pg_top_statement_seconds",
            f"Time of the {TOP_STATEMENTS} statements that took the most, by queryid.",
            labels=["queryid"],
        )
        top_calls = GaugeMetricFamily(
            "hartonomous_pg_top_statement_calls",
            f"Calls of the {TOP_STATEMENTS} statements that took the most, by queryid.",
            labels=["queryid"],
        )
        for queryid, calls, seconds in connection.execute(
            text(
                "SELECT queryid::text, calls::float8, total_exec_time / 1000 "
                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT :top"
            ),
            {"top": TOP_STATEMENTS},
        ):
            top_seconds.add_metric([queryid], float(seconds))
            top_calls.add_metric([queryid], float(calls))
        yield top_seconds
        yield top_calls

    # -- Neo4j -------------------------------------------------------------------------------

    def _read_neo4j(self) -> list[Metric]:
        if self._projector is None:
            self._projector = Neo4jProjector(self._platform.settings.neo4j)
        server = self._projector.server_metrics()
        return [
            _gauge("hartonomous_neo4j_heap_used_bytes", "JVM heap used.", server.heap_used_bytes),
            _gauge("hartonomous_neo4j_heap_max_bytes", "JVM heap maximum.", server.heap_max_bytes),
            _gauge(
                "hartonomous_neo4j_open_transactions",
                "Transactions running on Neo4j now.",
                server.open_transactions,
            ),
            _gauge(
                "hartonomous_neo4j_longest_transaction_seconds",
                "Age of the oldest transaction running on Neo4j now.",
                server.longest_transaction_seconds,
            ),
        ]


def _answered(name: str, documentation: str, read: Callable[[], list[Metric]]) -> Iterator[Metric]:
    """``name`` 1 and what ``read`` gives, or ``name`` 0 when it fails: a scrape reports an
    outage, it never fails."""
    up = GaugeMetricFamily(name, documentation)
    try:
        metrics = read()
    except Exception as exc:  # noqa: BLE001 - reported as the 0 and a log line
        log.warning("metrics_source_failed", metric=name, error=f"{type(exc).__name__}: {exc}")
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    yield from metrics


def _one(connection: Connection, sql: str, **params: Any) -> dict[str, Any]:
    row = connection.execute(text(sql), params).mappings().one()
    return dict(row)


def _value(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def _gauge(name: str, documentation: str, value: object) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=_value(value))


def _counter(name: str, documentation: str, value: object) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=_value(value))
