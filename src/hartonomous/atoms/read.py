"""Reading atoms back: visibility for a tenant, summaries, and exact reconstruction of bytes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Boolean, ColumnElement, Connection, Row, column, select, text

from hartonomous.atoms.component_stream import Run, encode_component_stream
from hartonomous.atoms.holdings import holding_dict
from hartonomous.errors import ConflictError, NotFoundError

_FETCH_BATCH = 64

# Every atom that contains `atom_id` (itself, its composite ancestors, and atoms it was derived
# from), as far up as the graph goes.
_ANCESTORS = """
WITH RECURSIVE up(atom_id) AS (
    SELECT CAST(:atom_id AS bytea)
    UNION
    SELECT edges.parent FROM (
        SELECT parent_atom_id AS parent, child_atom_id AS child FROM atom_components
        UNION ALL
        SELECT from_atom_id, to_atom_id FROM atom_relations
    ) AS edges JOIN up ON edges.child = up.atom_id
)
"""


class AtomNotFoundError(NotFoundError, LookupError):
    """No such atom for this tenant (it does not exist, or the tenant holds nothing that has it)."""


@dataclass(frozen=True)
class AtomSummary:
    atom_id: str
    kind: str
    modality: str
    subtype: str
    size_bytes: int
    reference_count: int
    canonical_text: str | None
    metadata: dict[str, object]
    runs: int
    components: int
    distinct_children: int
    holders: list[dict[str, object]]


def visible_to(tenant_id: str, atom_id: bytes) -> ColumnElement[bool]:
    """Whether ``tenant_id`` holds ``atom_id`` or an atom containing it, as an expression (a
    scalar subquery) for a statement that checks it along with other things."""
    return (
        text(
            _ANCESTORS + "SELECT EXISTS (SELECT 1 FROM holdings h JOIN up USING (atom_id) "
            "WHERE h.tenant_id = :tenant_id) AS visible"
        )
        .bindparams(atom_id=atom_id, tenant_id=tenant_id)
        .columns(column("visible", Boolean))
        .scalar_subquery()
    )


def require_visible(connection: Connection, tenant_id: str, atom_id: bytes) -> None:
    visible = connection.execute(select(visible_to(tenant_id, atom_id))).scalar_one()
    if not visible:
        raise AtomNotFoundError(f"atom {atom_id.hex()} not found for tenant {tenant_id!r}")


def summarise(connection: Connection, tenant_id: str, atom_id: bytes) -> AtomSummary:
    require_visible(connection, tenant_id, atom_id)
    atom = connection.execute(
        text(
            "SELECT a.kind, a.modality, a.subtype, a.size_bytes, r.reference_count, "
            "a.canonical_text, a.metadata FROM atoms a JOIN atom_reference_counts r "
            "USING (atom_id) WHERE a.atom_id = :atom_id"
        ),
        {"atom_id": atom_id},
    ).one()
    children = connection.execute(
        text(
            "SELECT count(*) AS runs, coalesce(sum(repeat), 0) AS components, "
            "count(DISTINCT child_atom_id) AS distinct_children "
            "FROM atom_components WHERE parent_atom_id = :atom_id"
        ),
        {"atom_id": atom_id},
    ).one()
    holders = holders_of(connection, tenant_id, atom_id)
    return AtomSummary(
        atom_id=atom_id.hex(),
        kind=atom.kind,
        modality=atom.modality,
        subtype=atom.subtype,
        size_bytes=atom.size_bytes,
        reference_count=atom.reference_count,
        canonical_text=atom.canonical_text,
        metadata=atom.metadata,
        runs=children.runs,
        components=int(children.components),
        distinct_children=children.distinct_children,
        holders=[holding_dict(h) for h in holders],
    )


def holders_of(connection: Connection, tenant_id: str, atom_id: bytes) -> Sequence[Row[Any]]:
    """The tenant's holdings of the atom or of an atom containing it, oldest first: rows of
    holding_id, atom_id, source_uri, source_type, visibility, job_id, created_at."""
    return connection.execute(
        text(
            _ANCESTORS + "SELECT h.holding_id, h.atom_id, h.source_uri, h.source_type, "
            "h.visibility, h.job_id, h.created_at FROM holdings h JOIN up USING (atom_id) "
            "WHERE h.tenant_id = :tenant_id ORDER BY h.created_at, h.holding_id"
        ),
        {"atom_id": atom_id, "tenant_id": tenant_id},
    ).all()


class NotCompositeError(ConflictError, ValueError):
    pass


def component_stream(connection: Connection, atom_id: bytes) -> bytes:
    """The composite atom's ComponentStream, version 1 (docs/atoms.md, "ComponentStream")."""
    kind = connection.execute(
        text("SELECT kind FROM atoms WHERE atom_id = :atom_id"), {"atom_id": atom_id}
    ).scalar_one_or_none()
    if kind != "composite":
        raise NotCompositeError(f"atom {atom_id.hex()} is a leaf: it has no ComponentStream")
    runs = connection.execute(
        text(
            "SELECT child_atom_id, repeat FROM atom_components WHERE parent_atom_id = :atom_id "
            "ORDER BY ordinal"
        ),
        {"atom_id": atom_id},
    ).all()
    return encode_component_stream(Run(bytes(run.child_atom_id), run.repeat) for run in runs)


def _leaves(connection: Connection, atom_id: bytes) -> Iterator[tuple[bytes, int]]:
    """The leaf atoms whose concatenation is the atom's bytes, in order (repeats expanded),
    each with its size in bytes."""
    rows = connection.execute(
        text(
            """
            WITH RECURSIVE walk(atom_id, path) AS (
                SELECT CAST(:atom_id AS bytea), ARRAY[]::int[]
                UNION ALL
                SELECT c.child_atom_id, w.path || c.ordinal || r
                FROM walk w
                JOIN atom_components c ON c.parent_atom_id = w.atom_id
                CROSS JOIN generate_series(1, c.repeat) AS r
            )
            SELECT w.atom_id, a.size_bytes FROM walk w JOIN atoms a USING (atom_id)
            WHERE a.kind = 'leaf' ORDER BY w.path
            """
        ),
        {"atom_id": atom_id},
    )
    for leaf, size in rows:
        yield bytes(leaf), size


def read_atom_bytes(
    connection: Connection, atom_id: bytes, start: int = 0, stop: int | None = None
) -> Iterator[bytes]:
    """The atom's exact original bytes ``[start, stop)`` as a stream of chunks (leaf payloads).

    Leaves wholly outside the range are never fetched; at most ``_FETCH_BATCH`` payloads are
    held at a time, so memory stays bounded whatever the atom's size. Offsets are in bytes.
    """
    offset = 0
    pending: list[tuple[bytes, int, int]] = []  # (leaf, first byte wanted, end byte wanted)
    for leaf, size in _leaves(connection, atom_id):
        if stop is not None and offset >= stop:
            break
        end = offset + size
        if end > start:
            pending.append(
                (leaf, max(start - offset, 0), size if stop is None else min(size, stop - offset))
            )
        offset = end
        if len(pending) == _FETCH_BATCH:
            yield from _payload_slices(connection, pending)
            pending = []
    if pending:
        yield from _payload_slices(connection, pending)


def write_atom_bytes(connection: Connection, atom_id: bytes, out: BinaryIO) -> int:
    """Write the atom's exact original bytes to `out`; returns how many were written."""
    return sum(out.write(chunk) for chunk in read_atom_bytes(connection, atom_id))


def _payload_slices(
    connection: Connection, leaves: list[tuple[bytes, int, int]]
) -> Iterator[bytes]:
    payloads = {
        bytes(row.atom_id): bytes(row.content)
        for row in connection.execute(
            text("SELECT atom_id, content FROM atom_payloads WHERE atom_id = ANY(:ids)"),
            {"ids": list({leaf for leaf, _, _ in leaves})},
        )
    }
    for leaf, first, end in leaves:
        payload = payloads[leaf]
        yield payload if (first, end) == (0, len(payload)) else payload[first:end]
