"""The sync worker: receive a batch, decide each message, apply the effects in one transaction.

Per batch, in one PostgreSQL transaction: dead letters and delays of the batch, SQL graph
upserts, ledger rows, the Neo4j projection (when `[neo4j] uri` is set, before the commit),
sync counters and the completion of the handled messages. So a completed message always has
its ledger row and graph rows, and a crash (SIGKILL included) leaves neither.

Incident rules (seed): a ledger that cannot be written stops the worker (`LedgerWriteError`),
after giving the batch back uncounted; an unreachable Neo4j opens the breaker and the batch
waits (delayed, not failed), so nothing is lost and nothing dead-letters for it.

Failures are kept to their message: a non-transient error of the batch's effects re-applies
the batch one message at a time, so only the failing message is retried (and dead-lettered,
with its exception, at the poison limit). A timeout (lock or statement: every session has
`[database]`'s timeouts) of one message's decision or effects delays that message alone,
uncounted, for at least the timeout with a backoff growing with its consecutive timeouts, and
the rest of the batch proceeds in the same round (with lock waits cut short: one timeout is
enough to know a lock is held), so a locked table holds only the messages that need it;
the broker claims only conversation heads, so a delayed message still holds its own
conversation's later messages. Nodes whose source rows are gone are not written (`sources.py`:
deletes win), and `billed:` counts only ledger rows actually written.

Throttle permits are granted on the counter store's own connection (shared across processes at
once) but provisionally: when the batch, or one message's decision, rolls back, they are
refunded, so an outage never uses up a tenant's rate limit.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg
import structlog

from hartonomous.billing.ledger import LedgerEntry, LedgerWriteError, write_entries
from hartonomous.billing.plan_provider import PlanProvider
from hartonomous.config import Settings
from hartonomous.errors import OperationFailedError
from hartonomous.messaging.broker import POISON_REASON, Broker, Failure, ReceivedMessage
from hartonomous.messaging.consumer import ConsumerLoop
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    ResilienceStrategy,
    RetryPolicy,
    is_transient,
)
from hartonomous.messaging.spans import link_message, process_batch_span
from hartonomous.messaging.transport import Transport, open_transport
from hartonomous.observability.metrics import NEO4J_TRANSACTION_SECONDS
from hartonomous.security.counter_store import PostgresCounterStore
from hartonomous.security.policy import AccessPolicyEngine
from hartonomous.security.throttle import ThrottleEvaluator
from hartonomous.sync.decisions import CompleteWith, DeadLetter, Decision, Delay
from hartonomous.sync.dispatcher import BatchContext, Dispatcher
from hartonomous.sync.graph import GraphBatch
from hartonomous.sync.projector import Neo4jProjector, is_neo4j_transient
from hartonomous.sync.sources import drop_deleted_sources
from hartonomous.sync.sql_graph import lock_projection, write_batch

log = structlog.get_logger(__name__)
Connection = psycopg.Connection[Any]
DEFAULT_BATCH_SIZE = 100
_TRANSIENT_MEMORY = 10_000
# After a timeout the rest of the round waits this long at most for a lock: the lock is held by
# someone else (a decision only reads, so only DDL or `LOCK TABLE` blocks it), and a message
# that needs it is better delayed than holding the others for a full `lock_timeout` each.
_HURRIED_LOCK_TIMEOUT_SECONDS = 0.05
# The longest backoff of a message whose decision or effects keep timing out (unless the
# timeout itself is longer).
_MAX_TIMEOUT_BACKOFF_SECONDS = 60.0
_QUERY_CANCELED = "57014"


class SyncStoppedError(OperationFailedError, RuntimeError):
    """The worker stopped consuming on purpose (the ledger cannot be written)."""


class ProjectionUnavailableError(RuntimeError):
    """Neo4j could not take the batch; the batch waits."""


class _DecisionFailedError(Exception):
    """A decision of the batch's fast path failed (its cause): the batch rolls back and is
    decided again with each failure kept to its message (`SyncHandler._settle`)."""


@dataclass
class SyncOutcome:
    completed: int = 0
    delayed: int = 0
    dead_lettered: int = 0
    billed: int = 0
    waiting_for_neo4j: int = 0
    counters: Counter[str] = field(default_factory=Counter)

    @property
    def received(self) -> int:
        return self.completed + self.delayed + self.dead_lettered + self.waiting_for_neo4j

    @property
    def waiting(self) -> int:
        return self.waiting_for_neo4j

    def add(self, other: Self) -> None:
        self.completed += other.completed
        self.delayed += other.delayed
        self.dead_lettered += other.dead_lettered
        self.billed += other.billed
        self.waiting_for_neo4j += other.waiting_for_neo4j
        self.counters.update(other.counters)

    def describe(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "billed": self.billed,
            "delayed": self.delayed,
            "dead_lettered": self.dead_lettered,
            "waiting_for_neo4j": self.waiting_for_neo4j,
            "counters": dict(sorted(self.counters.items())),
        }


def neo4j_resilience(settings: Settings) -> tuple[RetryPolicy, CircuitBreaker]:
    """The `[message_broker.resilience]` retry and breaker, counting Neo4j's transient errors."""
    resilience = settings.message_broker.resilience
    retry = RetryPolicy(
        max_attempts=resilience.publish_max_attempts,
        base_delay=resilience.publish_base_delay_seconds,
        max_delay=resilience.publish_max_delay_seconds,
        factor=resilience.exponential_factor,
        jitter_factor=resilience.jitter_factor,
        transient=is_neo4j_transient,
    )
    breaker = CircuitBreaker(
        "neo4j",
        failure_threshold=resilience.circuit_breaker_failure_threshold,
        break_duration=resilience.circuit_breaker_break_duration_seconds,
        half_open_successes=resilience.circuit_breaker_half_open_success_threshold,
        transient=is_neo4j_transient,
    )
    return retry, breaker


class SyncHandler:
    """The sync worker's batch handler (`messaging/consumer.py`): decide each message, then
    write the batch's effects and settlements in one transaction (module docstring)."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        transport: Transport,
        strategy: ResilienceStrategy,
        projector: Neo4jProjector | None = None,
    ) -> None:
        self._settings = settings
        self.transport = transport
        self._strategy = strategy
        self._counter_store = PostgresCounterStore(url, settings.database)
        self._dispatcher = Dispatcher(
            policy=AccessPolicyEngine.from_settings(settings.security),
            throttle=ThrottleEvaluator.from_settings(settings.security, self._counter_store),
            plans=PlanProvider(settings.billing),
        )
        self.projector = projector
        self._neo4j_retry, self.neo4j_breaker = neo4j_resilience(settings)
        # Consecutive transient failures per message id (their backoff grows with them).
        self._transient_failures: dict[int, int] = {}

    def empty(self) -> SyncOutcome:
        return SyncOutcome()

    def close(self) -> None:
        self._counter_store.close()
        if self.projector is not None:
            self.projector.close()

    def handle(self, connection: Connection, messages: list[ReceivedMessage]) -> SyncOutcome:
        return self._settle(connection, messages)

    # -- one batch -----------------------------------------------------------------------------

    def _settle(
        self,
        connection: Connection,
        messages: list[ReceivedMessage],
        *,
        hurried: bool = False,
        careful: bool = False,
        hurry_decisions: bool = False,
    ) -> SyncOutcome:
        """Apply messages in one transaction. A lost session gives them back uncounted and
        propagates to the retry with backoff.

        The first attempt decides the batch together and without a savepoint per message
        (`_apply`'s fast path); when one decision fails, the transaction rolls back (throttle
        permits refunded) and the batch is decided again ``careful``ly: each decision that
        needs one in a savepoint of its own, a failing decision settled alone, and after a
        timeout the rest hurried. Any other error of the batch's effects is isolated: the
        messages are applied one at a time, so only the message that fails is retried or
        dead-lettered, with its exception; for a transient error (a lock or statement
        timeout) the retry is uncounted (`_retry_later`) and the messages applied one at a
        time wait for locks `_HURRIED_LOCK_TIMEOUT_SECONDS` at most (`hurried`)."""
        try:
            with self._counter_store.provisional(), connection.transaction():
                return self._apply(
                    connection,
                    messages,
                    hurried=hurried,
                    careful=careful,
                    hurry_decisions=hurry_decisions,
                )
        except _DecisionFailedError as failed:
            cause = failed.__cause__
            transient = cause is not None and is_transient(cause)
            log.warning(
                "sync_batch_deciding_each",
                batch=len(messages),
                error=f"{type(cause).__name__}: {cause}",
            )
            return self._settle(
                connection, messages, hurried=hurried, careful=True, hurry_decisions=transient
            )
        except ProjectionUnavailableError as exc:
            return self._wait(connection, messages, exc)
        except LedgerWriteError as exc:
            self._give_back(connection, messages)
            if is_transient(exc):
                raise
            log.error("sync_stopped_ledger_unwritable", error=str(exc), batch=len(messages))
            raise SyncStoppedError(
                f"sync stopped: the usage ledger cannot be written ({exc}); "
                f"{len(messages)} message(s) returned to the queue unbilled"
            ) from exc
        except Exception as exc:
            transient = is_transient(exc)
            if transient and connection.broken:
                self._give_back(connection, messages)
                raise
            if len(messages) == 1:
                outcome = SyncOutcome()
                with connection.transaction():
                    if transient:
                        self._retry_later(connection, messages[0], exc, outcome)
                    else:
                        self._failed(connection, messages[0], exc, outcome)
                return outcome
            hurried = hurried or transient
            log.warning(
                "sync_batch_failed_isolating",
                batch=len(messages),
                error=f"{type(exc).__name__}: {exc}",
            )
        outcome = SyncOutcome()
        for index, message in enumerate(messages):
            try:
                outcome.add(self._settle(connection, [message], hurried=hurried, careful=True))
            except BaseException:
                self._give_back(connection, messages[index + 1 :])
                raise
        return outcome

    def _apply(
        self,
        connection: Connection,
        messages: list[ReceivedMessage],
        *,
        hurried: bool,
        careful: bool,
        hurry_decisions: bool,
    ) -> SyncOutcome:
        """Decide each message and write the batch's effects, inside one `process` span of
        the batch (each message linked to it with its decision). Not ``careful``: the batch
        is `Dispatcher.prepare`d together and decided without savepoints, and a failing
        decision raises `_DecisionFailedError` (a lost session its own error); ``careful``:
        as `_settle` describes, each failure settled alone."""
        outcome = SyncOutcome()
        graph = GraphBatch()
        ledger: list[LedgerEntry] = []
        done: list[ReceivedMessage] = []
        if hurried:
            self._set_lock_timeout(connection, hurried=True)
        hurried_decisions = False
        if hurry_decisions and not hurried:
            self._set_lock_timeout(connection, hurried=True)
            hurried_decisions = True
        queue = messages[0].queue_name
        with process_batch_span(queue, len(messages)) as span:
            batch = None if careful else self._prepare(connection, messages)
            for message in messages:
                try:
                    decision = self._decide(connection, message, batch)
                except _DecisionFailedError:
                    raise  # the fast path's failure: the batch is decided again (`_settle`)
                except Exception as exc:  # noqa: BLE001 - re-raised unless it is the message's
                    timed_out = self._decision_failed(connection, message, exc, outcome)
                    link_message(span, message, "Failed")
                    # The rest are decided in this round, so unrelated events are not held;
                    # those that need the same lock fail fast instead of waiting out a
                    # timeout each.
                    if timed_out and not hurried and not hurried_decisions:
                        self._set_lock_timeout(connection, hurried=True)
                        hurried_decisions = True
                    continue
                # The settlement's word (`Complete`, `Delay`, `DeadLetter`), not the class.
                link_message(
                    span,
                    message,
                    "Complete" if isinstance(decision, CompleteWith) else type(decision).__name__,
                )
                if isinstance(decision, CompleteWith):
                    self._collect(decision, graph, ledger, outcome)
                    done.append(message)
                else:
                    self._set_aside(connection, message, decision, outcome)
            if hurried_decisions:
                self._set_lock_timeout(connection, hurried=False)
            for label, count in drop_deleted_sources(connection, graph).items():
                outcome.counters[f"skipped:source_deleted:{label}"] += count
            if self.projector is not None:
                lock_projection(connection, exclusive=False)  # until the commit; see sql_graph
            write_batch(connection, graph, projected=self.projector is not None)
            self._bill(connection, ledger, outcome)
            self._project(graph)
            self.transport.complete(connection, done)
            outcome.completed = len(done)
            for message in done:
                self._transient_failures.pop(message.message_id, None)
            self._count(connection, outcome.counters)
        return outcome

    def _set_aside(
        self,
        connection: Connection,
        message: ReceivedMessage,
        decision: DeadLetter | Delay,
        outcome: SyncOutcome,
    ) -> None:
        """Dead-letter or delay ``message`` as decided, in the batch's transaction."""
        if isinstance(decision, DeadLetter):
            self.transport.dead_letter(
                connection,
                message,
                decision.reason,
                Failure(None, decision.detail, None),
                metadata=decision.metadata,
            )
            outcome.dead_lettered += 1
            outcome.counters[f"dead_lettered:{decision.reason.split(':')[0]}"] += 1
        else:
            self.transport.delay(connection, message, decision.seconds)
            outcome.delayed += 1
            outcome.counters["delayed:throttled"] += 1

    def _prepare(self, connection: Connection, messages: list[ReceivedMessage]) -> BatchContext:
        """`Dispatcher.prepare` on the fast path: its failure (a timeout of its lookups, say)
        sends the batch to the careful path like a decision's."""
        try:
            return self._dispatcher.prepare(connection, messages)
        except Exception as exc:
            if is_transient(exc) and connection.broken:
                raise
            raise _DecisionFailedError from exc

    def _decide(
        self, connection: Connection, message: ReceivedMessage, batch: BatchContext | None
    ) -> Decision:
        """The dispatcher's decision. Fast path (``batch`` given): no savepoint, and a failure
        raises `_DecisionFailedError` (from it) so the batch is decided again carefully;
        careful (None): in a savepoint (with provisional throttle permits) when the decision
        needs one (`Dispatcher.needs_savepoint`), a failure raised as it is."""
        if batch is not None:
            try:
                return self._dispatcher.decide(connection, message, batch)
            except Exception as exc:
                if is_transient(exc) and connection.broken:
                    raise
                raise _DecisionFailedError from exc
        if not self._dispatcher.needs_savepoint(message):
            return self._dispatcher.decide(connection, message)
        with self._counter_store.provisional(), connection.transaction():
            return self._dispatcher.decide(connection, message)

    def _decision_failed(
        self, connection: Connection, message: ReceivedMessage, exc: Exception, outcome: SyncOutcome
    ) -> bool:
        """Retry or dead-letter a message whose decision failed; True when it was transient
        (retried uncounted). A lost session propagates (`exc` re-raised)."""
        if not is_transient(exc):
            self._failed(connection, message, exc, outcome)
            return False
        if connection.broken:
            raise exc
        self._retry_later(connection, message, exc, outcome)
        return True

    def _collect(
        self,
        decision: CompleteWith,
        graph: GraphBatch,
        ledger: list[LedgerEntry],
        outcome: SyncOutcome,
    ) -> None:
        graph.add(decision.change, decision.event_id)
        if decision.ledger is not None:
            ledger.append(decision.ledger)
        outcome.counters.update(decision.counters)

    def _bill(
        self, connection: Connection, ledger: list[LedgerEntry], outcome: SyncOutcome
    ) -> None:
        """Write the ledger rows; count `billed:<op>` only for rows written now, so a replayed
        or redelivered event (its row already there) counts `already_billed:<op>` instead."""
        written = write_entries(connection, ledger)
        outcome.billed = len(written)
        for entry in ledger:
            operation = entry.record.operation
            if entry.event_id in written:
                written.discard(entry.event_id)
                outcome.counters[f"billed:{operation}"] += 1
            else:
                outcome.counters[f"already_billed:{operation}"] += 1

    def _project(self, graph: GraphBatch) -> None:
        projector = self.projector
        if projector is None or not graph.segments:
            return

        def timed() -> None:
            with NEO4J_TRANSACTION_SECONDS.time():
                projector.project(graph)

        try:
            self.neo4j_breaker.execute(lambda: self._neo4j_retry.execute(timed, "neo4j.project"))
        except CircuitBreakerOpenError as exc:
            raise ProjectionUnavailableError(str(exc)) from exc
        except Exception as exc:
            if is_neo4j_transient(exc):
                raise ProjectionUnavailableError(f"{type(exc).__name__}: {exc}") from exc
            raise

    def _wait(
        self, connection: Connection, messages: list[ReceivedMessage], exc: Exception
    ) -> SyncOutcome:
        seconds = self._settings.message_broker.resilience.circuit_breaker_break_duration_seconds
        log.warning("sync_waiting_for_neo4j", error=str(exc), batch=len(messages), seconds=seconds)
        with connection.transaction():
            for message in messages:
                self.transport.delay(connection, message, min(seconds, 5.0))
        return SyncOutcome(waiting_for_neo4j=len(messages))

    def _give_back(self, connection: Connection, messages: list[ReceivedMessage]) -> None:
        # Uncounted, so that stopping and restarting on a broken ledger never poisons messages.
        if not messages:
            return
        try:
            with connection.transaction():
                for message in messages:
                    self.transport.delay(connection, message, 0)
        except psycopg.Error as exc:
            log.warning("sync_give_back_failed", error=str(exc))

    def _set_lock_timeout(self, connection: Connection, *, hurried: bool) -> None:
        """`lock_timeout` for the rest of the current transaction: the configured one, or at
        most `_HURRIED_LOCK_TIMEOUT_SECONDS` (seconds) when `hurried`."""
        seconds = self._settings.database.lock_timeout_seconds
        if hurried:
            seconds = min(seconds, _HURRIED_LOCK_TIMEOUT_SECONDS)
        milliseconds = max(1, round(seconds * 1000))
        connection.execute("SELECT set_config('lock_timeout', %s, true)", (f"{milliseconds}ms",))

    def _timeout_backoff(self, exc: Exception, failures: int) -> float:
        """Seconds to delay a message after its `failures`-th consecutive transient failure:
        at least the timeout that fired (`lock_timeout_seconds`, or `command_timeout_seconds`
        for a statement timeout), doubling per failure up to `_MAX_TIMEOUT_BACKOFF_SECONDS`,
        plus the receive retry's delay (with its jitter). So a message that needs a locked
        table is tried at most once per period, and never stays the lowest claimable id."""
        database = self._settings.database
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
        floor = float(
            database.command_timeout_seconds
            if sqlstate == _QUERY_CANCELED
            else database.lock_timeout_seconds
        )
        doubled = floor * float(2 ** min(failures - 1, 16))
        growing = min(doubled, max(floor, _MAX_TIMEOUT_BACKOFF_SECONDS))
        return growing + self._strategy.receive.delay(failures)

    def _retry_later(
        self, connection: Connection, message: ReceivedMessage, exc: Exception, outcome: SyncOutcome
    ) -> None:
        """A transient failure of one message (a lock or statement timeout): put it back,
        uncounted, after a backoff that grows with its consecutive transient failures."""
        failures = self._transient_failures.pop(message.message_id, 0) + 1
        if len(self._transient_failures) >= _TRANSIENT_MEMORY:
            self._transient_failures.clear()
        self._transient_failures[message.message_id] = failures
        seconds = self._timeout_backoff(exc, failures)
        # The broker counts the delay from the transaction's start (`now()`), and the timeout
        # itself took part of it: without this a delay shorter than the wait left the message
        # the lowest claimable id again as soon as the batch committed.
        row = connection.execute(
            "SELECT extract(epoch FROM clock_timestamp() - now())::float8"
        ).fetchone()
        elapsed = float(row[0]) if row is not None else 0.0
        log.warning(
            "sync_message_retrying",
            message_id=message.message_id,
            failures=failures,
            wait_seconds=round(seconds, 3),
            error=f"{type(exc).__name__}: {exc}",
        )
        self.transport.delay(connection, message, elapsed + seconds)
        outcome.delayed += 1
        outcome.counters["delayed:transient"] += 1

    def _failed(
        self, connection: Connection, message: ReceivedMessage, exc: Exception, outcome: SyncOutcome
    ) -> None:
        limit = self.transport.max_attempts
        log.warning(
            "sync_handler_failed",
            message_id=message.message_id,
            attempt=message.attempts,
            error=f"{type(exc).__name__}: {exc}",
        )
        if message.attempts >= limit:
            self.transport.dead_letter(
                connection, message, POISON_REASON.format(max_attempts=limit), Failure.of(exc)
            )
            outcome.dead_lettered += 1
            outcome.counters["dead_lettered:poison"] += 1
            return
        self.transport.abandon(
            connection, message, exc, self._strategy.receive.delay(message.attempts)
        )
        outcome.delayed += 1

    def _count(self, connection: Connection, counters: Counter[str]) -> None:
        if not counters:
            return
        names = sorted(counters)  # a fixed order: concurrent workers cannot deadlock here
        connection.execute(
            "INSERT INTO sync_counters AS s (counter, count, updated_at) "
            "SELECT u.c, u.n, now() FROM unnest(%s::text[], %s::bigint[]) AS u(c, n) "
            "ON CONFLICT (counter) DO UPDATE SET count = s.count + excluded.count, "
            "updated_at = now()",
            (names, [counters[name] for name in names]),
        )


class SyncWorker:
    """A sync worker: a consumer loop (`messaging/consumer.py`) over the configured transport
    with a `SyncHandler`. `run_once`, `drain` and `run` are the loop's."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        projector: Neo4jProjector | None = None,
    ) -> None:
        self._url = url
        self._settings = settings
        # The in-database broker, for senders (tests); the worker consumes `transport`.
        self.broker = Broker(settings.message_broker)
        self.transport = open_transport(settings.message_broker)
        strategy = ResilienceStrategy.from_settings(settings.message_broker.resilience)
        if projector is None and settings.neo4j.uri:
            projector = Neo4jProjector(settings.neo4j)
        self.handler = SyncHandler(url, settings, self.transport, strategy, projector)
        self.neo4j_breaker = self.handler.neo4j_breaker
        self.loop: ConsumerLoop[SyncOutcome] = ConsumerLoop(
            url=url,
            transport=self.transport,
            handler=self.handler,
            strategy=strategy,
            name="sync",
            application_name="hartonomous-sync",
            batch_size=batch_size,
            idle_wait_seconds=settings.message_broker.receive_wait_timeout_seconds,
            database=settings.database,
            fatal=(SyncStoppedError,),
        )

    @property
    def projecting(self) -> bool:
        return self.handler.projector is not None

    def connection(self) -> Connection:
        return self.loop.connection()

    def close(self) -> None:
        self.loop.close()

    def run_once(self) -> SyncOutcome:
        return self.loop.run_once()

    def drain(self) -> SyncOutcome:
        """Handle batches until nothing is available now (`sync --once`)."""
        return self.loop.drain()

    def run(self, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
        """Serve until `stop` is set; raises `SyncStoppedError` when the ledger is unwritable.

        Each turn of the loop beats ``heartbeat`` (a new one named ``sync-worker`` when not
        given), so a loop that stops turning is seen by `/health/ready` (docs/operations.md);
        while the sync pause is on it claims nothing.
        """
        beat = heartbeat or Heartbeat(self._url, self._settings, "sync-worker")
        self.loop.run(stop, beat, pausable=True)
