"""Nearest vectors of one space among what a tenant may see (its search entries, plus the public
corpus when allowed), with optional filters, as the planner (`search/planner.py`) chooses.

Space names and dimensions are inlined into the SQL (they come from the registry, never from a
user): the planner can then match each space's partial HNSW index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Dialect, text

from hartonomous.embed.spaces import EmbeddingSpace
from hartonomous.embed.vector_param import Float4Array
from hartonomous.search.planner import Method, PlannerSettings, ef_search_for, plan_search


@dataclass(frozen=True)
class Scope:
    """Whose entries are searched: the tenant's own, and the public corpus if its plan allows."""

    tenant_id: str
    include_public: bool


@dataclass(frozen=True)
class Filters:
    source_type: str | None = None
    source_modality: str | None = None
    held_since: datetime | None = None
    held_until: datetime | None = None
    exclude_atom: bytes | None = None


@dataclass(frozen=True)
class HitDetails:
    text: str | None
    source: str
    source_type: str
    source_modality: str
    visibility: str
    distance: float | None
    """Cosine distance to the query vector given to `describe` (None without one or a vector)."""


@dataclass(frozen=True)
class Neighbour:
    atom_id: bytes
    distance: float
    details: HitDetails | None = None
    """The hit's text and source, when the search was asked for them."""

    @property
    def score(self) -> float:
        """Cosine similarity."""
        return 1.0 - self.distance


@dataclass(frozen=True)
class VectorSearch:
    neighbours: list[Neighbour]
    plan: Method
    method_used: Method
    """The plan's method, or exact when the index scan came back short of k rows."""


@lru_cache(maxsize=256)
def _driver_sql(sql: str, dialect: Dialect) -> str:
    """``sql`` (``:name`` parameters) in the driver's own parameter style, compiled once."""
    return str(text(sql).compile(dialect=dialect))


def fetch(connection: Connection, sql: str, params: Mapping[str, Any]) -> list[Any]:
    """The rows of one search statement (``:name`` parameters), as named tuples.

    Run on the driver (psycopg) connection under SQLAlchemy's: prepared on the server at its
    first execution, rows as plain named tuples. SQLAlchemy's execution path (result metadata,
    row processing, its statement cache) cost about 0.7 ms of CPU per search, a third of a
    whole 10-nearest search (docs/search.md, "How a search runs"). Driver errors are psycopg's
    (``services.database_errors`` takes them as it takes SQLAlchemy's).
    """
    if connection.get_transaction() is None:
        # What SQLAlchemy's first statement does: fires `begin`, where an engine scoped by
        # db/isolation.py sets the caller's tenant for row-level security.
        connection.begin()
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    with driver.cursor(row_factory=namedtuple_row) as cursor:
        cursor.execute(_driver_sql(sql, connection.dialect), params, prepare=True)
        return cursor.fetchall()


def query_vector(space: EmbeddingSpace) -> str:
    """The query's vector in SQL: the parameter ``:q``, a `Float4Array` of one vector (binary,
    no text formatting; embed/vector_param.py), as a ``vector`` of the space's dimension.

    A one-row subquery (an InitPlan), so converted once per statement: in a generic plan the
    parameter is not a constant, and a bare cast would convert the array again for every row
    it is compared with (measured: 6 of the 8 ms of an exact scan of 1,700 vectors).
    """
    return f"(SELECT CAST(CAST(:q AS real[]) AS vector({space.dimension})))"


class EntrySql:
    """The SQL fragments of one search: visible entries, filters, and their parameters.

    ``public_gate`` is an extra SQL condition on the public branch, for a statement that reads
    the tenant's public-corpus flag itself (`search/scope.py`); the branch is then planned
    behind a one-time filter and costs nothing when the flag is false.
    """

    def __init__(
        self,
        space: EmbeddingSpace,
        scope: Scope,
        filters: Filters,
        public_gate: str = "",
        *,
        opaque: bool = False,
    ) -> None:
        self.space = space
        self.scope = scope
        self.public_gate = f" AND {public_gate}" if public_gate else ""
        self.opaque = opaque
        self.params: dict[str, Any] = {"tenant_id": scope.tenant_id}
        self.tenant = self.value("tenant_id", "text")
        conditions = [f"s.space = '{space.name}'"]
        for column, operator, value, sql_type in (
            ("source_type", "=", filters.source_type, "text"),
            ("source_modality", "=", filters.source_modality, "text"),
            ("held_at", ">=", filters.held_since, "timestamptz"),
            ("held_at", "<", filters.held_until, "timestamptz"),
            ("atom_id", "<>", filters.exclude_atom, "bytea"),
        ):
            if value is not None:
                name = f"p_{len(self.params)}"
                conditions.append(f"s.{column} {operator} {self.value(name, sql_type)}")
                self.params[name] = value
        self.conditions = " AND ".join(conditions)

    def value(self, name: str, sql_type: str) -> str:
        """The parameter ``:name`` in SQL; ``opaque``: as a one-row subquery (an InitPlan), so
        that the planner never sees its value, not even in a custom plan.

        A prepared statement's first five executions are planned with the values given
        (custom plans); then PostgreSQL keeps one generic plan if its estimated cost is not
        above the custom plans' average. Custom plans that cannot see the values cost what
        the generic plan costs, plus their planning: the generic plan is then always kept,
        and a search stops paying for its planning (docs/search.md, "How a search runs").
        """
        return f"(SELECT CAST(:{name} AS {sql_type}))" if self.opaque else f":{name}"

    def branches(self) -> list[str]:
        """WHERE clauses over ``search_entries s``: own entries, then public ones if allowed."""
        branches = [f"s.tenant_id = {self.tenant} AND {self.conditions}"]
        if self.scope.include_public:
            branches.append(f"s.visibility = 'public' AND {self.conditions}{self.public_gate}")
        return branches

    def visible_rows(self) -> str:
        return " UNION ALL ".join(
            f"SELECT s.atom_id FROM search_entries s WHERE {where}" for where in self.branches()
        )

    def is_visible(self, atom: str) -> str:
        # One EXISTS over both branches: PostgreSQL runs it as a semi-join, probing each row
        # the scan yields; an OR of two EXISTS would be planned as hashed subplans that read
        # every visible entry first (measured: 12 ms for 20,899 entries, on every search).
        branches = " OR ".join(f"({where})" for where in self.branches())
        return f"EXISTS (SELECT 1 FROM search_entries s WHERE s.atom_id = {atom} AND ({branches}))"

    def details(self, atom: str) -> str:
        """A subquery for a LATERAL join: the text of atom ``atom`` and its visible source (the
        tenant's newest holding first, else the newest public one); no row when not visible."""
        visible = " OR ".join(f"({where})" for where in self.branches())
        return (
            "SELECT a.canonical_text, h.source_uri, s.source_type, s.source_modality, "
            "s.visibility FROM search_entries s "
            "JOIN holdings h ON h.tenant_id = s.tenant_id AND h.holding_id = s.holding_id "
            "JOIN atoms a ON a.atom_id = s.atom_id "
            f"WHERE s.atom_id = {atom} AND ({visible}) "
            f"ORDER BY s.tenant_id = {self.tenant} DESC, s.held_at DESC LIMIT 1"
        )


def configure_and_count(
    sql: EntrySql, k: int, settings: PlannerSettings, *, count: bool = True
) -> tuple[str, dict[str, Any]]:
    """SELECT-list items (and their parameters) that set the HNSW scan's settings and count the
    visible entries up to ``exact_limit + 1`` (an entry per holding: an upper bound on atoms),
    in the column ``visible``. The settings' numbers are written into the SQL (they are ints,
    never a user's text): a generic plan then knows them as a custom plan would.

    The settings are session-level (`set_config(…, false)`), so that they hold for the next
    statement whether or not it runs in the same transaction. Every vector search sets all three
    before its scan, so what a pooled connection keeps from its last search never steers another
    search; nothing else in the platform scans an HNSW index. relaxed_order lets the scan return
    rows slightly out of order; the HNSW query re-ranks them by their exact distance.

    Without ``count`` (a scope already known to be larger than ``exact_limit``), ``visible`` is
    NULL and nothing is counted.
    """
    counted = (
        f"(SELECT count(*) FROM ({sql.visible_rows()} LIMIT {int(settings.exact_limit) + 1}) v)"
        if count
        else "CAST(NULL AS bigint)"
    )
    items = (
        f"set_config('hnsw.ef_search', '{int(ef_search_for(k, settings))}', false) AS ef_search, "
        "set_config('hnsw.iterative_scan', 'relaxed_order', false) AS iterative_scan, "
        f"set_config('hnsw.max_scan_tuples', '{int(settings.max_scan_tuples)}', false)"
        " AS max_scan_tuples, "
        f"{counted} AS visible"
    )
    return items, dict(sql.params)


def _count_and_configure(
    connection: Connection, sql: EntrySql, k: int, settings: PlannerSettings
) -> int:
    items, params = configure_and_count(sql, k, settings)
    count: int = fetch(connection, f"SELECT {items}", params)[0].visible
    return count


def _with_details(sql: EntrySql, hits: str, details: bool) -> str:
    """The final SELECT over the CTE ``hits(atom_id, distance)``, nearest first; with
    ``details``, each hit's text and source from the same snapshot (one round trip)."""
    if not details:
        return f"SELECT atom_id, distance FROM {hits} ORDER BY distance, atom_id"
    return (
        f"SELECT n.atom_id, n.distance, d.* FROM {hits} n "
        f"CROSS JOIN LATERAL ({sql.details('n.atom_id')}) d ORDER BY n.distance, n.atom_id"
    )


def _exact_nearest(sql: EntrySql, k: int, gate: str = "") -> str:
    """The exact scan's query, the ``k`` visible atoms nearest to ``:q`` (``atom_id``,
    ``distance``); with ``gate``, only when that SQL condition holds (a one-time filter)."""
    space = sql.space
    gated = f" AND {gate}" if gate else ""
    # The visible atoms as one array, looked up in one scan of the primary key: PostgreSQL
    # walks the index once over the sorted array (= ANY), where a probe per atom descends it
    # per atom (measured: 1,033 buffers read for 1,700 atoms against 7,170).
    visible = f"SELECT array_agg(v.atom_id) FROM ({sql.visible_rows()}) v"
    return (
        f"SELECT e.atom_id, e.embedding <=> {query_vector(space)} AS distance"
        f" FROM atom_embeddings e WHERE e.space = '{space.name}'"
        f" AND e.atom_id = ANY(CAST(({visible}) AS bytea[])){gated}"
        f" ORDER BY distance, e.atom_id LIMIT {int(k)}"
    )


def _hnsw_nearest(sql: EntrySql, k: int, gate: str = "") -> str:
    """The HNSW scan's query (as configured by configure_and_count), ``k`` rows at most, in
    the index's order; with ``gate``, only when that SQL condition holds (a one-time filter,
    checked before the index scan starts)."""
    cast = f"vector({sql.space.dimension})"
    return (
        f"SELECT e.atom_id, e.embedding::{cast} <=> {query_vector(sql.space)} AS distance"
        f" FROM atom_embeddings e WHERE e.space = '{sql.space.name}'"
        f" AND ({sql.is_visible('e.atom_id')}){f' AND {gate}' if gate else ''}"
        f" ORDER BY e.embedding::{cast} <=> {query_vector(sql.space)} LIMIT {int(k)}"
    )


def _exact(
    connection: Connection, sql: EntrySql, query: Float4Array, k: int, details: bool
) -> list[Neighbour]:
    rows = fetch(
        connection,
        f"WITH nearest AS MATERIALIZED ({_exact_nearest(sql, k)}) "
        + _with_details(sql, "nearest", details),
        {**sql.params, "q": query},
    )
    return _neighbours(rows, details)


def _hnsw(
    connection: Connection, sql: EntrySql, query: Float4Array, k: int, details: bool
) -> list[Neighbour]:
    """The scan as configured by configure_and_count, re-ranked by exact distance."""
    rows = fetch(
        connection,
        f"WITH nearest AS MATERIALIZED ({_hnsw_nearest(sql, k)}) "
        + _with_details(sql, "nearest", details),
        {**sql.params, "q": query},
    )
    return _neighbours(rows, details)


def _neighbours(rows: Iterable[Any], details: bool) -> list[Neighbour]:
    return [
        Neighbour(
            bytes(row.atom_id),
            float(row.distance),
            _hit_details(row, float(row.distance)) if details else None,
        )
        for row in rows
    ]


def search_vector(
    connection: Connection,
    space: EmbeddingSpace,
    vector: npt.NDArray[np.float32],
    k: int,
    scope: Scope,
    *,
    filters: Filters | None = None,
    settings: PlannerSettings | None = None,
    details: bool = False,
) -> VectorSearch:
    """The ``k`` visible atoms nearest to ``vector`` in ``space``, nearest first, in two
    statements: the count that chooses the scan (`configure_and_count`), then the scan
    (`search.scope.search_in_scope` does both, and checks the tenant, in one).

    Always min(k, visible) rows: an index scan that comes back short is completed exactly.
    With ``details``, each neighbour carries its text and source, read in the same statement
    as the neighbours.
    """
    if vector.shape != (space.dimension,):
        raise ValueError(f"{space.name} vectors have {space.dimension} dimensions")
    settings = settings or PlannerSettings()
    sql = EntrySql(space, scope, filters or Filters())
    query = Float4Array([vector])
    visible = _count_and_configure(connection, sql, k, settings)
    plan = plan_search(k, visible, settings)
    if plan is Method.HNSW:
        found = _hnsw(connection, sql, query, k, details)
        if len(found) == k:
            return VectorSearch(found, plan, Method.HNSW)
    return VectorSearch(_exact(connection, sql, query, k, details), plan, Method.EXACT)


def scoped_search(
    sql: EntrySql,
    tenant: str,
    k: int,
    settings: PlannerSettings,
    details: bool,
    *,
    known_large: bool = False,
) -> tuple[str, dict[str, Any]]:
    """One statement (one round trip) for a whole vector search: the CTE ``tenant`` (``{tenant}``,
    giving ``is_active`` and ``include_public``) checked, the HNSW settings made and the visible
    entries counted (`configure_and_count`), the planner's choice (`plan_search`) and the scan
    it chose, completed exactly when the index scan comes back short, as `search_vector` does.

    ``sql`` must read the public branch behind the tenant's flag (``public_gate``). The result
    has one row per neighbour, nearest first (``method``, ``atom_id``, ``distance`` and, with
    ``details``, the hit's text and source), or one row of NULL neighbour when there is none or
    the tenant is disabled, each with ``is_active``, ``include_public`` and ``visible``; no row
    for an unknown tenant. Each gate is a one-time filter: only the chosen scan runs, and the
    settings are made (the count's initPlan) before the index scan starts.

    ``known_large``: the scope was counted above ``exact_limit`` a moment ago
    (`search.scope.ScopeSizes`), so nothing is counted (``visible`` is NULL) and the HNSW scan
    runs, completed exactly when it comes back short, as after a count.
    """
    items, params = configure_and_count(sql, k, settings, count=not known_large)
    visible = "(SELECT c.visible FROM c)"
    found = "(SELECT count(*) FROM hnsw)"
    limit, k = int(settings.exact_limit), int(k)
    if known_large:
        # c's first column is there only once the settings are made (and the tenant is active).
        made = "(SELECT c.ef_search FROM c) IS NOT NULL"
        hnsw = _hnsw_nearest(sql, k, gate=made)
        exact = _exact_nearest(sql, k, gate=f"{made} AND {found} < {k}")
    else:
        hnsw = _hnsw_nearest(sql, k, gate=f"{visible} > {limit}")
        exact = _exact_nearest(
            sql, k, gate=f"{visible} IS NOT NULL AND ({visible} <= {limit} OR {found} < {k})"
        )
    hits = (
        f"SELECT 'hnsw' AS method, * FROM hnsw WHERE {found} = {k} "
        "UNION ALL SELECT 'exact', * FROM exact"
    )
    listed = "n.method, n.atom_id, n.distance" + (", d.*" if details else "")
    joined = f"({hits}) n" + (
        f" CROSS JOIN LATERAL ({sql.details('n.atom_id')}) d" if details else ""
    )
    text = (
        f"WITH {tenant}, "
        f"c AS MATERIALIZED (SELECT {items} FROM tenant WHERE tenant.is_active), "
        f"hnsw AS MATERIALIZED ({hnsw}), exact AS MATERIALIZED ({exact}) "
        f"SELECT tenant.is_active, tenant.include_public, {visible} AS visible, n.* "
        f"FROM tenant LEFT JOIN (SELECT {listed} FROM {joined}) n ON true "
        "ORDER BY n.distance, n.atom_id"
    )
    return text, params


def scoped_neighbours(
    rows: Sequence[Any], k: int, settings: PlannerSettings, details: bool
) -> VectorSearch:
    """The rows of `scoped_search` (an active tenant's) as a VectorSearch."""
    visible = rows[0].visible
    plan = Method.HNSW if visible is None else plan_search(k, int(visible), settings)
    found = [row for row in rows if row.atom_id is not None]
    used = Method(found[0].method) if found else plan
    return VectorSearch(_neighbours(found, details), plan, used)


def describe(
    connection: Connection,
    space: EmbeddingSpace,
    scope: Scope,
    atom_ids: list[bytes],
    *,
    filters: Filters | None = None,
    vector: npt.NDArray[np.float32] | None = None,
) -> dict[bytes, HitDetails]:
    """For each atom: its text, one visible source (the tenant's newest holding first) and,
    given the query's vector, its cosine distance to it."""
    if not atom_ids:
        return {}
    sql = EntrySql(space, scope, filters or Filters())
    distance = (
        "NULL::float8"
        if vector is None
        else f"(SELECT e.embedding <=> {query_vector(space)} "
        f"FROM atom_embeddings e WHERE e.atom_id = n.atom_id AND e.space = '{space.name}')"
    )
    rows = fetch(
        connection,
        f"SELECT n.atom_id, {distance} AS distance, d.* "
        "FROM unnest(CAST(:atom_ids AS bytea[])) AS n(atom_id) "
        f"CROSS JOIN LATERAL ({sql.details('n.atom_id')}) d",
        {
            **sql.params,
            "atom_ids": atom_ids,
            "q": None if vector is None else Float4Array([vector]),
        },
    )
    return {
        bytes(row.atom_id): _hit_details(row, None if row.distance is None else float(row.distance))
        for row in rows
    }


def _hit_details(row: Any, distance: float | None) -> HitDetails:
    return HitDetails(
        row.canonical_text,
        row.source_uri,
        row.source_type,
        row.source_modality,
        row.visibility,
        distance,
    )
