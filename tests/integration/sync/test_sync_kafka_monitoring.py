"""The Kafka transport as an operator sees it, on a real Kafka 4 broker and real PostgreSQL:
the sync pause (the backlog waits on the topic; paused workers stay in the consumer group)
and the group's lag in `broker status` and `/metrics`."""

from __future__ import annotations

import json
import time

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import Cli
from tests.integration.heartbeats import serving
from tests.integration.sync.conftest import HANG_GUARD_SECONDS, Source, drain, wait_until
from tests.integration.sync.test_sync_kafka import kafka_env, kafka_settings
from tests.jvm_process import free_port

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.messaging.pause import set_pause
from hartonomous.services.health import readiness
from hartonomous.services.metrics import PlatformCollector, exposition
from hartonomous.services.platform import open_platform
from hartonomous.services.status import platform_status
from hartonomous.sync.worker import SyncWorker

_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def group_members(settings: Settings) -> tuple[str, list[str]]:
    """The sync workers' consumer group as the cluster describes it: state and member ids."""
    kafka = settings.message_broker.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        [future] = admin.describe_consumer_groups([kafka.consumer_group]).values()
        try:
            group = future.result(timeout=30)
        except KafkaException as exc:
            # A coordinator still loading or moving (a fresh cluster) answers again shortly.
            error = exc.args[0]
            if (error.retriable() or error.code() in _COORDINATOR_MOVING) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.1)
                continue
            raise
        state: ConsumerGroupState = group.state
        return state.name, sorted(member.member_id for member in group.members)


def on_database(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": url})}
    )


def produce(source: Source, settings: Settings) -> int:
    """Run the CES consumer once: the captured changes' events go to the topic; how many."""
    ces = CesConsumer(source.url, settings)
    try:
        events = ces.drain()
    finally:
        ces.close()
    assert events > 0
    return events


def test_a_pause_on_kafka_counts_the_groups_lag_and_keeps_the_worker_in_the_group(
    source: Source, kafka_bootstrap: str
) -> None:
    # The shortest intervals Kafka allows: a worker that stopped polling would be dropped
    # from the group after 6 s.
    settings = on_database(
        kafka_settings(kafka_bootstrap, session_timeout_seconds=6.0, max_poll_interval_seconds=6.0),
        source.url,
    )
    source.tenant("acme", "alice")
    worker = SyncWorker(source.url, settings)
    with serving(worker.run):
        wait_until(lambda: group_members(settings)[1], "the worker joined the group")
        state, members = group_members(settings)
        assert state == "STABLE"
        set_pause(source.conn, True, by="test", reason="kafka pause")
        wait_until(
            lambda: source.scalar(
                "SELECT count(*) FROM service_heartbeats "
                "WHERE service_name = 'sync-worker' AND state = 'paused'"
            ),
            "the worker beats 'paused'",
        )
        source.ingest("acme", 3, principal_id="alice")
        events = produce(source, settings)
        assert source.scalar("SELECT count(*) FROM broker_messages") == 0  # on the topic
        with open_platform(settings) as platform:
            ready = readiness(platform)
            assert ready.kafka is not None
            assert ready.kafka.lag == events
            assert ready.sync.backlog == events
            assert ready.status == "degraded"
            assert f"{events} queued event(s) wait" in (ready.detail or "")
            checks = {check.name: check for check in platform_status(platform).checks}
            assert f"{events} queued event(s) wait" in checks["sync pause"].detail
        # Past max.poll.interval while paused: the worker kept polling, so it is still the
        # group's member (a worker that stopped polling leaves, and its return rebalances).
        time.sleep(2 * settings.message_broker.kafka.max_poll_interval_seconds)
        assert group_members(settings) == ("STABLE", members)
        assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 0  # held
        set_pause(source.conn, False)
        wait_until(
            lambda: source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3,
            "the resumed worker bills the changes",
        )
        assert group_members(settings) == ("STABLE", members)  # the same member: no rebalance
    with open_platform(settings) as platform:
        ready = readiness(platform)
        assert ready.kafka is not None
        assert ready.kafka.lag == 0
        assert ready.sync.backlog is None


def broker_samples(settings: Settings) -> dict[tuple[str, str], float]:
    """`/metrics`' broker depth and age by transport, and `hartonomous_kafka_up`."""
    with open_platform(settings) as platform:
        body = exposition(PlatformCollector(platform)).decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith(("hartonomous_broker_", "hartonomous_kafka_up")):
                found[(sample.name, sample.labels.get("transport", ""))] = sample.value
    return found


def test_broker_status_and_metrics_show_the_groups_lag_and_oldest_age(
    source: Source, cli: Cli, kafka_bootstrap: str
) -> None:
    settings = on_database(kafka_settings(kafka_bootstrap), source.url)
    source.tenant("acme", "alice")
    source.ingest("acme", 2, principal_id="alice")
    events = produce(source, settings)
    run = Cli(cli.env | kafka_env(settings), cli.cwd)
    kafka = settings.message_broker.kafka
    # Nothing consumed yet: every event waits on the topic, none in the database's queue.
    answer = run("--json", "broker", "status")
    assert answer.exit_code == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["depth"] == 0
    assert report["kafka"]["reachable"] is True
    assert (report["kafka"]["group"], report["kafka"]["topic"]) == (
        kafka.consumer_group,
        kafka.topic,
    )
    assert report["kafka"]["lag"] == events
    assert sum(p["lag"] for p in report["kafka"]["partitions"]) == events
    assert report["kafka"]["oldest_age_seconds"] is not None
    assert report["kafka"]["oldest_age_seconds"] >= 0
    plain = run("broker", "status")
    assert plain.exit_code == 0, plain.stderr
    assert (
        f"kafka group {kafka.consumer_group} on topic {kafka.topic}: {events} record(s) "
        "not committed, oldest " in plain.stdout
    )
    samples = broker_samples(settings)
    assert samples[("hartonomous_kafka_up", "")] == 1
    assert samples[("hartonomous_broker_queue_depth", "kafka")] == events
    assert samples[("hartonomous_broker_queue_depth", "postgres")] == 0
    assert samples[("hartonomous_broker_oldest_message_age_seconds", "kafka")] > 0
    assert samples[("hartonomous_broker_oldest_message_age_seconds", "postgres")] == 0

    drain(source, settings)
    report = json.loads(run("--json", "broker", "status").stdout)
    assert (report["kafka"]["lag"], report["kafka"]["oldest_age_seconds"]) == (0, None)
    samples = broker_samples(settings)
    assert samples[("hartonomous_broker_queue_depth", "kafka")] == 0
    assert samples[("hartonomous_broker_oldest_message_age_seconds", "kafka")] == 0

    # Kafka away: the scrape says so (no made-up lag) and broker status names the servers.
    away = settings.message_broker.kafka.model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "connect_timeout_seconds": 1.0}
    )
    gone = settings.model_copy(
        update={"message_broker": settings.message_broker.model_copy(update={"kafka": away})}
    )
    samples = broker_samples(gone)
    assert samples[("hartonomous_kafka_up", "")] == 0
    assert ("hartonomous_broker_queue_depth", "kafka") not in samples
    assert ("hartonomous_broker_queue_depth", "postgres") in samples
    away_env = kafka_env(gone) | {"HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONNECT_TIMEOUT_SECONDS": "1"}
    answer = Cli(run.env | away_env, cli.cwd)("--json", "broker", "status")
    assert answer.exit_code == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["kafka"]["reachable"] is False
    assert f"Kafka is unreachable at {away.bootstrap_servers}" in report["kafka"]["error"]
