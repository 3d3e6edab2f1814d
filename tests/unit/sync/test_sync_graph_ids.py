"""Graph ids hold every key the source tables allow, within what a btree index entry can hold."""

from __future__ import annotations

from typing import Any

from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import String

from hartonomous.db.tables import metadata
from hartonomous.sync.dispatcher import to_sync_event
from hartonomous.sync.graph import GraphChange
from hartonomous.sync.handlers import handler_for
from hartonomous.sync.lookups import Component, Owner

# PostgreSQL refuses btree entries over a third of an 8 kB page (2704 bytes with headers).
BTREE_ENTRY_BYTES = 2704
WIDE = "\U0001f600"  # 4 bytes in UTF-8: the most bytes a character of the key can take
UUID = "9d5ed678-fe57-4cca-b40a-1234567890ab"
HEX = "ab" * 32
ORDINAL = -(2**31)


class Lookups:
    def node_components(self, parent_hex: str) -> list[Component]:
        return [Component(ORDINAL, HEX, 1)]

    def job_principal(self, tenant_id: str, job_id: str) -> str | None:
        return longest("principals", "principal_id")

    def first_owner(self, atom_hex: str) -> Owner | None:
        return None


def longest(table: str, column: str, character: str = WIDE) -> str:
    kind = metadata.tables[table].c[column].type
    assert isinstance(kind, String)
    assert kind.length is not None
    return character * kind.length


def change(table: str, data: dict[str, Any]) -> GraphChange:
    attributes = {
        "specversion": "1.0",
        "id": "e",
        "source": "/t",
        "type": f"io.hartonomous.cdc.{table}.insert",
    }
    event = to_sync_event(CloudEvent(attributes, data))
    return handler_for(table).apply(event, Lookups()).change  # type: ignore[arg-type]


def test_the_longest_ids_the_source_keys_allow_fit_a_btree_entry() -> None:
    tenant = longest("tenants", "tenant_id", "t")  # tenant ids are ASCII (a CHECK pattern)
    principal = longest("principals", "principal_id")
    changes = [
        change("principals", {"tenant_id": tenant, "principal_id": principal}),
        change(
            "ingestion_jobs",
            {"tenant_id": tenant, "job_id": UUID, "principal_id": principal},
        ),
        change(
            "atom_relations",
            {
                "from_atom_id": HEX,
                "to_atom_id": HEX,
                "relation_type": longest("atom_relations", "relation_type"),
                "ordinal": ORDINAL,
            },
        ),
        change(
            "ingestion_job_atoms",
            {"tenant_id": tenant, "job_id": UUID, "ordinal": ORDINAL, "atom_id": HEX},
        ),
        change("holdings", {"tenant_id": tenant, "holding_id": UUID, "atom_id": HEX}),
        change("model_tensors", {"model_atom_id": HEX, "ordinal": ORDINAL, "name": "n"}),
        change("atoms", {"atom_id": HEX, "kind": "composite", "modality": "text"}),
    ]
    ids = [n.ref.node_id for c in changes for n in c.nodes]
    ids += [e.edge_id for c in changes for e in c.edges]
    assert f"principal:{tenant}:{principal}" in ids
    widest = max(len(i.encode()) for i in ids)
    assert widest > 256  # what the first schema's varchar(256) refused
    assert widest < BTREE_ENTRY_BYTES
