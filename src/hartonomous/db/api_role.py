"""The API's database role: a login role that owns nothing, so row-level security binds it.

The HTTP API connects as this role (docs/security.md, "Isolation"); every maintenance path
(migrations, the CES consumer, the sync worker, repair/replay, the CLI) connects as the
database owner, which the policies do not bind. `up` and `db upgrade` call
``provision_api_role``: it creates the role when it can (the embedded server, or an owner with
CREATEROLE), refuses one that could bypass the policies, and grants exactly ``API_PRIVILEGES``
(re-applied on every run, so a table added later gets its grants on the next upgrade).

Credentials: ``[database] api_url`` when set (an operator-made role, docs/database.md);
otherwise the role ``hartonomous_api`` with a password generated into the data directory
(``api-role.password``, mode 0600).

The password never reaches the server, a span, a log line or pg_stat_statements as text: the
role is given its SCRAM-SHA-256 verifier (computed here, as psql's ``\\password`` does), and
that statement runs with instrumentation suppressed (docs/operations.md, "Traces").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hartonomous.config import Settings
from hartonomous.db.connection import DatabaseUnavailableError, describe_failure, normalise_url

__all__ = [
    "API_PRIVILEGES",
    "DEFAULT_API_ROLE",
    "ApiRoleError",
    "api_role_url",
    "provision_api_role",
    "scram_verifier",
]

DEFAULT_API_ROLE: Final = "hartonomous_api"
CREDENTIALS_FILE: Final = "api-role.password"
_SCRAM_ITERATIONS: Final = 4096  # PostgreSQL's default scram_iterations

_ALL: Final = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Shared content is written by ingestion (new atoms, reference counts kept by triggers; UPDATE
# is also what `SELECT … FOR KEY SHARE` needs) and never deleted by the API: gc is maintenance.
_CONTENT: Final = ("SELECT", "INSERT", "UPDATE")
_READ: Final = ("SELECT",)
_APPEND: Final = ("SELECT", "INSERT")
_NONE: Final[tuple[str, ...]] = ()

API_PRIVILEGES: Final[dict[str, tuple[str, ...]]] = {
    # Tenant-scoped: row-level security limits every command to the bound tenant.
    "tenants": _READ,
    "principals": _ALL,
    "api_keys": _ALL,
    "ingestion_jobs": _ALL,
    "ingestion_job_plans": _ALL,
    "ingestion_job_atoms": _ALL,
    "holdings": _ALL,
    "search_entries": _ALL,
    "atom_similarities": _ALL,
    "billing_usage_ledger": _READ,  # written by the sync worker only
    "billing_ledger_archive_totals": _READ,  # written by `ledger archive` only
    "billing_ledger_archives": _NONE,  # platform maintenance
    "billing_usage_rollup": _READ,  # kept by a trigger on the ledger
    # Written with the broker message in one transaction, on the maintenance engine.
    "billing_usage_event_receipts": _READ,
    "billing_closed_periods": _READ,  # written by `ledger close` only
    "billing_rate_plans": _READ,
    "inference_requests": _ALL,  # submitted by the API; run by the job worker
    # A cache hit is answered at submission: its step, atoms and stream are written then.
    "inference_steps": _APPEND,
    "inference_atoms": _APPEND,
    "generation_streams": _APPEND,
    "graph_nodes": _READ,  # written by the sync worker only
    "graph_edges": _READ,
    # Shared by all tenants, content-addressed: reached through a tenant's holdings.
    "atoms": _CONTENT,
    "atom_payloads": _CONTENT,
    "atom_components": _CONTENT,
    "atom_relations": _CONTENT,
    "atom_reference_counts": _CONTENT,
    "atom_embeddings": _CONTENT,
    "models": _CONTENT,
    "model_tensors": _CONTENT,
    "embedding_spaces": _CONTENT,
    "deduplication_policies": _READ,
    "billing_operation_rates": _READ,
    "billing_multipliers": _READ,
    # Platform state.
    "security_throttle_counters": _ALL,  # rate limits, shared by every API process
    "server_secrets": _READ,  # the pagination cursor signing key
    "alembic_version": _READ,  # readiness: migrations at head
    "cdc_checkpoints": _READ,
    "broker_throughput": _READ,
    "sync_counters": _READ,
    "service_heartbeats": _READ,  # readiness: each service's last beat
    "sync_control": _READ,  # readiness: sync paused by an operator
    # Every tenant's events: only maintenance paths (the owner) read them.
    "broker_messages": _NONE,
    "message_dead_letters": _NONE,
}
"""Table -> the privileges the API role gets on it. Every table must be listed (a test checks
it against db/tables metadata); a table not listed gets none."""


class ApiRoleError(DatabaseUnavailableError):
    """The API role is missing, cannot be created, or could bypass row-level security."""


@dataclass(frozen=True)
class _Credentials:
    role: str
    password: str | None  # None: the operator manages it (api_url)


def api_role_url(settings: Settings, owner_url: str) -> str:
    """The URL the API connects with: ``[database] api_url``, or the owner's server and
    database as ``hartonomous_api`` with the generated password.

    Raises ``ApiRoleError`` when the password was never generated (`up` or `db upgrade` does).
    """
    if settings.database.api_url:
        return normalise_url(settings.database.api_url)
    path = settings.data_dir / CREDENTIALS_FILE
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        missing = ApiRoleError(
            f"no API role credentials in {path}: migrate once with this data dir (they are "
            "made then), or set [database] api_url"
        )
        missing.cli_hint = "run `hartonomous up` or `hartonomous db upgrade` once"
        raise missing from None
    return _with_role(owner_url, DEFAULT_API_ROLE, password)


def provision_api_role(engine: Engine, settings: Settings) -> str:
    """Create (when needed and allowed) and grant the API role; return its name.

    Raises ``ApiRoleError`` when the role cannot be created, is the owner itself, is a
    superuser, can bypass row-level security, owns a table or can become the owner.
    """
    credentials = _credentials(settings)
    try:
        with engine.begin() as connection:
            _ensure_role(connection, credentials)
            _refuse_privileged(connection, credentials.role)
            _grant(connection, credentials.role)
    except DBAPIError as exc:
        url = engine.url.render_as_string(hide_password=False)
        raise ApiRoleError(
            f"{describe_failure(url, exc)} (while provisioning the API role "
            f"{credentials.role!r}: docs/security.md, section Isolation, gives the SQL to run "
            "as an administrator, then set [database] api_url)"
        ) from None
    return credentials.role


def _credentials(settings: Settings) -> _Credentials:
    if settings.database.api_url:
        role = make_url(normalise_url(settings.database.api_url)).username
        if not role:
            raise ApiRoleError("[database] api_url names no user: it must name the API role")
        return _Credentials(role, None)
    return _Credentials(DEFAULT_API_ROLE, _generated_password(settings.data_dir))


def _generated_password(data_dir: Path) -> str:
    path = data_dir / CREDENTIALS_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(32)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first: use theirs
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    return password


def _ensure_role(connection: Connection, credentials: _Credentials) -> None:
    exists = connection.execute(
        text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": credentials.role}
    ).scalar()
    if credentials.password is None:
        if not exists:
            raise ApiRoleError(
                f"the API role {credentials.role!r} of [database] api_url does not exist: "
                "create it as docs/security.md (section Isolation) says"
            )
        return
    quoted = _quote_identifier(connection, credentials.role)
    # Only the verifier travels (base64 and `$:` only: safe inside a literal), and untraced.
    verifier = scram_verifier(credentials.password)
    # exec_driver_sql with no parameters: the verifier's `:` and `$` are not placeholders.
    with suppress_instrumentation():
        if not exists:
            connection.exec_driver_sql(
                f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                f"NOREPLICATION NOBYPASSRLS PASSWORD '{verifier}'"
            )
        else:
            # Only the password: naming SUPERUSER, REPLICATION or BYPASSRLS at all in ALTER
            # ROLE needs a superuser, and an owner with CREATEROLE may run this. The
            # attributes that matter are checked next (_refuse_privileged).
            connection.exec_driver_sql(f"ALTER ROLE {quoted} WITH LOGIN PASSWORD '{verifier}'")


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of ``password``: ``SCRAM-SHA-256$4096:<salt>$<stored>:<server>``
    (RFC 5802/7677; base64 parts). The server accepts it in ``PASSWORD '...'`` as the verifier
    itself, so the clear password is never sent. ``salt``: 16 random bytes unless given."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _refuse_privileged(connection: Connection, role: str) -> None:
    facts = connection.execute(
        text(
            "SELECT r.rolname = current_user AS is_owner, r.rolsuper, r.rolbypassrls, "
            "pg_has_role(r.rolname, current_user, 'MEMBER') AS can_become_owner, "
            "(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid "
            " AND c.relnamespace = current_schema()::regnamespace) AS owned "
            "FROM pg_roles r WHERE r.rolname = :role"
        ),
        {"role": role},
    ).one()
    problems = [
        reason
        for failed, reason in (
            (facts.is_owner, "it is the database owner this command connects as"),
            (facts.rolsuper, "it is a superuser"),
            (facts.rolbypassrls, "it has BYPASSRLS"),
            (facts.can_become_owner, "it is a member of the owner role"),
            (facts.owned > 0, f"it owns {facts.owned} relations in the schema"),
        )
        if failed
    ]
    if problems:
        raise ApiRoleError(
            f"the API role {role!r} would not be bound by row-level security: "
            + "; ".join(problems)
        )


def _grant(connection: Connection, role: str) -> None:
    quoted = _quote_identifier(connection, role)
    schema = connection.execute(text("SELECT quote_ident(current_schema())")).scalar_one()
    existing = set(
        connection.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "UNION SELECT viewname FROM pg_views WHERE schemaname = current_schema()"
            )
        ).scalars()
    )
    connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}"))
    connection.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}"))
    connection.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {quoted}"))
    for table, privileges in API_PRIVILEGES.items():
        if privileges and table in existing:
            connection.execute(text(f'GRANT {", ".join(privileges)} ON "{table}" TO {quoted}'))


def _quote_identifier(connection: Connection, name: str) -> str:
    return str(connection.execute(text("SELECT quote_ident(:name)"), {"name": name}).scalar_one())


def _with_role(url: str, role: str, password: str) -> str:
    parsed = make_url(normalise_url(url)).set(username=role, password=password)
    return parsed.render_as_string(hide_password=False)
