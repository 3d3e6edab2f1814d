"""Claiming, completing and failing inference jobs (docs/inference.md, "Claims and leases").

A claim takes the oldest open job, `pending` or `in_progress` with an expired lease, with
``FOR UPDATE SKIP LOCKED`` (concurrent workers never wait for, nor take, each other's job):
it becomes `in_progress`, ``attempts + 1``, ``claimed_by`` this worker, its lease ending
``[inference] lease_seconds`` later (the database's clock). A job whose lease expired after
``max_attempts`` claims fails ("interrupted N times"): its workers keep dying on it.

A worker that stops while a job runs (`up` stopping) releases it (``release``): the job is
`pending` again at once instead of waiting out its lease.

Completion and failure commit only while this worker still holds the claim (same
``claimed_by``, still `in_progress`), each in one transaction: a worker killed mid-job leaves
the job to be claimed again, and a worker whose lease ran out finds its claim gone and writes
nothing, so a job is never completed twice. While its task runs, the worker renews the lease
every third of ``lease_seconds`` (``renew_lease``), so only a worker that stopped loses it.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    bindparam,
    func,
    null,
    select,
    text,
    update,
)

from hartonomous.atoms.hashing import sha256_digest
from hartonomous.config import Settings
from hartonomous.config.sections import InferenceSettings
from hartonomous.db.tables import (
    generation_streams,
    holdings,
    inference_requests,
    inference_steps,
)
from hartonomous.inference.blobs import HOLD_CONFLICT
from hartonomous.inference.channels import DONE_CHANNEL, NOTIFY_CHANNEL, notice, notify
from hartonomous.inference.records import (
    RequestRow,
    input_atom_rows,
    recordset,
    recordset_insert,
    step_rows,
    store_output_files,
    stream_parts,
    usage,
    write_failure,
)
from hartonomous.inference.streams import StreamParts, stream_row
from hartonomous.inference.tasks import InferenceTask, TaskRequest, TaskResult
from hartonomous.json_types import JsonValue
from hartonomous.security.tenants import require_active_party
from hartonomous.storable import storable_object

__all__ = [
    "Claim",
    "claim_next",
    "complete",
    "fail",
    "release",
    "renew_lease",
    "worker_identity",
]

# The claim is one statement outside any transaction block (its own implicit transaction: no
# BEGIN or COMMIT round trip). It picks the oldest open job, `pending` or `in_progress` with an
# expired lease, with SKIP LOCKED, and claims it unless the job is out of attempts (then only
# `picked_*` is returned and the job is failed apart). ``set_config(..., true)`` is SET LOCAL
# inside the statement: a claim lost in a crash only leaves the job `pending` (whoever ran it
# finds the claim gone and writes nothing), so its commit need not wait for the WAL flush.
_CLAIM = text(
    "WITH picked AS ("
    " SELECT tenant_id, inference_id, attempts FROM inference_requests"
    " WHERE status = 'pending' OR (status = 'in_progress' AND lease_expires_at < now())"
    " ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    "), claimed AS ("
    " UPDATE inference_requests r SET status = 'in_progress', attempts = r.attempts + 1,"
    " claimed_by = :claimed_by, started_at = now(),"
    " lease_expires_at = now() + make_interval(secs => CAST(:lease_seconds AS double precision))"
    " FROM picked p WHERE r.tenant_id = p.tenant_id AND r.inference_id = p.inference_id"
    " AND p.attempts < :max_attempts RETURNING r.*"
    ") SELECT set_config('synchronous_commit', 'off', true) AS synchronous_commit,"
    " p.tenant_id AS picked_tenant_id, p.inference_id AS picked_inference_id, c.*"
    " FROM picked p LEFT JOIN claimed c ON true"
)

# A job out of attempts, locked again to be failed (unless another worker got to it first).
_EXHAUSTED = text(
    "SELECT * FROM inference_requests WHERE tenant_id = :tenant_id AND inference_id = "
    ":inference_id AND attempts >= :max_attempts AND (status = 'pending' OR "
    "(status = 'in_progress' AND lease_expires_at < now())) FOR UPDATE SKIP LOCKED"
)


# A completion's output holdings, steps, input and output atoms and stream, in one statement.
# An output atom's row takes the holding id its holding got (inserted, or met by a retried
# completion) by source URI; an input's comes with it.
_ATOM_FIELDS = (
    "tenant_id VARCHAR(64), inference_id UUID, role VARCHAR(8), ordinal INTEGER, "
    "atom_id BYTEA, name TEXT, holding_id UUID, source_uri TEXT"
)
_COMPLETION_WRITES = text(
    "WITH held AS ("
    + recordset_insert(
        holdings,
        "holdings",
        omit=("holding_id", "job_id", "created_at"),
        suffix=f"{HOLD_CONFLICT} RETURNING atom_id, source_uri, holding_id",
    )
    + f"), steps AS ({recordset_insert(inference_steps, 'steps')}), "
    "atoms AS (INSERT INTO inference_atoms "
    "(tenant_id, inference_id, role, ordinal, atom_id, name, holding_id) "
    "SELECT r.tenant_id, r.inference_id, r.role, r.ordinal, r.atom_id, r.name, "
    "coalesce(r.holding_id, held.holding_id) "
    f"FROM jsonb_to_recordset(CAST(:atoms AS jsonb)) AS r({_ATOM_FIELDS}) "
    "LEFT JOIN held ON held.source_uri = r.source_uri AND held.atom_id = r.atom_id) "
    + recordset_insert(generation_streams, "streams", omit=("created_at",))
)


def _completed() -> Select[Any]:
    """A completion's first statement: the row's update, matching only while the claim is
    this worker's (``_held_by``, bound as ``:held_tenant_id``, ``:held_inference_id`` and
    ``:held_by``), and the done notice. Built once: its values are bound parameters, none
    named as a column (SQLAlchemy would take such a parameter as a value to SET)."""
    r = inference_requests.c
    done = (
        update(inference_requests)
        .where(
            r.tenant_id == bindparam("held_tenant_id"),
            r.inference_id == bindparam("held_inference_id"),
            r.status == "in_progress",
            r.claimed_by == bindparam("held_by"),
        )
        .values(
            status="completed",
            output=bindparam("new_output", type_=r.output.type),
            usage_units=bindparam("new_usage_units", type_=r.usage_units.type),
            confidence=bindparam("new_confidence", type_=r.confidence.type),
            duration_ms=bindparam("new_duration_ms", type_=r.duration_ms.type),
            finished_at=func.now(),
            stream_id=bindparam("new_stream_id", type_=r.stream_id.type),
            lease_expires_at=null(),
        )
        .returning(r.inference_id)
        .cte("done")
    )
    return select(notice(DONE_CHANNEL, done.c.inference_id))


_COMPLETED = _completed()


def _seconds(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def worker_identity() -> str:
    """``host:pid:uuid``: one claimer, never reused (a restarted process is a new one)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"


@dataclass(frozen=True)
class Claim:
    """A job this worker holds: what to run, and what the results are written with."""

    row: RequestRow
    request: TaskRequest
    claimed_by: str
    requested_at: datetime
    started_at: datetime

    @property
    def attempt(self) -> int:
        return self.row.attempts


def claim_next(engine: Engine, settings: Settings, claimed_by: str) -> Claim | None:
    """Claim the oldest open job, or None when there is none.

    Jobs met past ``max_attempts`` are failed on the way (each in its own transaction).
    """
    limits = settings.inference
    parameters = {
        "claimed_by": claimed_by,
        "lease_seconds": limits.lease_seconds,
        "max_attempts": limits.max_attempts,
    }
    while True:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            found = connection.execute(_CLAIM, parameters).first()
        if found is None:
            return None
        if found.inference_id is not None:
            return _claim(found, claimed_by)
        _fail_exhausted(engine, found.picked_tenant_id, found.picked_inference_id, limits)


def _fail_exhausted(
    engine: Engine, tenant_id: str, inference_id: uuid.UUID, limits: InferenceSettings
) -> None:
    """Fail a job whose claims' workers all stopped before finishing (``max_attempts``)."""
    with engine.begin() as connection:
        found = connection.execute(
            _EXHAUSTED,
            {
                "tenant_id": tenant_id,
                "inference_id": inference_id,
                "max_attempts": limits.max_attempts,
            },
        ).first()
        if found is None:
            return  # another worker failed it, or it was released meanwhile
        row = RequestRow.of(found)
        write_failure(
            connection,
            row,
            f"interrupted {row.attempts} times: each claim's worker stopped before "
            "finishing (see the worker logs)",
            {"attributes": row.attributes, "attempts": row.attempts},
        )


def _claim(found: Row[Any], claimed_by: str) -> Claim:
    row = RequestRow.of(found)
    return Claim(
        row=row,
        request=TaskRequest(
            tenant_id=row.tenant_id,
            principal_id=found.principal_id,
            inference_id=row.inference_id,
            task=InferenceTask(row.task),
            model_atom_id=row.model_atom_id,
            input=row.input,
        ),
        claimed_by=claimed_by,
        requested_at=found.requested_at,
        started_at=found.started_at,
    )


def _held_by(claim: Claim) -> tuple[Any, ...]:
    """The conditions under which the claim is still this worker's."""
    return (
        inference_requests.c.tenant_id == claim.row.tenant_id,
        inference_requests.c.inference_id == claim.row.inference_id,
        inference_requests.c.status == "in_progress",
        inference_requests.c.claimed_by == claim.claimed_by,
    )


def _still_held(connection: Connection, claim: Claim) -> bool:
    """Lock the row if this worker still holds it."""
    return (
        connection.execute(
            select(inference_requests.c.inference_id).where(*_held_by(claim)).with_for_update()
        ).first()
        is not None
    )


def _control(claim: Claim) -> dict[str, JsonValue]:
    return {
        "attributes": claim.row.attributes,
        "attempt": claim.attempt,
        "cache_hit": False,
        "claimed_by": claim.claimed_by,
    }


def renew_lease(engine: Engine, claim: Claim, lease_seconds: float) -> bool:
    """Extend the claim's lease to ``lease_seconds`` from now (the worker does while its task
    runs, so a task longer than one lease is not claimed again); False when the claim is
    no longer this worker's."""
    with engine.begin() as connection:
        renewed = connection.execute(
            update(inference_requests)
            .where(*_held_by(claim))
            .values(lease_expires_at=func.now() + _seconds(lease_seconds))
        )
    return renewed.rowcount == 1


def release(engine: Engine, claim: Claim) -> bool:
    """Give the claim back: the job is `pending` again, unclaimed, its attempt not counted
    (it was not interrupted by a fault but handed back), and idle workers are woken to take it
    at once. The worker that still runs it finds its claim gone and writes nothing. False
    when the claim was no longer this worker's (the job already completed, failed or was
    taken)."""
    with engine.begin() as connection:
        released = connection.execute(
            update(inference_requests)
            .where(*_held_by(claim))
            .values(
                status="pending",
                claimed_by=None,
                lease_expires_at=None,
                started_at=None,
                attempts=inference_requests.c.attempts - 1,
            )
        )
        if released.rowcount != 1:
            return False
        notify(connection, NOTIFY_CHANNEL)
    return True


def complete(engine: Engine, claim: Claim, result: TaskResult, duration_ms: float) -> bool:
    """Write everything of a completed job in one transaction; False (nothing written) when
    the claim was lost (its lease ran out and another worker took the job).

    Raises ``TenantDisabledError`` (nothing written) when the job's tenant is disabled, checked
    under the tenant's state lock (security/state_lock.py).

    Round trips: the row's update (which checks and locks the claim) with the done notice;
    the output files' atoms (``blobs.store_blob``); then one statement inserting their
    holdings, the steps, the input and output atoms and the stream together."""
    row = claim.row
    output = storable_object(dict(result.output))
    if result.output_files:
        # An output file's atom id is the SHA-256 of its bytes (ingest.layout.write_bytes):
        # known before it is stored, so the row's output names it in the first statement.
        output["output_atoms"] = {
            file.name: sha256_digest(file.data).hex() for file in result.output_files
        }
    stream_id = uuid.uuid4()
    stream = stream_row(_completed_parts(claim, result, duration_ms, output), stream_id)
    outcome = {
        "held_tenant_id": row.tenant_id,
        "held_inference_id": row.inference_id,
        "held_by": claim.claimed_by,
        "new_output": output,
        "new_usage_units": usage(result.usage_units),
        "new_confidence": result.confidence,
        "new_duration_ms": duration_ms,
        "new_stream_id": stream_id,
    }
    with engine.begin() as connection:
        # The update waits for and locks the row, and matches only while this worker holds
        # the claim; the notice is delivered when the transaction commits.
        if connection.execute(_COMPLETED, outcome).first() is None:
            return False
        # A job whose tenant was disabled meanwhile stores nothing: its outputs would be
        # work committed after the disable, which the sync worker refuses (docs/security.md).
        require_active_party(connection, row.tenant_id, None, holding=True)
        atom_rows = input_atom_rows(connection, row, result.input_atoms)
        holding_rows, output_rows = store_output_files(connection, row, result.output_files)
        connection.execute(
            _COMPLETION_WRITES,
            {
                "holdings": recordset(holding_rows),
                "steps": recordset(step_rows(row, result.steps)),
                "atoms": recordset(atom_rows + output_rows),
                "streams": recordset([stream]),
            },
        )
    return True


def _completed_parts(
    claim: Claim, result: TaskResult, duration_ms: float, output: dict[str, JsonValue]
) -> StreamParts:
    """A completed job's stream: Input, Control, Embedding, Telemetry, Output."""
    queued_ms = (claim.started_at - claim.requested_at).total_seconds() * 1000
    telemetry: dict[str, JsonValue] = {
        "queued_ms": queued_ms,
        "duration_ms": duration_ms,
        "steps": [
            {"operation": step.operation, "duration_ms": step.duration_ms} for step in result.steps
        ],
    }
    return stream_parts(
        claim.row, _control(claim), embedding=result.embedding, telemetry=telemetry, output=output
    )


def fail(engine: Engine, claim: Claim, reason: str) -> bool:
    """Mark the job failed with ``reason`` and its failure stream; False when the claim was
    lost (nothing written)."""
    with engine.begin() as connection:
        if not _still_held(connection, claim):
            return False
        write_failure(connection, claim.row, reason, _control(claim))
    return True
