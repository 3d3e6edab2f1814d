"""What handlers read from PostgreSQL besides the event: facts the changed row does not carry.

They run in the batch's transaction, after the change committed, so they see the rows the same
source transaction wrote (a composite atom's components, a holding's job).

The worker asks most of them once per claimed batch (`prefetch`: jobs' principals, then
whether each tenant and principal is active, one statement each); a key it did not foresee
is looked up alone, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from hartonomous.cdc.billed import Holder, first_holder

Connection = psycopg.Connection[Any]
_CHUNK_SUBTYPES = ("chunk", "span")


@dataclass(frozen=True)
class Component:
    ordinal: int
    child_hex: str
    repeat: int


# Who brought a model in (`cdc/billed.py` resolves it, at capture or here).
Owner = Holder


_JOB_PRINCIPALS = """
SELECT u.tenant_id, u.job_id, j.principal_id
FROM unnest(%(tenants)b::text[], %(jobs)b::text[]) AS u(tenant_id, job_id)
LEFT JOIN ingestion_jobs j ON j.tenant_id = u.tenant_id AND j.job_id = u.job_id::uuid
"""

_PARTIES_ACTIVE = """
SELECT u.tenant_id, u.principal_id, t.is_active, t.disabled_at, p.is_active, p.disabled_at
FROM unnest(%(tenants)b::text[], %(principals)b::text[]) AS u(tenant_id, principal_id)
LEFT JOIN tenants t ON t.tenant_id = u.tenant_id
LEFT JOIN principals p ON p.tenant_id = u.tenant_id AND p.principal_id = u.principal_id
"""


@dataclass(frozen=True)
class _State:
    """A tenant's or principal's ``is_active`` and ``disabled_at`` as read."""

    active: bool
    disabled_at: datetime | None

    def active_at(self, at: datetime | None) -> bool:
        # A disable with no instant recorded (`is_active` set by hand) counts from always.
        if self.active:
            return True
        return at is not None and self.disabled_at is not None and at < self.disabled_at


class Lookups:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # Answers fetched ahead for a batch (`prefetch_*`), by their keys.
        self._job_principals: dict[tuple[str, str], str | None] = {}
        self._parties: dict[tuple[str, str], tuple[_State, _State]] = {}

    def prefetch_job_principals(self, keys: Iterable[tuple[str, str]]) -> None:
        """Fetch `job_principal` for each (tenant, job id: a canonical UUID string) in one
        statement."""
        wanted = sorted(set(keys) - self._job_principals.keys())
        if not wanted:
            return
        rows = self._connection.execute(
            _JOB_PRINCIPALS,
            {"tenants": [t for t, _ in wanted], "jobs": [j for _, j in wanted]},
        ).fetchall()
        for tenant, job, principal in rows:
            self._job_principals[(str(tenant), str(job))] = (
                None if principal is None else str(principal)
            )

    def prefetch_parties(self, keys: Iterable[tuple[str, str]]) -> None:
        """Fetch `party_active` for each (tenant, principal) in one statement."""
        wanted = sorted(set(keys) - self._parties.keys())
        if not wanted:
            return
        rows = self._connection.execute(
            _PARTIES_ACTIVE,
            {"tenants": [t for t, _ in wanted], "principals": [p for _, p in wanted]},
        ).fetchall()
        for tenant, principal, tenant_active, tenant_since, principal_active, since in rows:
            self._parties[(str(tenant), str(principal))] = (
                _State(tenant_active is not False, tenant_since),
                _State(principal_active is not False, since),
            )

    def node_components(self, parent_hex: str) -> list[Component]:
        """The runs of a composite atom whose children are graph nodes (not bare chunks)."""
        rows = self._connection.execute(
            "SELECT c.ordinal, encode(c.child_atom_id, 'hex'), c.repeat "
            "FROM atom_components c JOIN atoms a ON a.atom_id = c.child_atom_id "
            "WHERE c.parent_atom_id = decode(%s, 'hex') "
            "AND NOT (a.modality = 'binary' AND a.subtype = ANY(%s)) ORDER BY c.ordinal",
            (parent_hex, list(_CHUNK_SUBTYPES)),
        ).fetchall()
        return [Component(int(o), str(h), int(r)) for o, h, r in rows]

    def job_principal(self, tenant_id: str, job_id: str) -> str | None:
        key = (tenant_id, job_id)
        if key in self._job_principals:
            return self._job_principals[key]
        row = self._connection.execute(
            "SELECT principal_id FROM ingestion_jobs WHERE tenant_id = %s AND job_id = %s",
            (tenant_id, job_id),
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def first_owner(self, atom_hex: str) -> Owner | None:
        """The tenant whose holding of the atom came first (who brought a model in)."""
        return first_holder(self._connection, atom_hex)

    def inference_attributes(self, tenant_id: str, inference_id: str) -> dict[str, Any] | None:
        """An inference's `attributes` (for an update event that did not carry them: unchanged
        and TOASTed); None when the request is gone."""
        row = self._connection.execute(
            "SELECT attributes FROM inference_requests WHERE tenant_id = %s AND inference_id = %s",
            (tenant_id, inference_id),
        ).fetchone()
        return None if row is None or not isinstance(row[0], dict) else dict(row[0])

    def party_active(
        self, tenant_id: str, principal_id: str, at: datetime | None
    ) -> tuple[bool, bool]:
        """Whether the tenant and its principal were active for an event committed ``at``
        (None: now): active now, or disabled later than ``at`` (`disabled_at`). An unknown
        one counts as active."""
        known = self._parties.get((tenant_id, principal_id))
        if known is None:
            self.prefetch_parties([(tenant_id, principal_id)])
            known = self._parties[(tenant_id, principal_id)]
        tenant, principal = known
        return tenant.active_at(at), principal.active_at(at)


def is_chunk(modality: str | None, subtype: str | None) -> bool:
    return modality == "binary" and subtype in _CHUNK_SUBTYPES
