"""Tenant-scoped tables are ready to be sharded by tenant (docs/scale-out.md): every primary and
unique key is led by `tenant_id`, and a foreign key from a tenant-scoped table into another
tenant-scoped table carries `tenant_id`, so it can never point at another tenant's row.

Read from the migrated database's catalogue (pg_constraint, pg_index), not from the metadata:
what PostgreSQL enforces is what counts. Every table is classified: tenant-scoped (a NOT NULL
`tenant_id`), or listed below as global or as shared-and-tenant, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from hartonomous.db.connection import libpq_url

# Tables without a tenant: content-addressed atoms and their derivatives (one row per content,
# shared by every tenant that holds it: tenants point at them through `holdings`), catalogues,
# and the platform's own machinery. In Citus: reference tables (atoms: distributed by
# `atom_id` instead, see docs/scale-out.md), or local to the coordinator.
GLOBAL = {
    "atoms": "content-addressed: one row per content whatever tenants hold it",
    "atom_payloads": "the bytes of an atom (keyed by atom_id)",
    "atom_components": "an atom's parts (keyed by the parent atom)",
    "atom_relations": "relations between atoms (content, not tenant, facts)",
    "atom_reference_counts": "holdings per atom across tenants (for garbage collection)",
    "atom_embeddings": "one vector per atom and space, shared by the tenants holding it",
    "embedding_spaces": "the catalogue of vector spaces",
    "models": "model atoms, shared by every tenant that uploads the same file",
    "model_tensors": "a model's tensors (atoms)",
    "billing_closed_periods": "the platform's closed billing periods",
    "billing_ledger_archives": "one archive per billing period (totals per tenant are "
    "billing_ledger_archive_totals, tenant-scoped)",
    "billing_multipliers": "rows of a rate plan (the plan catalogue)",
    "billing_operation_rates": "rows of a rate plan (the plan catalogue)",
    "broker_messages": "the in-database queue: events of every tenant in one log, like a "
    "Kafka topic (tenant in the CloudEvent, not the key)",
    "broker_throughput": "per-second counters of the queue",
    "message_dead_letters": "the queue's dead letters (an operator's view of all tenants)",
    "cdc_checkpoints": "one row per CES consumer",
    "deduplication_policies": "platform configuration",
    "security_throttle_counters": "throttle windows keyed by subject: a tenant, or a "
    "principal or key as tenant/id (platform state, shared by every API process)",
    "server_secrets": "the server's signing keys",
    "service_heartbeats": "one row per running service instance",
    "sync_control": "the platform's sync pause flag",
    "sync_counters": "the sync worker's platform-wide counters",
    "tenants": "the tenant registry itself: small and read with most requests (a reference "
    "table); its unique key is lower(tenant_id)",
    "alembic_version": "the schema revision",
}

# Tables whose rows are a tenant's (tenant_id set) or shared by all (tenant_id NULL). Their key
# cannot lead with a nullable column; docs/scale-out.md says what changes for Citus.
SHARED_AND_TENANT = {
    "graph_nodes": "Atom, Model and Tensor nodes are shared (NULL), the others a tenant's",
    "graph_edges": "edges between shared nodes carry no tenant",
    "billing_rate_plans": "global plans (NULL) beside a tenant's own plans: the plan catalogue, "
    "a reference table",
}


@dataclass(frozen=True)
class Table:
    name: str
    tenant_column: bool
    tenant_nullable: bool


@dataclass(frozen=True)
class Key:
    table: str
    name: str
    columns: tuple[str, ...]  # each key column, or the expression's text


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    referred: str
    pairs: tuple[tuple[str, str], ...]  # (column, referred column)


def catalogue(connection: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    tables = {
        row[0]: Table(row[0], row[1] is not None, bool(row[1]))
        for row in connection.execute(
            "SELECT c.relname, (SELECT NOT a.attnotnull FROM pg_attribute a WHERE "
            "a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (schema,),
        ).fetchall()
    }
    # Primary keys, unique constraints and unique indexes alike (all are unique indexes).
    keys = [
        Key(row[0], row[1], tuple(row[2]))
        for row in connection.execute(
            "SELECT t.relname, i.relname, ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true) "
            "FROM generate_series(1, x.indnkeyatts) AS k ORDER BY k) "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND x.indisunique",
            (schema,),
        ).fetchall()
    ]
    foreign_keys = [
        ForeignKey(row[0], row[1], row[2], tuple(zip(row[3], row[4], strict=True)))
        for row in connection.execute(
            "SELECT t.relname, c.conname, r.relname, "
            "ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), "
            "ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i) "
            "JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND c.contype = 'f'",
            (schema,),
        ).fetchall()
    ]
    return {"tables": tables, "keys": keys, "foreign_keys": foreign_keys}


def violations(found: dict[str, Any], global_: dict[str, str], shared: dict[str, str]) -> list[str]:
    """What keeps the schema from being sharded by tenant, one line per problem."""
    tables: dict[str, Table] = found["tables"]
    scoped = {n for n, t in tables.items() if t.tenant_column and n not in global_}
    problems = _classification(tables, global_, shared)
    for key in found["keys"]:
        led = key.columns[0] == "tenant_id"
        if key.table in scoped - set(shared) and not led:
            problems.append(
                f"{key.table}: key {key.name} ({', '.join(key.columns)}) is not led by tenant_id"
            )
    for fk in found["foreign_keys"]:
        if fk.table not in scoped or fk.referred not in scoped:
            continue
        if fk.referred in shared:
            problems.append(f"{fk.table}: {fk.name} points into the shared table {fk.referred}")
        elif ("tenant_id", "tenant_id") not in fk.pairs:
            problems.append(
                f"{fk.table}: {fk.name} into {fk.referred} does not carry tenant_id "
                f"({', '.join(f'{a} -> {b}' for a, b in fk.pairs)})"
            )
    return problems


def _classification(
    tables: dict[str, Table], global_: dict[str, str], shared: dict[str, str]
) -> list[str]:
    problems = [
        f"{name}: listed as global or shared but no such table"
        for name in sorted(set(global_) | set(shared))
        if name not in tables
    ]
    for name, table in sorted(tables.items()):
        if name in global_:
            continue
        if not table.tenant_column:
            problems.append(f"{name}: no tenant_id and not listed as global (with its reason)")
        elif table.tenant_nullable and name not in shared:
            problems.append(f"{name}: tenant_id is nullable and the table is not listed as shared")
        elif name in shared and not table.tenant_nullable:
            problems.append(f"{name}: listed as shared but tenant_id is NOT NULL")
    return problems


def test_tenant_scoped_keys_are_led_by_tenant_id_and_foreign_keys_carry_it(
    database_url: str,
) -> None:
    with psycopg.connect(libpq_url(database_url)) as connection:
        found = catalogue(connection, "public")
    assert violations(found, GLOBAL, SHARED_AND_TENANT) == []
    scoped = {n for n, t in found["tables"].items() if t.tenant_column and n not in GLOBAL}
    # The rule covers the tables it is about (a rename would otherwise empty it silently).
    assert {"holdings", "api_keys", "billing_usage_ledger", "search_entries"} <= scoped


def test_the_check_names_keys_and_foreign_keys_that_would_cross_tenants(
    database_url: str,
) -> None:
    """A table keyed by its own id, one with an FK that does not carry the tenant, one
    unlisted global table and one nullable tenant: each is named."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute(
            "CREATE SCHEMA offenders; "
            "CREATE TABLE offenders.orders (order_id bigint PRIMARY KEY, "
            "tenant_id text NOT NULL, UNIQUE (tenant_id, order_id)); "
            "CREATE TABLE offenders.lines (tenant_id text NOT NULL, line_id bigint, "
            "order_id bigint REFERENCES offenders.orders (order_id), "
            "PRIMARY KEY (tenant_id, line_id)); "
            "CREATE TABLE offenders.settings (name text PRIMARY KEY); "
            "CREATE TABLE offenders.notes (note_id bigint, tenant_id text, "
            "UNIQUE (tenant_id, note_id))"
        )
        found = catalogue(connection, "offenders")
    problems = violations(found, {}, {})
    assert problems == [
        "notes: tenant_id is nullable and the table is not listed as shared",
        "settings: no tenant_id and not listed as global (with its reason)",
        "orders: key orders_pkey (order_id) is not led by tenant_id",
        "lines: lines_order_id_fkey into orders does not carry tenant_id (order_id -> order_id)",
    ]
    assert violations(found, {"settings": "x", "gone": "y"}, {"notes": "z"})[0] == (
        "gone: listed as global or shared but no such table"
    )
