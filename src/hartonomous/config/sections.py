"""Typed configuration sections (docs/configuration.md, which gives each default)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Money = Annotated[Decimal, Field(max_digits=18, decimal_places=6, ge=0)]
Multiplier = Annotated[Decimal, Field(max_digits=18, decimal_places=6, gt=0)]

# Service Broker rules for a single identifier segment (docs/configuration.md,
# `[message_broker]`); a dot is not allowed, which is why the seed's dotted defaults are
# replaced by underscored ones here.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_SLUG = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Kafka's legal topic names (its `Topic.validate`): 1 to 249 of these characters.
_KAFKA_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


class Section(BaseModel):
    """A configuration section: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(Section):
    """`[database]` (seed: ConnectionStrings:HartonomousDb)."""

    url: str = Field(
        default="", description="SQLAlchemy/libpq URL; empty starts the embedded server"
    )
    api_url: str = Field(
        default="",
        description="URL the HTTP API connects with, as a role bound by row-level security; "
        "empty: the generated `hartonomous_api` role (docs/security.md)",
    )
    connect_timeout_seconds: int = Field(default=5, ge=1, le=300)
    command_timeout_seconds: int = Field(default=30, ge=5, le=3600)
    lock_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    # Connections each engine keeps between uses. Concurrent work beyond it opens and closes a
    # PostgreSQL session each time (5 cost an API search ~1.5 ms more PostgreSQL CPU at 8
    # concurrent clients than 10, benchmarks/api.py); connections are opened only when needed.
    pool_size: int = Field(default=10, ge=1, le=100)


class Neo4jSettings(Section):
    """`[neo4j]` (seed: Neo4j:Uri/User/Password); an empty uri turns the projection off."""

    uri: str = ""
    user: str = "neo4j"
    password: SecretStr = SecretStr("")
    database: str | None = None
    max_connection_pool_size: int = Field(default=100, ge=1, le=1000)
    connection_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # `graph backup` / `graph restore`: a Neo4j installation's neo4j-admin ("" falls back to
    # $NEO4J_HOME/bin/neo4j-admin; docs/operations.md, "Neo4j").
    admin_command: str = ""


class ResilienceSettings(Section):
    """`[message_broker.resilience]` (seed: MessageBroker:Resilience / ServiceBrokerResilience)."""

    publish_max_attempts: int = Field(default=5, ge=1, le=20)
    receive_max_attempts: int = Field(default=5, ge=1, le=20)
    publish_base_delay_seconds: float = Field(default=0.25, gt=0, le=60)
    receive_base_delay_seconds: float = Field(default=0.5, gt=0, le=60)
    publish_max_delay_seconds: float = Field(default=10.0, gt=0, le=600)
    receive_max_delay_seconds: float = Field(default=15.0, gt=0, le=600)
    exponential_factor: float = Field(default=2.0, ge=1, le=10)
    jitter_factor: float = Field(default=0.2, ge=0, le=1)
    circuit_breaker_failure_threshold: int = Field(default=5, ge=1, le=100)
    circuit_breaker_break_duration_seconds: float = Field(default=30.0, gt=0, le=3600)
    circuit_breaker_half_open_success_threshold: int = Field(default=1, ge=1, le=10)
    poison_message_max_attempts: int = Field(default=3, ge=1, le=20)

    @model_validator(mode="after")
    def _max_delays_cover_base_delays(self) -> ResilienceSettings:
        for kind in ("publish", "receive"):
            base = getattr(self, f"{kind}_base_delay_seconds")
            ceiling = getattr(self, f"{kind}_max_delay_seconds")
            if ceiling < base:
                raise ValueError(
                    f"{kind}_max_delay_seconds ({ceiling}) is below "
                    f"{kind}_base_delay_seconds ({base})"
                )
        return self


class KafkaSettings(Section):
    """`[message_broker.kafka]`: the Kafka transport (Apache Kafka, or Azure Event Hubs through
    its Kafka endpoint: `security_protocol = "SASL_SSL"`, `sasl_mechanism = "PLAIN"`,
    `sasl_username = "$ConnectionString"`). docs/configuration.md."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "hartonomous-events"
    consumer_group: str = "hartonomous-sync"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    # A PEM file of the CA certificate(s) that signed the brokers' certificates (`SSL` and
    # `SASL_SSL`; unset: the system's CA store, enough for Event Hubs).
    ssl_ca_location: str | None = None
    # An idempotent producer (`enable.idempotence`): no duplicate or reordered record from a
    # retry. Off only for a cluster that does not grant producer ids; one request in flight
    # then keeps the order (docs/messaging.md, "The Kafka topic").
    idempotent_producer: bool = True
    # The largest record produced, in bytes once encoded (value + key + headers): a larger
    # event is set aside as a dead letter. Kafka's own limits (the client's and a stock
    # broker's message.max.bytes) are ~1,000,000 per record batch; the rest is headroom for
    # the batch framing. Raise it only with the broker's and topic's limits (docs/messaging.md).
    max_message_bytes: int = Field(default=990_000, ge=1024, le=100_000_000)
    # How long start-up waits for the cluster's metadata before naming the servers unreachable.
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # How long a silent worker keeps its partitions before the group gives them to others.
    session_timeout_seconds: float = Field(default=45.0, ge=6, le=1800)
    # How long a worker may go without polling before the group drops it (librdkafka's
    # max.poll.interval.ms; at least session_timeout_seconds). A paused worker keeps polling.
    max_poll_interval_seconds: float = Field(default=300.0, ge=6, le=86_400)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_are_host_ports(cls, value: str) -> str:
        servers = [server.strip() for server in value.split(",")]
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{value!r} must be comma-separated host:port pairs")
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"{server!r} has port {port}, outside 1..65535")
        return ",".join(servers)

    @field_validator("topic")
    @classmethod
    def _topic_is_legal(cls, value: str) -> str:
        if not _KAFKA_TOPIC.match(value) or value in {".", ".."}:
            raise ValueError(
                f"{value!r} is not a Kafka topic name: 1 to 249 of letters, digits, '.', '_', '-'"
            )
        return value

    @field_validator("ssl_ca_location")
    @classmethod
    def _ca_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value!r} is not a file (a PEM file of CA certificates)")
        return value

    @field_validator("consumer_group")
    @classmethod
    def _group_is_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the consumer group must not be empty")
        return value

    @model_validator(mode="after")
    def _sasl_has_a_mechanism(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and self.sasl_mechanism is None:
            raise ValueError(
                f"sasl_mechanism must be set when security_protocol is "
                f'{self.security_protocol!r} (Event Hubs: "PLAIN")'
            )
        return self


class MessageBrokerSettings(Section):
    """`[message_broker]` (seed: MessageBroker)."""

    # Which transport carries the events (docs/messaging.md): the in-database broker, or Kafka.
    transport: Literal["postgres", "kafka"] = "postgres"

    queue_name: str = "hartonomous_message_queue"
    initiator_service_name: str = "hartonomous_broker_initiator"
    target_service_name: str = "hartonomous_broker_target"
    contract_name: str = "//Hartonomous/Contract"
    message_type_name: str = "//Hartonomous/Message"
    receive_wait_timeout_seconds: float = Field(default=2.0, ge=0.25, le=60)
    max_message_characters: int = Field(default=512_000, ge=1024, le=2_097_152)
    conversation_lifetime_seconds: int = Field(default=300, ge=30, le=3600)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("queue_name")
    @classmethod
    def _queue_name_is_identifier(cls, value: str) -> str:
        if not all(_IDENTIFIER.match(part) for part in value.split(".")):
            raise ValueError(f"{value!r} is not a valid (optionally schema-qualified) identifier")
        return value

    @field_validator("initiator_service_name", "target_service_name")
    @classmethod
    def _service_name_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(
                f"{value!r} must start with a letter or '_' and use only letters, digits, "
                "'_' and '$'"
            )
        return value

    @field_validator("contract_name", "message_type_name")
    @classmethod
    def _name_is_uri_like(cls, value: str) -> str:
        if not value.startswith("//") or any(ch.isspace() or not ch.isprintable() for ch in value):
            raise ValueError(f"{value!r} must start with '//' and contain no whitespace")
        return value


class MultiplierTables(Section):
    """The six multiplier dimensions of the meter (docs/billing.md, "The meter")."""

    generation: dict[str, Multiplier] = Field(
        default_factory=lambda: _decimals(text="1.0", image="3.0", audio="2.2", video="3.8")
    )
    complexity: dict[str, Multiplier] = Field(
        default_factory=lambda: _decimals(standard="1.0", premium="1.5", enterprise="2.0")
    )
    content: dict[str, Multiplier] = Field(
        default_factory=lambda: _decimals(knowledge_graph="1.2", time_series="1.4", spatial="1.6")
    )
    grounding: dict[str, Multiplier] = Field(
        default_factory=lambda: _decimals(
            none="1.0", enterprise_context="1.3", private_vector_index="1.55"
        )
    )
    guarantee: dict[str, Multiplier] = Field(
        default_factory=lambda: _decimals(standard_sla="1.0", premium_sla="1.35", model_lock="1.2")
    )
    provenance: dict[str, Multiplier] = Field(
        default_factory=lambda: _decimals(basic="1.0", audit_trail="1.25", immutable_ledger="1.5")
    )


class BillingSettings(Section):
    """`[billing]` (seed: Billing); defaults are the shipped "Publisher Core" plan."""

    # ISO 4217 code of every price and cost (ledger exports name it per total).
    currency: str = Field(default="USD", pattern="^[A-Z]{3}$")
    default_plan_code: str = "publisher_core"
    default_plan_name: str = "Publisher Core"
    default_plan_description: str = "Default plan seeded from settings"
    default_rate: Money = Decimal("0.0105")
    unit_price_per_dcu: Money = Decimal("0.00008")
    default_monthly_fee: Money = Decimal("2500")
    default_included_public_storage_gb: Annotated[Decimal, Field(ge=0, decimal_places=2)] = Decimal(
        "120"
    )
    default_included_private_storage_gb: Annotated[Decimal, Field(ge=0, decimal_places=2)] = (
        Decimal("40")
    )
    default_included_seat_count: int = Field(default=25, ge=0)
    # Invoice preview prices (docs/billing.md, "Invoice preview"): storage beyond the included
    # GB, per GB-month, and each active principal beyond the included seats, per month.
    default_storage_price_per_gb_month: Money = Decimal("0")
    default_seat_price: Money = Decimal("0")
    default_allows_private_data: bool = True
    default_can_query_public_corpus: bool = True
    operation_rates: dict[str, Money] = Field(
        default_factory=lambda: _decimals(
            **{
                "neo4j_sync.model_updated": "0.025",
                "neo4j_sync.inference_completed": "0.04",
                "neo4j_sync.ingest_completed": "0.018",
            }
        )
    )
    operation_units: dict[str, str] = Field(
        default_factory=lambda: {
            "neo4j_sync.model_updated": "dcu",
            "neo4j_sync.inference_completed": "dcu",
            "neo4j_sync.ingest_completed": "dcu",
        }
    )
    operation_categories: dict[str, str] = Field(
        default_factory=lambda: {
            "neo4j_sync.model_updated": "model_management",
            "neo4j_sync.inference_completed": "generation",
            "neo4j_sync.ingest_completed": "ingestion",
        }
    )
    multipliers: MultiplierTables = Field(default_factory=MultiplierTables)
    plan_cache_sliding_seconds: float = Field(default=300.0, gt=0)
    plan_cache_absolute_seconds: float = Field(default=900.0, gt=0)
    # `POST /v1/usage-events`: most events in one batch (413 over it), and how long a usage
    # event's (source, id) is remembered to answer a resend `duplicate` (docs/billing.md).
    usage_event_batch_limit: int = Field(default=1000, ge=1, le=100_000)
    usage_event_retention_days: int = Field(default=35, ge=35)

    @field_validator("default_plan_code")
    @classmethod
    def _plan_code_is_slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits and '_' (max 63)")
        return value


# `key`: one API key's HTTP requests (docs/security.md, "Rate limits").
RateLimitScope = Literal["tenant", "principal", "tenant_operation", "principal_operation", "key"]


class RateLimitRule(Section):
    """One `[[security.rate_limits]]` entry (seed: RateLimitRuleOptions)."""

    name: str = Field(min_length=1)
    scope: RateLimitScope = "tenant"
    permit_limit: int = Field(default=60, ge=0)
    window_seconds: float = Field(default=60.0, gt=0)
    operation: str | None = None
    tenant_id: str | None = None
    principal_id: str | None = None


class SecuritySettings(Section):
    """`[security]` (seed: Security)."""

    banned_tenants: list[str] = Field(default_factory=list)
    banned_principals: list[str] = Field(default_factory=list)
    tenant_operation_deny_list: dict[str, list[str]] = Field(default_factory=dict)
    rate_limits: list[RateLimitRule] = Field(default_factory=list)
    # An API process keeps a verified key this long; another process's revocation or
    # disabling reaches it within this bound (0: look every key up on every request).
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Most permits an API process takes from a shared rate-limit counter at once (1: one
    # per request); a lease is also at most 1/50 of the rule's limit (docs/security.md).
    rate_limit_lease_permits: int = Field(default=32, ge=1, le=1000)


class CdcSettings(Section):
    """`[cdc]` (seed: Cdc options of CesConsumer)."""

    slot_name: str = "hartonomous_ces"
    publication_name: str = "hartonomous_ces"
    consumer_name: str = "ces_consumer"
    batch_size: int = Field(default=250, ge=1, le=100_000)
    # A chunk of the CES consumer also ends at this many bytes of change data (wide rows).
    chunk_bytes: int = Field(default=16_777_216, ge=1024)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    # Event-flow history kept (broker_throughput rows), pruned by the CES consumer.
    retention_minutes: int = Field(default=1440, ge=1)
    # Slot lag past either threshold makes /health/ready "degraded" and `smoke` warn.
    lag_alert_seconds: float = Field(default=300.0, gt=0)
    lag_alert_bytes: int = Field(default=1_073_741_824, ge=1)

    @field_validator("slot_name", "publication_name")
    @classmethod
    def _replication_name(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits and '_' (max 63)")
        return value


# The background services `up` runs (and `ces-consumer` / `sync` run alone), by heartbeat name.
ServiceName = Literal["ces-consumer", "sync-worker", "inference-worker"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("ces-consumer", "sync-worker", "inference-worker")


class InferenceSettings(Section):
    """`[inference]`: the inference job worker and its limits (docs/inference.md)."""

    # How long a claimed job is the claimer's; a job whose lease expired is claimed again.
    lease_seconds: float = Field(default=300.0, ge=5, le=86_400)
    # A job claimed this many times without finishing fails (its worker keeps dying on it).
    max_attempts: int = Field(default=3, ge=1, le=20)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    # Models larger than this are refused before reconstruction (bytes).
    max_model_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    # A request's inputs (text, tensors) larger than this are refused at submission (bytes).
    max_input_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Reconstructed ONNX models whose runtime sessions stay loaded, per process (by atom id).
    session_cache_size: int = Field(default=4, ge=0, le=256)


class HealthSettings(Section):
    """`[health]`: service heartbeats and what `/health/ready` expects (docs/operations.md)."""

    # Services `up` runs that must be beating for readiness (names as in `service_heartbeats`).
    expected_services: list[ServiceName] = Field(default_factory=lambda: list(SERVICE_NAMES))
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    # A service whose last beat is older than this is stale: readiness says "degraded".
    heartbeat_stale_seconds: float = Field(default=30.0, gt=0, le=3600)
    # `status`: the oldest queued event older than this is WARN (the sync worker lags).
    backlog_alert_seconds: float = Field(default=300.0, gt=0)
    # `status`: the data directory's file system this full (percent) is WARN, then FAIL.
    disk_warn_percent: float = Field(default=80.0, gt=0, le=100)
    disk_fail_percent: float = Field(default=95.0, gt=0, le=100)
    # `status`: the newest backup older than this (hours) is WARN, then FAIL. The defaults fit
    # the documented schedule (a daily incremental, a weekly full): one missed day warns,
    # three fail (docs/operations.md, "Daily checks").
    backup_warn_hours: float = Field(default=26.0, gt=0)
    backup_fail_hours: float = Field(default=72.0, gt=0)

    @model_validator(mode="after")
    def _backup_fail_after_warn(self) -> HealthSettings:
        if self.backup_fail_hours < self.backup_warn_hours:
            raise ValueError(
                f"backup_fail_hours ({self.backup_fail_hours}) must be at least "
                f"backup_warn_hours ({self.backup_warn_hours})"
            )
        return self

    @model_validator(mode="after")
    def _stale_after_several_beats(self) -> HealthSettings:
        # One late beat (a slow batch, a busy database) must not flip readiness.
        if self.heartbeat_stale_seconds < 2 * self.heartbeat_interval_seconds:
            raise ValueError(
                f"heartbeat_stale_seconds ({self.heartbeat_stale_seconds}) must be at least "
                f"twice heartbeat_interval_seconds ({self.heartbeat_interval_seconds})"
            )
        return self


class TelemetrySettings(Section):
    """`[telemetry]`: OpenTelemetry traces and `/metrics` (docs/operations.md, "Traces")."""

    # OTLP/HTTP collector for traces, e.g. "http://collector:4318". Empty: the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT decide; with neither,
    # no trace is recorded or exported.
    otlp_endpoint: str = ""
    # `service.name` of the traces (OTEL_SERVICE_NAME, when set, wins).
    service_name: str = "hartonomous"
    # `/metrics`: "admin" needs an ADMIN API key (bearer token); "open" answers anyone.
    metrics_access: Literal["open", "admin"] = "admin"


class ServerSettings(Section):
    """`[server]`: where `up` and `serve` listen."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Largest request body `POST /v1/ingest` accepts, in bytes (413 beyond it).
    max_upload_bytes: int = Field(default=1024**3, ge=1)
    # API server processes sharing the port (cli/http_workers.py); 1: the API runs in the
    # process of `up` or `serve` itself.
    workers: int = Field(default=1, ge=1, le=64)


class BackupSettings(Section):
    """`[backup]`: where backups and archived WAL live (docs/operations.md, "Backups")."""

    # Empty: `<data_dir>/backups`. Holds base/<id>/ (pg_basebackup) and wal/ (archived WAL).
    directory: str = ""
    # Archive every completed WAL segment into `<directory>/wal` while the server runs
    # (embedded: archive_command; configured server: `pg_receivewal` beside `up`).
    archive_wal: bool = False
    # The embedded server's `archive_timeout`: a segment holding any change is switched and
    # archived at most this long after it began, so a quiet system's last commits reach the
    # archive. Each forced switch archives a whole 16 MiB segment (docs/operations.md,
    # "Backups"). 0: only full segments are archived.
    archive_timeout_seconds: int = Field(default=60, ge=0, le=86_400)
    # The physical replication slot `pg_receivewal` holds on a configured server.
    wal_slot_name: str = Field(default="hartonomous_wal", pattern=r"^[a-z0-9_]{1,63}$")


class LoggingSettings(Section):
    """`[logging]`: level and rendering (JSON when not on a terminal under `auto`)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def _decimals(**values: str) -> dict[str, Decimal]:
    return {key: Decimal(value) for key, value in values.items()}
