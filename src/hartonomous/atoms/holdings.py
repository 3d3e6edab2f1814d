"""Holdings (how a tenant owns an atom) and garbage collection of what nothing references."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text

from hartonomous.db.tables import holdings
from hartonomous.errors import NotFoundError
from hartonomous.instants import rfc3339


class HoldingNotFoundError(NotFoundError, LookupError):
    pass


def holding_dict(row: Any) -> dict[str, object]:
    """A holdings row as JSON-ready values."""
    return {
        "holding_id": str(row.holding_id),
        "atom_id": bytes(row.atom_id).hex(),
        "source_uri": row.source_uri,
        "source_type": row.source_type,
        "visibility": row.visibility,
        "created_at": rfc3339(row.created_at),
    }


def list_holdings(connection: Connection, tenant_id: str) -> list[dict[str, object]]:
    rows = connection.execute(
        select(holdings)
        .where(holdings.c.tenant_id == tenant_id)
        .order_by(holdings.c.created_at.desc())
    )
    return [holding_dict(row) for row in rows]


def release_holding(engine: Engine, tenant_id: str, holding_id: uuid.UUID) -> None:
    """Delete a tenant's holding; reference counts go down (triggers), gc collects the rest."""
    with engine.begin() as connection:
        deleted = connection.execute(
            delete(holdings)
            .where(holdings.c.tenant_id == tenant_id, holdings.c.holding_id == holding_id)
            .returning(holdings.c.holding_id)
        ).first()
    if deleted is None:
        raise HoldingNotFoundError(f"holding {holding_id} not found for tenant {tenant_id!r}")


@dataclass(frozen=True)
class GcReport:
    atoms_deleted: int
    bytes_freed: int
    batches: int


def collect_garbage(engine: Engine, batch_size: int = 1000) -> GcReport:
    """Delete unreferenced atoms in batches until none is left.

    Deleting a composite drops its component rows, whose trigger lowers its children's counts;
    the next batch collects those that reach zero. Candidates come from the count rows, and both
    the count row and the `atoms` row are taken `FOR UPDATE SKIP LOCKED` and re-checked: an
    ingestion about to reference an atom holds `FOR KEY SHARE` on its `atoms` row, which
    conflicts with `FOR UPDATE`, so that atom is skipped, never deleted under it.
    """
    deleted = freed = batches = 0
    while True:
        with engine.begin() as connection:
            row = connection.execute(
                text(
                    """
                    WITH candidates AS (
                        SELECT r.atom_id FROM atom_reference_counts r
                        JOIN atoms a USING (atom_id)
                        WHERE r.reference_count = 0
                        LIMIT :batch FOR UPDATE OF r, a SKIP LOCKED
                    ), removed AS (
                        DELETE FROM atoms a USING candidates c, atom_reference_counts r
                        WHERE a.atom_id = c.atom_id AND r.atom_id = c.atom_id
                          AND r.reference_count = 0
                        RETURNING a.kind, a.size_bytes
                    )
                    SELECT count(*) AS atoms,
                           coalesce(sum(size_bytes) FILTER (WHERE kind = 'leaf'), 0) AS bytes
                    FROM removed
                    """
                ),
                {"batch": batch_size},
            ).one()
        if row.atoms == 0:
            return GcReport(deleted, freed, batches)
        deleted += row.atoms
        freed += int(row.bytes)
        batches += 1
