"""The billed party of a shared model, resolved at capture (docs/scale-out.md, "Keys").

Models are shared by every tenant that holds the same file, and a model's insert and update
events are billed to the tenant whose holding of the file came first (docs/billing.md). That
holder can change (the first holding is deleted), so the CES consumer resolves it when it
captures the event and writes it into the CloudEvent as the extension attributes
`billedtenantid` and `billedprincipalid`: every delivery of the event, a redelivery included,
then bills the same tenant, and the ledger's exactly-once key can be (tenant_id, event_id).
The sync worker resolves it itself only for an event captured before the party travelled in
it (`sync/handlers.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from hartonomous.cdc.events import RowEvent

Connection = psycopg.Connection[Any]

BILLED_TENANT = "billedtenantid"
BILLED_PRINCIPAL = "billedprincipalid"
# An atom id as a CDC event carries it: a bytea's hex digits (`cdc/events.py`).
_HEX = re.compile(r"[0-9a-f]+")

# The first holding of an atom, in a total order (creation time, then id), and the principal
# of the ingestion job that made it (NULL for a holding without a job).
_FIRST_HOLDER = """
SELECT h.tenant_id, j.principal_id
FROM holdings h
LEFT JOIN ingestion_jobs j ON j.tenant_id = h.tenant_id AND j.job_id = h.job_id
WHERE h.atom_id = decode(%s, 'hex')
ORDER BY h.created_at, h.holding_id
LIMIT 1
"""


@dataclass(frozen=True)
class Holder:
    """Who holds an atom first: `tenant_id`, and `principal_id` (None when unknown)."""

    tenant_id: str
    principal_id: str | None


def first_holder(connection: Connection, atom_hex: str) -> Holder | None:
    """The first holder of the atom whose id is ``atom_hex`` (lower-case hex digits); None
    when no tenant holds it or the id is not hex."""
    if not _HEX.fullmatch(atom_hex):
        return None
    row = connection.execute(_FIRST_HOLDER, (atom_hex,)).fetchone()
    if row is None:
        return None
    return Holder(str(row[0]), None if row[1] is None else str(row[1]))


def with_billed_party(connection: Connection, event: RowEvent) -> RowEvent:
    """``event``, with `billedtenantid` (and `billedprincipalid` when known) when it is a
    model's insert or update and a tenant holds the model's file; otherwise as it is. Runs
    one query (on the CES consumer's session) per model event."""
    body = event.body
    if body.get("table") != "models" or body.get("operation") == "delete":
        return event
    data = body.get("data")
    atom = data.get("atom_id") if isinstance(data, dict) else None
    holder = first_holder(connection, atom) if isinstance(atom, str) else None
    if holder is None:
        return event
    party = {BILLED_TENANT: holder.tenant_id}
    if holder.principal_id:
        party[BILLED_PRINCIPAL] = holder.principal_id
    return RowEvent({**body, **party}, event.conversation_id)
