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

from sqlalchemy import Connection, Engine, Row, func, select, text, update

from hartonomous.config import Settings
from hartonomous.db.tables import inference_requests
from hartonomous.inference.channels import DONE_CHANNEL, NOTIFY_CHANNEL, notify
from hartonomous.inference.records import (
    RequestRow,
    stream_model,
    usage,
    write_failure,
    write_input_atoms,
    write_output_files,
    write_steps,
)
from hartonomous.inference.streams import StreamParts, store_stream
from hartonomous.inference.tasks import InferenceTask, TaskRequest, TaskResult
from hartonomous.json_types import JsonValue
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

_OPEN = text(
    "SELECT * FROM inference_requests "
    "WHERE status = 'pending' OR (status = 'in_progress' AND lease_expires_at < now()) "
    "ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)

_ASYNCHRONOUS_COMMIT = text("SET LOCAL synchronous_commit = off")


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
    while True:
        with engine.begin() as connection:
            # A claim lost in a crash only puts the job back to `pending` (whoever ran it
            # then finds the claim gone and writes nothing), so its commit need not wait for
            # the WAL flush: that wait was a third of the claim's time.
            connection.execute(_ASYNCHRONOUS_COMMIT)
            found = connection.execute(_OPEN).first()
            if found is None:
                return None
            row = RequestRow.of(found)
            if row.attempts >= limits.max_attempts:
                write_failure(
                    connection,
                    row,
                    f"interrupted {row.attempts} times: each claim's worker stopped before "
                    "finishing (see the worker logs)",
                    {"attributes": row.attributes, "attempts": row.attempts},
                )
                continue
            claimed = connection.execute(
                update(inference_requests)
                .where(
                    inference_requests.c.tenant_id == row.tenant_id,
                    inference_requests.c.inference_id == row.inference_id,
                )
                .values(
                    status="in_progress",
                    attempts=inference_requests.c.attempts + 1,
                    claimed_by=claimed_by,
                    lease_expires_at=func.now() + _seconds(limits.lease_seconds),
                    started_at=func.now(),
                )
                .returning(inference_requests)
            ).one()
            return _claim(claimed, claimed_by)


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
    the claim was lost (its lease ran out and another worker took the job)."""
    row = claim.row
    output = storable_object(dict(result.output))
    with engine.begin() as connection:
        if not _still_held(connection, claim):
            return False
        write_steps(connection, row, result.steps)
        write_input_atoms(connection, row, result.input_atoms)
        produced = write_output_files(connection, row, result.output_files)
        if produced:
            output = {**output, "output_atoms": produced}
        queued_ms = (claim.started_at - claim.requested_at).total_seconds() * 1000
        telemetry: dict[str, JsonValue] = {
            "queued_ms": queued_ms,
            "duration_ms": duration_ms,
            "steps": [
                {"operation": step.operation, "duration_ms": step.duration_ms}
                for step in result.steps
            ],
        }
        stream_id = store_stream(
            connection,
            StreamParts(
                inference_id=row.inference_id,
                tenant_id=row.tenant_id,
                task=row.task,
                model=stream_model(row.model_atom_id),
                request=row.request_bytes(),
                control=_control(claim),
                embedding=result.embedding,
                telemetry=telemetry,
                output=output,
            ),
        )
        connection.execute(
            update(inference_requests)
            .where(
                inference_requests.c.tenant_id == row.tenant_id,
                inference_requests.c.inference_id == row.inference_id,
            )
            .values(
                status="completed",
                output=output,
                usage_units=usage(result.usage_units),
                confidence=result.confidence,
                duration_ms=duration_ms,
                finished_at=func.now(),
                stream_id=stream_id,
                lease_expires_at=None,
            )
        )
        notify(connection, DONE_CHANNEL, row.inference_id)
    return True


def fail(engine: Engine, claim: Claim, reason: str) -> bool:
    """Mark the job failed with ``reason`` and its failure stream; False when the claim was
    lost (nothing written)."""
    with engine.begin() as connection:
        if not _still_held(connection, claim):
            return False
        write_failure(connection, claim.row, reason, _control(claim))
    return True
