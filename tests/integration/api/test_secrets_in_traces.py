"""No secret reaches a span: provisioning the API role as `up` does (migrations, role, grants)
with tracing on exports no span attribute holding the role's password, and every span's
``db.query.text`` is sanitised (literals replaced by ``?``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import create_engine, text

from hartonomous.config import Settings
from hartonomous.db import upgrade
from hartonomous.db.api_role import CREDENTIALS_FILE, api_role_url, provision_api_role
from hartonomous.observability.tracing import sanitise_query


def test_provisioning_the_api_role_exports_no_span_holding_its_password(
    spans: InMemorySpanExporter, empty_database_url: str, data_dir: Path
) -> None:
    settings = Settings.model_validate({"data_dir": data_dir})
    engine = create_engine(empty_database_url)
    try:
        upgrade(engine)
        provision_api_role(engine, settings)  # creates the role, or sets its password
        provision_api_role(engine, settings)  # the role exists now: sets its password again
        password = (data_dir / CREDENTIALS_FILE).read_text().strip()
        finished = spans.get_finished_spans()
        assert any("db.query.text" in (s.attributes or {}) for s in finished), "traced at all"
        for span in finished:
            for key, value in (span.attributes or {}).items():
                assert password not in str(value), f"{span.name}: {key} holds the password"
                assert "PASSWORD '" not in str(value), f"{span.name}: {key} = {value!r}"
        # The role logs in with the password whose verifier alone was sent.
        api = create_engine(api_role_url(settings, empty_database_url))
        try:
            with api.connect() as connection:
                assert connection.execute(text("SELECT current_user")).scalar_one() == (
                    "hartonomous_api"
                )
        finally:
            api.dispose()
        # Nor did the clear password reach the server's statement statistics, when kept.
        with engine.connect() as connection:
            kept = connection.execute(
                text("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
            ).scalar()
            if kept:
                leaked = connection.execute(
                    text("SELECT count(*) FROM pg_stat_statements WHERE query LIKE :p"),
                    {"p": f"%{password}%"},
                ).scalar_one()
                assert leaked == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "ALTER ROLE \"it's\" WITH LOGIN PASSWORD 'se''cret'",
            'ALTER ROLE "it\'s" WITH LOGIN PASSWORD ?',
        ),
        (
            "SELECT a FROM t WHERE b = %(b)s AND c = 'x' LIMIT 10",
            "SELECT a FROM t WHERE b = %(b)s AND c = ? LIMIT ?",
        ),
        ("SELECT E'a\\'b', $$x 'y'$$, $f$z$f$ -- it's", "SELECT ?, ?, ? -- it's"),
        ("SELECT col2, $1 FROM t2", "SELECT col2, $1 FROM t2"),
    ],
)
def test_query_text_keeps_the_statement_and_drops_its_literals(
    statement: str, expected: str
) -> None:
    assert sanitise_query(statement) == expected
