"""Inference use cases: submit a request, read its status, list the tenant's history, wait for
it, rate it, run the worker (docs/inference.md).

`infer …` and `/v1/inference` call these; the work is ``hartonomous.inference``. Submission
and reads run on ``platform.engine`` (in the API: the caller's tenant under row-level
security); the worker runs on the owner's engine, for every tenant.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, RowMapping, func, select, tuple_, update

from hartonomous.config import Settings
from hartonomous.db.tables import inference_requests
from hartonomous.errors import ConflictError, UsageError
from hartonomous.inference.channels import DONE_CHANNEL
from hartonomous.inference.lookup import (
    InferenceNotFoundError,
    InferenceStep,
    read_steps,
    require_inference,
)
from hartonomous.inference.submission import Submission, Submitted, make_durable
from hartonomous.inference.submission import submit as _submit
from hartonomous.inference.tasks import InferenceStatus, InferenceTask
from hartonomous.inference.worker import SERVICE_NAME, InferenceWorker
from hartonomous.json_types import JsonValue
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.services import BackgroundService
from hartonomous.services.database_errors import database_errors
from hartonomous.services.pagination import Page, cursor_codec, page_of_rows, time_and_id
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import database_url

__all__ = [
    "MAX_FEEDBACK_CHARACTERS",
    "TERMINAL",
    "FeedbackNotAcceptedError",
    "InferenceNotFoundError",
    "InferenceStep",
    "InferenceSummary",
    "InferenceView",
    "Submission",
    "Submitted",
    "drain",
    "feedback",
    "get",
    "history",
    "run_worker",
    "submit",
    "submit_and_wait",
    "wait",
    "worker_service",
]

MAX_FEEDBACK_CHARACTERS = 4000
TERMINAL = frozenset({InferenceStatus.COMPLETED, InferenceStatus.FAILED})
# How often a wait reads the state again without a notice (a safety net, not the mechanism).
_RECHECK_SECONDS = 2.0


class FeedbackNotAcceptedError(ConflictError):
    """Feedback on an inference that has not completed."""


@dataclass(frozen=True)
class InferenceView:
    """An inference's state; ``usage_units`` is exact (NUMERIC(18,6)), None until completed."""

    inference_id: uuid.UUID
    task: InferenceTask
    status: InferenceStatus
    model: str | None
    input: dict[str, JsonValue]
    attributes: dict[str, JsonValue]
    cache_hit: bool
    cached_from: uuid.UUID | None
    output: dict[str, JsonValue] | None
    confidence: float | None
    error: str | None
    usage_units: Decimal | None
    attempts: int
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    stream_id: uuid.UUID | None
    rating: int | None
    feedback: str | None
    rated_at: datetime | None
    steps: list[InferenceStep] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def submit(platform: Platform, submission: Submission) -> Submitted:
    """Store and queue ``submission``, or answer it from an identical earlier one.

    Raises ``InferenceInputError`` (bad input, a model or atom not found, inputs over the
    limit), ``TaskNotAvailableError``, ``UnknownTenantError``, ``TenantDisabledError``;
    nothing is written then (docs/inference.md, "Submitting").
    """
    with database_errors():
        return _submit(platform.engine, platform.settings, submission)


def get(platform: Platform, tenant_id: str, inference_id: uuid.UUID) -> InferenceView:
    """The inference's state and steps; ``InferenceNotFoundError`` for none of the tenant's."""
    with database_errors(), platform.engine.connect() as connection:
        return _view(connection, tenant_id, inference_id)


@dataclass(frozen=True)
class InferenceSummary:
    """One inference of a tenant's history: ``model`` the model's atom id (hex) or None,
    ``usage_units`` exact (NUMERIC(18,6)), None until completed."""

    inference_id: uuid.UUID
    task: InferenceTask
    status: InferenceStatus
    principal_id: str | None
    model: str | None
    cache_hit: bool
    error: str | None
    usage_units: Decimal | None
    requested_at: datetime
    finished_at: datetime | None
    duration_ms: float | None


_HISTORY = "inference-history"


def history(
    platform: Platform, tenant_id: str, limit: int, cursor: str | None = None
) -> Page[InferenceSummary]:
    """The tenant's inference requests, newest first, ``limit`` after ``cursor`` (None: from
    the newest), and the next page's cursor. Raises ``InvalidCursorError`` for a cursor not
    issued to this tenant for this listing."""
    codec = cursor_codec(platform.engine)
    table = inference_requests
    query = select(table).where(table.c.tenant_id == tenant_id)
    if cursor is not None:
        after = time_and_id(
            codec.decode(_HISTORY, tenant_id, cursor, filters={}), "inference history"
        )
        query = query.where(tuple_(table.c.requested_at, table.c.inference_id) < after)
    query = query.order_by(table.c.requested_at.desc(), table.c.inference_id.desc())
    with database_errors(), platform.engine.connect() as connection:
        rows = connection.execute(query.limit(limit + 1)).mappings().all()
    return page_of_rows(
        rows,
        limit,
        _summary,
        lambda last: codec.encode(
            _HISTORY,
            tenant_id,
            [last["requested_at"].isoformat(), str(last["inference_id"])],
            filters={},
        ),
    )


def _summary(row: RowMapping) -> InferenceSummary:
    return InferenceSummary(
        inference_id=row["inference_id"],
        task=InferenceTask(row["task"]),
        status=InferenceStatus(row["status"]),
        principal_id=row["principal_id"],
        model=None if row["model_atom_id"] is None else bytes(row["model_atom_id"]).hex(),
        cache_hit=row["cache_hit"],
        error=row["error"],
        usage_units=row["usage_units"],
        requested_at=row["requested_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
    )


def _view(connection: Connection, tenant_id: str, inference_id: uuid.UUID) -> InferenceView:
    return _with_steps(connection, require_inference(connection, tenant_id, inference_id))


def _with_steps(connection: Connection, row: RowMapping) -> InferenceView:
    """The view of the `inference_requests` ``row``, its steps read."""
    steps = read_steps(connection, row["tenant_id"], row["inference_id"])
    return InferenceView(
        inference_id=row["inference_id"],
        task=InferenceTask(row["task"]),
        status=InferenceStatus(row["status"]),
        model=None if row["model_atom_id"] is None else bytes(row["model_atom_id"]).hex(),
        input=row["input"],
        attributes=row["attributes"],
        cache_hit=row["cache_hit"],
        cached_from=row["cached_from"],
        output=row["output"],
        confidence=row["confidence"],
        error=row["error"],
        usage_units=row["usage_units"],
        attempts=row["attempts"],
        requested_at=row["requested_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        stream_id=row["stream_id"],
        rating=row["rating"],
        feedback=row["feedback"],
        rated_at=row["rated_at"],
        steps=steps,
    )


def wait(
    platform: Platform,
    tenant_id: str,
    inference_id: uuid.UUID,
    *,
    timeout_seconds: float | None = None,
) -> InferenceView:
    """The inference once it is completed or failed (or once ``timeout_seconds`` pass: then its
    state as it is). Raises ``InferenceNotFoundError``.

    Woken by the worker's ``hartonomous_inference_done`` notice (docs/inference.md,
    "Waiting"), listened for on a pooled connection from before the first read, so an outcome
    written in between is not missed; the state is read again every
    ``_RECHECK_SECONDS`` all the same (a notice is lost with its listening connection).
    """
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    with database_errors(), _done_notices(platform) as (connection, notices):
        return _outcome(connection, notices, tenant_id, inference_id, deadline, pending=False)


def submit_and_wait(
    platform: Platform, submission: Submission, *, timeout_seconds: float | None = None
) -> InferenceView:
    """Submit and wait for the outcome, as ``wait`` does (``infer TASK --wait``); the same
    errors as ``submit`` and ``wait``.

    One pooled connection LISTENs, queues an inline request and waits: a single checkout, and
    the submission's commit does not wait for the WAL flush (``submission.submit``'s
    ``waited_on``): the outcome's commit is durable and covers it, and nothing is shown
    before it. A wait that times out makes the row durable before it is returned (its id is
    then shown). docs/inference.md, "Submitting".
    """
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    tenant_id = submission.tenant_id
    with database_errors(), _done_notices(platform) as (connection, notices):
        submitted = _submit(platform.engine, platform.settings, submission, waited_on=connection)
        identifier = submitted.inference_id
        view = _outcome(
            connection,
            notices,
            tenant_id,
            identifier,
            deadline,
            pending=submitted.status == InferenceStatus.PENDING,
        )
        if not view.terminal:
            make_durable(connection, tenant_id, identifier)
        return view


def _outcome(
    connection: Connection,
    notices: psycopg.Connection[Any],
    tenant_id: str,
    inference_id: uuid.UUID,
    deadline: float | None,
    *,
    pending: bool,
) -> InferenceView:
    """Read the inference until it is terminal or ``deadline`` (``time.monotonic``) passes,
    woken by its done notice. ``pending``: the caller queued it on this connection after
    LISTEN, so its notice cannot be missed and the first read waits for it."""
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if not pending:
            # Read on the listening connection itself: in autocommit, no checkout, pre-ping,
            # BEGIN or ROLLBACK round trip of its own; the steps only for the answer.
            row = require_inference(connection, tenant_id, inference_id)
            if row["status"] in TERMINAL or (left is not None and left <= 0):
                return _with_steps(connection, row)
        pending = False
        _await_notice(
            notices, inference_id, _RECHECK_SECONDS if left is None else min(_RECHECK_SECONDS, left)
        )


@contextmanager
def _done_notices(
    platform: Platform,
) -> Iterator[tuple[Connection, psycopg.Connection[Any]]]:
    """A pooled connection LISTENing on ``DONE_CHANNEL`` (autocommit, so notices arrive while
    it is idle), and its driver connection; UNLISTENed before the pool takes it back."""
    with platform.engine.connect() as connection:
        # Connection.execution_options sets the option on this connection in place.
        connection.execution_options(isolation_level="AUTOCOMMIT")
        driver = psycopg_connection(connection)
        driver.execute(f'LISTEN "{DONE_CHANNEL}"')
        try:
            yield connection, driver
        finally:
            try:
                driver.execute(f'UNLISTEN "{DONE_CHANNEL}"')
            except psycopg.Error:
                # A wait cut short (Ctrl-C mid-read) can leave the session unusable: the pool
                # drops it rather than hand out a LISTENing one, and the first error stands.
                connection.invalidate()


def _await_notice(
    connection: psycopg.Connection[Any], inference_id: uuid.UUID, seconds: float
) -> None:
    """Return once the done notice of ``inference_id`` arrives or ``seconds`` pass."""
    wanted = str(inference_id)
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for notice in connection.notifies(timeout=left, stop_after=1):
            if notice.payload == wanted:
                return


def feedback(
    platform: Platform,
    tenant_id: str,
    inference_id: uuid.UUID,
    rating: int,
    text: str | None = None,
) -> InferenceView:
    """Rate a completed inference 0-5 with optional text; a later rating replaces it.

    Raises ``UsageError`` for a rating outside 0..5 or text over ``MAX_FEEDBACK_CHARACTERS``,
    ``InferenceNotFoundError``, ``FeedbackNotAcceptedError`` (409) when the inference is
    pending, in progress or failed (there is no answer to rate).
    """
    if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 5:
        raise UsageError(f"rating must be an integer from 0 to 5, got {rating!r}")
    if text is not None and len(text) > MAX_FEEDBACK_CHARACTERS:
        raise UsageError(
            f"feedback text is {len(text)} characters, over the {MAX_FEEDBACK_CHARACTERS} allowed"
        )
    with database_errors(), platform.engine.begin() as connection:
        status = connection.execute(
            select(inference_requests.c.status)
            .where(
                inference_requests.c.tenant_id == tenant_id,
                inference_requests.c.inference_id == inference_id,
            )
            .with_for_update()
        ).scalar_one_or_none()
        if status is None:
            raise InferenceNotFoundError(
                f"inference {inference_id} not found for tenant {tenant_id!r}"
            )
        if status != InferenceStatus.COMPLETED:
            raise FeedbackNotAcceptedError(
                f"inference {inference_id} is {status}: only a completed inference takes feedback"
            )
        connection.execute(
            update(inference_requests)
            .where(
                inference_requests.c.tenant_id == tenant_id,
                inference_requests.c.inference_id == inference_id,
            )
            .values(rating=rating, feedback=text, rated_at=func.now())
        )
    return get(platform, tenant_id, inference_id)


def worker_service(url: str, engine: Engine, settings: Settings) -> BackgroundService:
    """The inference worker as `up` runs it: a background thread with its heartbeat (written
    `starting` now, so `up`'s first `/health/ready` already sees it). When `up` stops and the
    job in hand does not finish within the service's stop wait, the job is released
    (`InferenceWorker.release_held`): pending again at once for another worker."""
    beat = Heartbeat(url, settings, SERVICE_NAME)
    beat.beat("starting")
    worker = InferenceWorker(url, engine, settings)

    def target(stop: threading.Event) -> None:
        worker.run(stop, heartbeat=beat)

    # A job still running when `up` gives up waiting is given back, not left to its lease.
    return BackgroundService(SERVICE_NAME, target, on_abandon=worker.release_held)


def run_worker(
    platform: Platform, stop: threading.Event, started: Callable[[str], None] | None = None
) -> None:
    """Run the inference worker alone (`worker`) until ``stop`` is set; ``started`` hears its
    claimer identity (``host:pid:uuid``)."""
    worker = InferenceWorker(database_url(platform), platform.maintenance_engine, platform.settings)
    if started is not None:
        started(worker.claimed_by)
    worker.run(stop)


def drain(platform: Platform) -> int:
    """Run the open jobs in this process until none is left (tests, `worker --once`)."""
    worker = InferenceWorker(database_url(platform), platform.maintenance_engine, platform.settings)
    with database_errors():
        try:
            return worker.drain()
        finally:
            worker.close()
