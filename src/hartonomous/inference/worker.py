"""The inference job worker: claim a job, run its task, write the outcome; repeat.

A background service like the sync worker (docs/inference.md, "The worker"): `up` runs one
in a thread and `worker` runs one alone. Each turn of its loop beats the heartbeat
``inference-worker`` (`/health/ready` expects it); idle, it waits for a submission's NOTIFY
or ``[inference] poll_interval_seconds``, whichever comes first; it stops when ``stop`` is set.

A task's ``UsageError`` (``InferenceInputError`` and the like), ``NotFoundError`` or
``ConflictError`` (its tenant disabled, also found at completion) fails the job with its message;
any other exception fails it with the exception's type and message, so a job never loops
between workers on a bug. A database failure while writing the outcome leaves the claim to
expire: the job is claimed again (up to ``max_attempts``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
import structlog
from sqlalchemy import Engine

from hartonomous.config import Settings
from hartonomous.errors import ConflictError, NotFoundError, UsageError
from hartonomous.inference.channels import NOTIFY_CHANNEL
from hartonomous.inference.jobs import (
    Claim,
    claim_next,
    complete,
    fail,
    release,
    renew_lease,
    worker_identity,
)
from hartonomous.inference.registry import task_for
from hartonomous.inference.tasks import TaskContext
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.notify import listening_connection, wait_for_notify
from hartonomous.messaging.spans import untraced
from hartonomous.security.principals import PrincipalDisabledError
from hartonomous.security.tenants import TenantDisabledError

__all__ = ["SERVICE_NAME", "InferenceWorker"]

SERVICE_NAME: Literal["inference-worker"] = "inference-worker"
log = structlog.get_logger(__name__)


class InferenceWorker:
    """Runs jobs on ``engine`` (the owner's: it works for every tenant, each statement
    scoped to the job's tenant); ``url`` is the same database, for LISTEN and heartbeats."""

    def __init__(self, url: str, engine: Engine, settings: Settings) -> None:
        self._url = url
        self._engine = engine
        self._settings = settings
        self.claimed_by = worker_identity()
        self._listener: psycopg.Connection[Any] | None = None
        # The claim whose task runs now, for `release_held` from another thread.
        self._held: Claim | None = None
        self._holding = threading.Lock()

    def run_once(self) -> bool:
        """Claim and run one job; False when none was open."""
        # The poll is not work: untraced (an idle `up` would export a trace a second); the
        # job a claim brings is traced as it runs.
        with untraced():
            claim = claim_next(self._engine, self._settings, self.claimed_by)
        if claim is None:
            return False
        with self._holding:
            self._held = claim
        try:
            self._run(claim)
        finally:
            with self._holding:
                self._held = None
        return True

    def release_held(self) -> bool:
        """Give back the job whose task runs now, if any (``jobs.release``): called from
        another thread when the worker's thread is abandoned mid-task (`up` stopping), so the
        job is claimed again at once rather than after its lease. The task runs on; its
        outcome is not written (the claim is gone). False when no job was held."""
        with self._holding:
            claim, self._held = self._held, None
        if claim is None or not release(self._engine, claim):
            return False
        log.warning("inference_released", inference_id=str(claim.row.inference_id))
        return True

    def drain(self) -> int:
        """Run jobs until none is open; how many ran."""
        count = 0
        while self.run_once():
            count += 1
        return count

    def _run(self, claim: Claim) -> None:
        request = claim.request
        bound = log.bind(inference_id=str(request.inference_id), task=str(request.task))
        started = time.perf_counter()
        try:
            task = task_for(request.task)
            with self._lease_kept(claim):
                result = task(TaskContext(self._engine, self._settings, request))
        except (UsageError, NotFoundError, ConflictError) as exc:
            # What the request or its tenant is (bad input, a model gone, a tenant disabled),
            # not a fault: the job fails with the message.
            bound.info("inference_failed", error=str(exc))
            fail(self._engine, claim, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a task's bug fails its job, not the worker
            bound.error("inference_crashed", error=f"{type(exc).__name__}: {exc}")
            fail(self._engine, claim, f"the task failed: {type(exc).__name__}: {exc}")
            return
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            completed = complete(self._engine, claim, result, duration_ms)
        except (TenantDisabledError, PrincipalDisabledError) as exc:
            bound.info("inference_failed", error=str(exc))
            fail(self._engine, claim, str(exc))
            return
        if completed:
            bound.info("inference_completed", duration_ms=round(duration_ms, 3))
        else:
            bound.warning("inference_claim_lost", claimed_by=self.claimed_by)

    @contextmanager
    def _lease_kept(self, claim: Claim) -> Iterator[None]:
        """Renew the claim's lease every third of ``lease_seconds`` while the block runs."""
        lease = self._settings.inference.lease_seconds
        done = threading.Event()

        def keep() -> None:
            while not done.wait(lease / 3):
                try:
                    if not renew_lease(self._engine, claim, lease):
                        log.warning(
                            "inference_claim_lost", inference_id=str(claim.row.inference_id)
                        )
                        return
                except Exception as exc:  # noqa: BLE001 - the next renewal may get through
                    log.warning(
                        "inference_lease_renewal_failed", error=f"{type(exc).__name__}: {exc}"
                    )

        keeper = threading.Thread(target=keep, name="inference-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def run(self, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
        """Serve until ``stop`` is set, beating ``heartbeat`` (a new ``inference-worker``
        one when not given) on every turn."""
        beat = heartbeat or Heartbeat(self._url, self._settings, SERVICE_NAME)
        beat.beat("starting")
        poll = self._settings.inference.poll_interval_seconds
        ended: tuple[Literal["stopped", "failed"], str | None] = ("failed", "ended unexpectedly")
        try:
            while not stop.is_set():
                try:
                    ran = self.run_once()
                except Exception as exc:  # noqa: BLE001 - the worker outlives a failed turn
                    log.error("inference_turn_failed", error=f"{type(exc).__name__}: {exc}")
                    beat.beat("failing", f"{type(exc).__name__}: {exc}")
                    stop.wait(poll)
                    continue
                beat.beat("running")
                if not ran:
                    self._idle(poll, stop)
            ended = ("stopped", None)
        except BaseException as exc:
            ended = ("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            beat.end(*ended)
            self.close()

    def _idle(self, seconds: float, stop: threading.Event) -> None:
        """Wait for a submission's NOTIFY, ``seconds``, or ``stop``."""
        try:
            if self._listener is None or self._listener.closed:
                self._listener = listening_connection(
                    psycopg.Connection,
                    self._url,
                    NOTIFY_CHANNEL,
                    "hartonomous-inference-worker",
                    self._settings.database,
                )
        except psycopg.Error:
            stop.wait(seconds)
            return
        if not wait_for_notify(self._listener, seconds, stop):
            self.close()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
