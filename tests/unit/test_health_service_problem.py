"""Readiness names a failing instance of a service even while another instance works."""

from __future__ import annotations

from datetime import UTC, datetime

from hartonomous.services.health import ServiceHeartbeat, _service_problem


def beat(instance: str, state: str, detail: str | None = None) -> ServiceHeartbeat:
    now = datetime.now(UTC)
    return ServiceHeartbeat.model_validate(
        {
            "service": "sync",
            "instance": instance,
            "host": "h",
            "pid": 1,
            "state": state,
            "detail": detail,
            "started_at": now,
            "last_beat_at": now,
            "age_seconds": 1.0,
            "fresh": True,
            "working": state in ("starting", "running"),
        }
    )


def test_one_failing_worker_beside_working_ones_is_a_problem_naming_it() -> None:
    """Before: any working instance hid the failing one (status and /health/ready said OK)."""
    services = [
        beat("h:1", "running"),
        beat("h:2", "failing", "Kafka away"),
        beat("h:3", "running"),
    ]
    assert _service_problem("sync", services, 30.0, paused=False) == (
        "service sync: failing on h:2: Kafka away (2 other instance(s) working)"
    )


def test_working_instances_alone_are_no_problem() -> None:
    services = [beat("h:1", "running"), beat("h:2", "starting")]
    assert _service_problem("sync", services, 30.0, paused=False) is None


def test_status_warns_of_a_failing_instance_beside_working_ones() -> None:
    """`status`'s service line: before, OK naming a working instance."""
    from types import SimpleNamespace
    from typing import Any

    from hartonomous.config import Settings
    from hartonomous.services.status import _services

    settings = Settings.model_validate({"health": {"expected_services": ["sync-worker"]}})
    platform: Any = SimpleNamespace(settings=settings)
    workers = [beat("h:1", "running"), beat("h:2", "failing", "Kafka away")]
    for worker in workers:
        worker.service = "sync-worker"
    ready: Any = SimpleNamespace(services=workers)
    [check] = _services(platform, ready)
    assert (check.verdict, check.detail) == (
        "WARN",
        "failing on h:2: Kafka away (1 other instance(s) working)",
    )
    ready.services = workers[:1]
    [check] = _services(platform, ready)
    assert check.verdict == "OK"
