"""Heartbeat rows of instances whose process is gone (killed, or the source's instances in a
restored cluster) do not read as running: `/metrics` labels them `state="gone"`, and re-arming
a restored cluster clears them (docs/operations.md, "Heartbeats and readiness")."""

from __future__ import annotations

from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from hartonomous.backup.rearm import rearm
from hartonomous.db.connection import libpq_url
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.services import Platform
from hartonomous.services.metrics import PlatformCollector, exposition

AGE = "hartonomous_service_heartbeat_age_seconds"


def states(platform: Platform) -> dict[str, str]:
    """instance -> its `state` label on the heartbeat age gauge."""
    body = exposition(PlatformCollector(platform)).decode()
    return {
        sample.labels["instance"]: sample.labels["state"]
        for family in text_string_to_metric_families(body)
        if family.name == AGE
        for sample in family.samples
    }


def test_a_running_row_whose_session_is_gone_reads_gone_and_a_restore_clears_it(
    platform: Platform, database_url: str
) -> None:
    url = libpq_url(database_url)
    beat = Heartbeat(url, platform.settings, "sync-worker")
    beat.beat("running")
    try:
        assert states(platform) == {beat.instance: "running"}
        # The process dies without a word: its session closes, its row still says running.
        beat.end_session()
        assert states(platform) == {beat.instance: "gone"}
        with platform.engine.connect() as connection:
            row = connection.execute(text("SELECT state FROM service_heartbeats")).scalar_one()
        assert row == "running"  # the row is history; only the reading says gone
        # A stopped instance is shown as it said.
        beat.end("stopped")
        assert states(platform) == {beat.instance: "stopped"}
        beat.beat("running")
        connection_: psycopg.Connection[Any]
        with psycopg.connect(url, autocommit=True) as connection_:
            cleared = rearm(connection_, platform.settings.cdc).heartbeats_cleared
        assert cleared == 1
        assert states(platform) == {}
    finally:
        beat.end_session()
