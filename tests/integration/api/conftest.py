"""The API in-process (Starlette's TestClient) over a fresh database, and keys to call it with."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.db.tables import principals
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant
from hartonomous.security.roles import Role
from hartonomous.services import Platform

IssueKey = Callable[..., str]


# Tests send far more than the default 100 requests a minute of one tenant: this rule applies
# instead (tests of the limits themselves build their own settings).
UNLIMITED = {"name": "tests", "scope": "tenant", "permit_limit": 1_000_000_000}


@pytest.fixture
def platform(engine: Engine) -> Platform:
    settings = Settings.model_validate({"security": {"rate_limits": [UNLIMITED]}})
    return Platform(engine=engine, settings=settings, migrations_head=head_revision())


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
