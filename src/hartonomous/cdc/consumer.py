"""The CES consumer: logical replication slot → CloudEvents on the broker, exactly once.

Each step peeks at most `batch_size` decoded rows (whole transactions only) up to the WAL flush
position read just before, then in ONE transaction locks the consumer's `cdc_checkpoints` row,
enqueues the events of every transaction that committed after the checkpoint and moves the
checkpoint. Only after that commit is the slot advanced. A crash before the commit loses
nothing (the slot was not advanced); a crash after it re-reads transactions the checkpoint
already covers, and they are skipped. So every change becomes exactly one event.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog

from hartonomous.cdc.events import to_event
from hartonomous.cdc.pgoutput import (
    Change,
    Commit,
    Relation,
    TypeInfo,
    decode,
    lsn_from_text,
    lsn_to_text,
)
from hartonomous.cdc.replication import (
    cdc_status,
    drop_slot,
    ensure_publication,
    ensure_slot,
)
from hartonomous.config import Settings
from hartonomous.db.connection import connect
from hartonomous.messaging.broker import Broker, Connection, OutgoingMessage, prune_throughput
from hartonomous.messaging.envelope import to_body
from hartonomous.messaging.resilience import ResilienceStrategy

log = structlog.get_logger(__name__)

_MIN_IDLE_SECONDS = 0.01
_REPREPARE_SECONDS = 30.0


@dataclass(frozen=True)
class StepResult:
    transactions: int
    events: int
    skipped_transactions: int
    position: str
    more: bool  # the batch limit was hit: more changes are waiting


@dataclass
class _Transaction:
    commit: Commit | None = None
    changes: list[tuple[Change, Relation]] = field(default_factory=list)


@dataclass
class CesConsumer:
    url: str
    settings: Settings
    strategy: ResilienceStrategy | None = None
    _connection: Connection | None = field(default=None, init=False)
    _relations: dict[int, Relation] = field(default_factory=dict, init=False)
    _types: dict[int, str] = field(default_factory=dict, init=False)
    _database: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if self.strategy is None:
            self.strategy = ResilienceStrategy.from_settings(
                self.settings.message_broker.resilience, name="cdc"
            )
        self.broker = Broker(self.settings.message_broker)

    @property
    def cdc(self) -> Any:
        return self.settings.cdc

    def connection(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = connect(
                self.url, self.settings.database, application_name="hartonomous-ces-consumer"
            )
            row = self._connection.execute("SELECT current_database()").fetchone()
            self._database = str(row[0]) if row else ""
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Become the single active consumer of the slot (a session advisory lock)."""
        while True:
            row = (
                self.connection()
                .execute(
                    "SELECT pg_try_advisory_lock(hashtext('hartonomous_ces:' || %s))",
                    (self.cdc.slot_name,),
                )
                .fetchone()
            )
            if row is not None and row[0]:
                return True
            if stop is None or stop.wait(self.cdc.poll_interval_seconds):
                return False

    def prepare(self) -> None:
        """Publication, slot and checkpoint row exist (re-created when missing)."""
        connection = self.connection()
        tables = ensure_publication(connection, self.cdc.publication_name)
        if ensure_slot(connection, self.cdc.slot_name):
            log.info("cdc_slot_created", slot=self.cdc.slot_name, tables=tables)
        connection.execute(
            "INSERT INTO cdc_checkpoints (consumer_name, slot_name, last_lsn) "
            "SELECT %s, %s, confirmed_flush_lsn::text FROM pg_replication_slots "
            "WHERE slot_name = %s ON CONFLICT (consumer_name) DO NOTHING",
            (self.cdc.consumer_name, self.cdc.slot_name, self.cdc.slot_name),
        )

    def prune_history(self) -> int:
        """Drop the event flow's history older than `[cdc] retention_minutes`.

        Completed messages are deleted at once, so that history is the per-second throughput
        counters behind `broker status`; without pruning they grow by one row per second and
        worker forever. Dead letters are left to the operator (`deadletters purge`).
        """
        return prune_throughput(self.connection(), self.cdc.retention_minutes)

    def step(self) -> StepResult:
        assert self.strategy is not None
        return self.strategy.run_receive(self._step_once, "cdc.step")

    def _step_once(self) -> StepResult:
        try:
            return self._step(self.connection())
        except psycopg.errors.UndefinedObject as missing:
            # The slot or the publication was dropped: re-create and go on.
            log.warning("cdc_replication_object_missing", error=str(missing))
            self._recover(missing)
            return self._step(self.connection())
        except psycopg.OperationalError:
            self.close()
            raise

    def _recover(self, missing: Exception) -> None:
        connection = self.connection()
        if "publication" in str(missing):
            # pgoutput looks publications up as of each change's WAL position, so a slot that
            # outlived its publication cannot move past the gap: start a fresh slot.
            ensure_publication(connection, self.cdc.publication_name)
            drop_slot(connection, self.cdc.slot_name)
        self.prepare()

    def _step(self, connection: Connection) -> StepResult:
        limit = self.cdc.batch_size
        target_row = connection.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        assert target_row is not None
        target = lsn_from_text(str(target_row[0]))
        rows = connection.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
            "'proto_version', '1', 'publication_names', %s)",
            (self.cdc.slot_name, lsn_to_text(target), limit, self.cdc.publication_name),
        ).fetchall()
        transactions = self._transactions(bytes(row[0]) for row in rows)
        more = len(rows) >= limit
        safe = transactions[-1].commit.end_lsn if transactions else 0  # type: ignore[union-attr]
        if not more:
            safe = max(safe, target)
        events = skipped = 0
        if transactions:
            with connection.transaction():
                checkpoint = self._lock_checkpoint(connection)
                fresh = [t for t in transactions if t.commit and t.commit.end_lsn > checkpoint]
                skipped = len(transactions) - len(fresh)
                messages = self._messages(fresh)
                self.broker.send_batch(connection, messages)
                events = len(messages)
                if safe > checkpoint:
                    connection.execute(
                        "UPDATE cdc_checkpoints SET last_lsn = %s, updated_at = now(), "
                        "events_total = events_total + %s WHERE consumer_name = %s",
                        (lsn_to_text(safe), events, self.cdc.consumer_name),
                    )
        self._advance(connection, safe)
        return StepResult(len(transactions), events, skipped, lsn_to_text(safe), more)

    def _transactions(self, payloads: Any) -> list[_Transaction]:
        done: list[_Transaction] = []
        current = _Transaction()
        for payload in payloads:
            message = decode(payload)
            if isinstance(message, Relation):
                self._relations[message.oid] = message
            elif isinstance(message, TypeInfo):
                self._types[message.oid] = message.name
            elif isinstance(message, Change):
                current.changes.append((message, self._relations[message.relation_oid]))
            elif isinstance(message, Commit):
                current.commit = message
                done.append(current)
                current = _Transaction()
        return done

    def _lock_checkpoint(self, connection: Connection) -> int:
        row = connection.execute(
            "SELECT last_lsn FROM cdc_checkpoints WHERE consumer_name = %s FOR UPDATE",
            (self.cdc.consumer_name,),
        ).fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO cdc_checkpoints (consumer_name, slot_name, last_lsn) "
                "VALUES (%s, %s, '0/0')",
                (self.cdc.consumer_name, self.cdc.slot_name),
            )
            return 0
        return lsn_from_text(str(row[0]))

    def _messages(self, transactions: list[_Transaction]) -> list[OutgoingMessage]:
        messages = []
        for transaction in transactions:
            assert transaction.commit is not None
            for index, (change, relation) in enumerate(transaction.changes):
                row_event = to_event(
                    change,
                    relation=relation,
                    type_names=self._types,
                    commit=transaction.commit,
                    index=index,
                    database=self._database,
                )
                messages.append(
                    OutgoingMessage(to_body(row_event.event), row_event.conversation_id)
                )
        return messages

    def _advance(self, connection: Connection, safe: int) -> None:
        row = connection.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (self.cdc.slot_name,),
        ).fetchone()
        if row is not None and row[0] is not None and safe > lsn_from_text(str(row[0])):
            connection.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                (self.cdc.slot_name, lsn_to_text(safe)),
            )

    def drain(self) -> int:
        """Enqueue everything committed so far; returns the number of events."""
        total = 0
        while True:
            result = self.step()
            total += result.events
            if not result.more:
                return total

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set: poll fast while changes flow, back off when idle."""
        idle = _MIN_IDLE_SECONDS
        try:
            if not self.acquire(stop):
                return
            self.prepare()
            self.prune_history()
            since_prepare = 0.0
            while not stop.is_set():
                try:
                    result = self.step()
                except Exception as exc:  # noqa: BLE001 - the service outlives any one failure
                    log.error("cdc_step_failed", error=f"{type(exc).__name__}: {exc}")
                    stop.wait(self.cdc.poll_interval_seconds)
                    continue
                if result.transactions:
                    idle = _MIN_IDLE_SECONDS
                    if result.more:
                        continue
                else:
                    idle = min(idle * 2, self.cdc.poll_interval_seconds)
                stop.wait(idle)
                since_prepare += idle
                if since_prepare >= _REPREPARE_SECONDS:
                    self.prepare()  # tables added by later migrations join the publication
                    self.prune_history()
                    since_prepare = 0.0
        finally:
            self.close()

    def status(self) -> dict[str, Any]:
        return cdc_status(self.connection(), self.cdc).as_dict()


def prepare_capture(url: str, settings: Settings) -> None:
    """Arm change capture (publication, slot, checkpoint) without consuming anything."""
    consumer = CesConsumer(url, settings)
    try:
        consumer.prepare()
    finally:
        consumer.close()
