"""The API in-process (Starlette's TestClient) over a fresh database, and keys to call it with.

As in production, the app's ``platform.engine`` connects as the API role, bound by row-level
security to the authenticated tenant; ``maintenance_engine`` is the owner's (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, create_engine, update

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.db.api_role import api_role_url, provision_api_role
from hartonomous.db.isolation import scope_to_bound_tenant
from hartonomous.db.tables import principals
from hartonomous.observability.tracing import use_tracer_provider
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant
from hartonomous.security.key_cache import VerifiedKeyCache
from hartonomous.security.roles import Role
from hartonomous.services import Platform

IssueKey = Callable[..., str]


# Tests send far more than the default 100 requests a minute of one tenant: this rule applies
# instead (tests of the limits themselves build their own settings).
UNLIMITED = {"name": "tests", "scope": "tenant", "permit_limit": 1_000_000_000}


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings.model_validate({"data_dir": data_dir, "security": {"rate_limits": [UNLIMITED]}})


@pytest.fixture
def api_engine(engine: Engine, database_url: str, settings: Settings) -> Iterator[Engine]:
    """The test database as the API role (provisioned as `up` does), scoped to the bound tenant."""
    provision_api_role(engine, settings)
    api_role = scope_to_bound_tenant(create_engine(api_role_url(settings, database_url)))
    yield api_role
    api_role.dispose()


@pytest.fixture
def platform(engine: Engine, api_engine: Engine, settings: Settings) -> Platform:
    return Platform(
        engine=api_engine,
        settings=settings,
        migrations_head=head_revision(),
        maintenance_engine=engine,
    )


@pytest.fixture
def api(platform: Platform) -> Iterator[TestClient]:
    """A client of the app that sees a 500 as a caller would (server errors not raised)."""
    with TestClient(create_app(platform), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def issue_key(engine: Engine) -> IssueKey:
    """``issue_key(tenant="acme", role=Role.USER, principal="alice") -> "hk_…"`` (tenant made)."""

    def issue(tenant: str = "acme", role: Role = Role.USER, principal: str | None = None) -> str:
        principal_id = principal or f"{role.value}-of-{tenant}"
        with engine.begin() as connection:
            ensure_tenant(connection, tenant, tenant)
            ensure_principal(connection, tenant, principal_id, principal_id, "user")
            connection.execute(
                update(principals)
                .where(principals.c.tenant_id == tenant, principals.c.principal_id == principal_id)
                .values(role=role.value)
            )
            return create_api_key(connection, tenant, principal_id, "test")

    return issue


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


KEY_CACHE_SECONDS = 5.0


class ManualClock:
    """A monotonic clock the test moves (``clock.now += seconds``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key_cache_clock(api: TestClient, platform: Platform) -> ManualClock:
    """Gives the app's key cache (security/key_cache.py), bound ``KEY_CACHE_SECONDS``, a clock
    the test moves: "once the bound has passed" is a step of the clock, not a wait."""
    clock = ManualClock()
    api.app.state.key_cache = VerifiedKeyCache(  # type: ignore[attr-defined]
        platform.maintenance_engine, KEY_CACHE_SECONDS, clock=clock
    )
    return clock


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for this test only (off again after)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        use_tracer_provider(None)
