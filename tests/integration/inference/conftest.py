"""Fixtures of the inference tests: a platform on a fresh database, tenants, ingested text."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.provenance import AtomicStream
from hartonomous.security.principals import ensure_tenant
from hartonomous.services import Platform
from hartonomous.services.inference import InferenceView, drain, get

Ingest = Callable[..., list[str]]


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir)


@pytest.fixture
def platform(engine: Engine, settings: Settings) -> Platform:
    for tenant in ("acme", "globex"):
        with engine.begin() as connection:
            ensure_tenant(connection, tenant, tenant)
    return Platform(engine=engine, settings=settings, migrations_head=head_revision())


@pytest.fixture
def ingest(platform: Platform, tmp_path: Path) -> Ingest:
    """``ingest(tenant, {"name.txt": "text"}, label=None) -> [atom hex, …]`` (real ingest)."""

    def run(tenant: str, files: Mapping[str, str], label: str | None = None) -> list[str]:
        folder = tmp_path / f"ingest-{uuid.uuid4().hex}"
        folder.mkdir()
        paths = []
        for name, content in files.items():
            path = folder / name
            path.write_text(content, encoding="utf-8")
            paths.append(path)
        outcome = ingest_paths(platform.engine, IngestRequest(tenant_id=tenant, label=label), paths)
        assert all(f.status == "ingested" for f in outcome.files), outcome
        return [str(f.atom_id) for f in outcome.files]

    return run


def run_jobs(platform: Platform) -> int:
    return drain(platform)


def finished(platform: Platform, tenant: str, inference_id: uuid.UUID) -> InferenceView:
    """Run the open jobs in this process, then read the inference."""
    run_jobs(platform)
    return get(platform, tenant, inference_id)


def stream_of(engine: Engine, view: InferenceView) -> AtomicStream:
    with engine.connect() as connection:
        data = connection.execute(
            text("SELECT stream FROM generation_streams WHERE stream_id = :id"),
            {"id": view.stream_id},
        ).scalar_one()
    return AtomicStream.from_bytes(bytes(data))


def counts(engine: Engine) -> dict[str, Any]:
    """Rows of everything a submission or a job could write."""
    tables = (
        "inference_requests",
        "inference_steps",
        "inference_atoms",
        "generation_streams",
        "holdings",
        "atoms",
    )
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in tables
        }
