"""`smoke`: the schema smoke test (the seed's SchemaSmokeTest, which never existed there).

Everything it expects is derived from the table metadata the migrations build (a test keeps
the two identical), not from a hand-kept list.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Connection, Engine, insert, select, text
from sqlalchemy.exc import DBAPIError

from hartonomous.cdc.replication import smoke_check
from hartonomous.config.sections import CdcSettings
from hartonomous.db import head_revision
from hartonomous.db.connection import describe_failure, pgvector_version_problem
from hartonomous.db.tables import metadata, tenants


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    WARN = "WARN"  # works, but needs an operator's attention (e.g. change capture lags)
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    detail: str


@dataclass(frozen=True)
class SmokeReport:
    checks: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(check.verdict != Verdict.FAIL for check in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [check for check in self.checks if check.verdict == Verdict.FAIL]


def run_smoke(engine: Engine, cdc: CdcSettings) -> SmokeReport:
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as connection:
            checks = list(_checks(connection))
        checks.append(_change_capture(engine, cdc))
        return SmokeReport(checks)
    except DBAPIError as exc:
        failure = CheckResult("database reachable", Verdict.FAIL, describe_failure(url, exc))
        return SmokeReport([failure])


def _change_capture(engine: Engine, cdc: CdcSettings) -> CheckResult:
    # Slot and publication are armed by `db upgrade` / `up` and re-armed by the CES consumer;
    # missing here means changes are not being captured.
    try:
        healthy, lagging, detail = smoke_check(engine, cdc)
    except psycopg.Error as exc:
        return CheckResult(
            "change data capture", Verdict.FAIL, f"cannot inspect: {str(exc).splitlines()[0]}"
        )
    if not healthy:
        return CheckResult("change data capture", Verdict.FAIL, detail)
    return CheckResult("change data capture", Verdict.WARN if lagging else Verdict.PASS, detail)


def _checks(connection: Connection) -> Iterator[CheckResult]:
    version = connection.execute(text("SHOW server_version")).scalar_one()
    yield CheckResult("database reachable", Verdict.PASS, f"PostgreSQL {version}")
    checks: list[tuple[str, Callable[[Connection], tuple[Verdict, str]]]] = [
        ("pgvector present", _pgvector),
        ("migrations at head", _migrations_at_head),
        ("schema matches migrations", _schema_matches),
        ("wal_level logical", _wal_level),
        ("write/read round trip", _round_trip),
    ]
    for name, check in checks:
        verdict, detail = check(connection)
        yield CheckResult(name, verdict, detail)


def _pgvector(connection: Connection) -> tuple[Verdict, str]:
    installed = connection.execute(
        text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).scalar_one_or_none()
    if installed is None:
        return Verdict.FAIL, "extension 'vector' is not installed in this database"
    problem = pgvector_version_problem(installed, None)
    if problem is not None:
        return Verdict.FAIL, problem
    return Verdict.PASS, f"vector {installed}"


def _migrations_at_head(connection: Connection) -> tuple[Verdict, str]:
    current = MigrationContext.configure(connection).get_current_revision()
    head = head_revision()
    if current != head:
        return Verdict.FAIL, f"database at {current or 'no revision'}, migrations head is {head}"
    return Verdict.PASS, f"revision {head}"


def _schema_matches(connection: Connection) -> tuple[Verdict, str]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False}
    )
    missing: list[str] = []
    unexpected: list[str] = []
    for difference in _flatten(compare_metadata(context, metadata)):
        kind = difference[0]
        if kind == "remove_table":
            continue  # tables the platform does not own are not its business
        described = _describe(difference)
        (missing if kind.startswith("add_") else unexpected).append(described)
    missing.extend(_missing_check_constraints(connection))
    missing.extend(_missing_triggers(connection))
    if missing or unexpected:
        return Verdict.FAIL, "; ".join([*(f"missing {m}" for m in missing), *unexpected])
    tables = len(metadata.tables)
    indexes = sum(len(table.indexes) for table in metadata.tables.values())
    return Verdict.PASS, f"{tables} tables, {indexes} indexes and their constraints present"


def _flatten(differences: list[Any]) -> Iterator[tuple[Any, ...]]:
    for difference in differences:
        # Column modifications come grouped in a list per column.
        if isinstance(difference, list):
            yield from difference
        else:
            yield difference


def _describe(difference: tuple[Any, ...]) -> str:
    kind = difference[0]
    if kind in ("add_table", "remove_table"):
        return f"table {difference[1].name}"
    if kind in ("add_column", "remove_column"):
        return f"column {difference[2]}.{difference[3].name}"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        item = difference[1]
        return f"{kind.split('_')[1]} {item.name} on {item.table.name}"
    if kind in ("add_fk", "remove_fk"):
        return f"foreign key {difference[1].name} on {difference[1].parent.name}"
    if kind.startswith("modify_"):
        return f"column {difference[2]}.{difference[3]} differs ({kind.removeprefix('modify_')})"
    return str(difference)


def _missing_check_constraints(connection: Connection) -> list[str]:
    # compare_metadata does not look at CHECK constraints; they are checked by name.
    present = set(
        connection.execute(text("SELECT conname FROM pg_constraint WHERE contype = 'c'")).scalars()
    )
    missing = []
    for table in metadata.tables.values():
        for constraint in table.constraints:
            # The naming convention has already expanded the name when the table was built.
            name = constraint.name
            is_check = isinstance(constraint, CheckConstraint) and isinstance(name, str)
            if is_check and name not in present:
                missing.append(f"check constraint {name} on {table.name}")
    return missing


def _missing_triggers(connection: Connection) -> list[str]:
    # Triggers the migrations create, as each table's metadata declares them (info["triggers"]).
    present = set(
        connection.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars()
    )
    return [
        f"trigger {name} on {table.name}"
        for table in metadata.tables.values()
        for name in table.info.get("triggers", ())
        if name not in present
    ]


def _wal_level(connection: Connection) -> tuple[Verdict, str]:
    level = connection.execute(text("SHOW wal_level")).scalar_one()
    if level != "logical":
        return Verdict.FAIL, f"wal_level is {level}; change data capture needs logical"
    return Verdict.PASS, "logical"


def _round_trip(connection: Connection) -> tuple[Verdict, str]:
    probe = f"smoke-{uuid.uuid4().hex[:12]}"
    transaction = connection.begin_nested() if connection.in_transaction() else connection.begin()
    try:
        connection.execute(insert(tenants).values(tenant_id=probe, display_name="smoke probe"))
        read = connection.execute(
            select(tenants.c.display_name).where(tenants.c.tenant_id == probe)
        ).scalar_one_or_none()
    except DBAPIError as exc:
        return Verdict.FAIL, f"write failed: {str(exc.orig).splitlines()[0]}"
    finally:
        transaction.rollback()
    if read != "smoke probe":
        return Verdict.FAIL, "row written in the transaction could not be read back"
    return Verdict.PASS, "insert + select in a rolled-back transaction"
