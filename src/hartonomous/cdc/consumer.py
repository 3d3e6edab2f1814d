"""The CES consumer: logical replication slot → CloudEvents on the broker, exactly once.

Each step peeks (at most `PEEK_CHUNKS` x `batch_size` rows, rounded up by PostgreSQL to whole
transactions) up to the WAL flush position read just before, through a server-side cursor
fetched a few rows at a time, and handles the changes in chunks of at most `batch_size`
changes and `chunk_bytes` bytes of change data (a single larger change is a chunk of its own): one
database transaction per chunk locks the consumer's `cdc_checkpoints` row, enqueues the
chunk's events that the checkpoint does not cover yet and moves the checkpoint. The
checkpoint is a position in the change stream, (commit LSN, index of the next change within
that transaction), so a transaction of any size, of rows of any width, is handled in bounded
memory and a crash in its middle resumes after the last chunk committed. Only after a step the
slot is advanced, to a transaction boundary. A crash before a chunk commits loses nothing; a
crash after it re-reads changes the checkpoint covers, and they are skipped. So every change
becomes exactly one event (or one dead letter: a change that cannot become a message is set
aside with its reason and capture goes on; docs/cdc.md).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog

from hartonomous.cdc.billed import with_billed_party
from hartonomous.cdc.events import RowEvent, table_name, to_event
from hartonomous.cdc.pgoutput import (
    Begin,
    Change,
    Commit,
    Relation,
    Truncate,
    TypeInfo,
    decode,
    lsn_from_text,
    lsn_to_text,
)
from hartonomous.cdc.replication import (
    SlotHolder,
    cdc_status,
    drop_slot,
    ensure_publication,
    ensure_slot,
    slot_holder,
)
from hartonomous.config import Settings
from hartonomous.db.connection import connect
from hartonomous.json_types import exact_dumps, exact_loads
from hartonomous.messaging.broker import (
    Broker,
    Connection,
    Failure,
    MessageTooLargeError,
    OutgoingMessage,
    dead_letter_unsent,
    prune_throughput,
)
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.lifecycle import serve
from hartonomous.messaging.resilience import ResilienceStrategy
from hartonomous.messaging.spans import record_send, untraced
from hartonomous.messaging.transport import RecordTooLargeError, SizeLimited, open_transport

log = structlog.get_logger(__name__)

_MIN_IDLE_SECONDS = 0.01
_REPREPARE_SECONDS = 30.0
# Rows per cursor fetch before a row size is known; then as many as fit half the byte budget.
_FIRST_FETCH_ROWS = 16
# A step peeks this many chunks' worth of rows (`batch_size` each). Every peek (and every
# slot advance) decodes the WAL again from the slot's restart point, which moves only at the
# running-transactions records PostgreSQL logs every 15 s or so: a backlog peeked 250 rows at
# a time was decoded again for every 250 rows. 2,000 rows a peek measured 2-3x the events/s of
# 250 on a backlog of 2,000 files (docs/cdc.md); memory stays one chunk (the server-side
# cursor holds the rest).
PEEK_CHUNKS = 8
# While caught up, `caught_up_at` is refreshed at most this often (one small write), and only
# when another transaction wrote since the consumer's own last write (a transaction id was
# assigned): an idle system writes no WAL for it (with `archive_timeout` every write archives a
# 16 MiB segment; docs/operations.md). Not on WAL position alone: PostgreSQL logs a
# running-transactions record some seconds after any write, which would refresh it for ever.
CAUGHT_UP_REFRESH_SECONDS = 10.0
# The next transaction id to be assigned (reading it assigns none).
_NEXT_XID = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
TOO_LARGE_REASON = "cdc: event larger than [message_broker] max_message_characters"
# Kafka: an event whose record is over `[message_broker.kafka] max_message_bytes`.
KAFKA_TOO_LARGE_REASON = "cdc: event larger than [message_broker.kafka] max_message_bytes"
# Kafka: an event the cluster refused as too large (its limit lower than configured).
KAFKA_REFUSED_REASON = "cdc: event larger than the Kafka topic's max.message.bytes"
UNMAPPABLE_REASON = "cdc: change could not be turned into an event"


@dataclass(frozen=True, order=True)
class Frontier:
    """A position in the change stream: every change before it has been handled.

    A change is covered when (commit LSN of its transaction, its index in the transaction)
    sorts before (`lsn`, `index`). At a transaction boundary `index` is 0 and `lsn` the end of
    the last handled commit (or a WAL position with no captured commit before it).
    """

    lsn: int
    index: int = 0

    def covers(self, commit_lsn: int, index: int) -> bool:
        return (commit_lsn, index) < (self.lsn, self.index)


@dataclass(frozen=True)
class StepResult:
    transactions: int
    events: int
    skipped_transactions: int
    position: str
    more: bool  # the batch limit was hit: more changes are waiting
    dead_lettered: int = 0


@dataclass(frozen=True)
class _Pending:
    begin: Begin
    index: int
    change: Change | None  # None: the pgoutput message itself could not be decoded
    relation: Relation | None
    error: Exception | None = None


@dataclass
class _Chunk:
    """What one database transaction of a step writes."""

    changes: list[_Pending] = field(default_factory=list)
    size: int = 0  # bytes of pgoutput data behind `changes`
    # (tables, its transaction, changes of the transaction before it)
    truncations: list[tuple[list[str], Begin, int]] = field(default_factory=list)

    def add(self, pending: _Pending, size: int) -> None:
        self.changes.append(pending)
        self.size += size


@dataclass
class _Stream:
    """What a step has read of the peek so far."""

    chunk: _Chunk = field(default_factory=_Chunk)
    begin: Begin | None = None  # of the transaction being read; None between transactions
    index: int = 0  # of the next change within it
    rows: int = 0
    transactions: int = 0
    last_end: int = 0  # end LSN of the last commit read

    def position(self) -> Frontier:
        """Everything read so far is before this position."""
        if self.begin is not None:
            return Frontier(self.begin.final_lsn, self.index)
        return Frontier(self.last_end)


@dataclass
class _Written:
    events: int = 0
    dead_lettered: int = 0
    skipped_transactions: int = 0


@dataclass
class CesConsumer:
    url: str
    settings: Settings
    strategy: ResilienceStrategy | None = None
    _connection: Connection | None = field(default=None, init=False)
    _relations: dict[int, Relation] = field(default_factory=dict, init=False)
    _types: dict[int, str] = field(default_factory=dict, init=False)
    _database: str = field(default="", init=False)
    _caught_up_written: float = field(default=0.0, init=False)
    # The next transaction id just after this consumer's last checkpoint write: no other
    # transaction wrote since while it is still the next one.
    _next_xid_written: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.strategy is None:
            self.strategy = ResilienceStrategy.from_settings(
                self.settings.message_broker.resilience, name="cdc"
            )
        self.broker = Broker(self.settings.message_broker)
        # Where events go: the broker (in the checkpoint's transaction), or Kafka (acknowledged
        # before that transaction moves the checkpoint).
        self.transport = open_transport(self.settings.message_broker)

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
        self.transport.close()

    def try_acquire(self) -> bool:
        """Become the single active consumer of the slot (a session advisory lock), or not."""
        row = (
            self.connection()
            .execute(
                "SELECT pg_try_advisory_lock(hashtext('hartonomous_ces:' || %s))",
                (self.cdc.slot_name,),
            )
            .fetchone()
        )
        return row is not None and bool(row[0])

    def acquire(self, stop: threading.Event, heartbeat: Heartbeat | None = None) -> bool:
        """Wait until this is the single active consumer of the slot, or `stop` is set.

        While it waits, ``heartbeat`` (if given) records the state ``standby``.
        """
        waiting = False
        while True:
            if self.try_acquire():
                return True
            if heartbeat is not None:
                heartbeat.beat("standby", "another consumer serves the slot")
            if not waiting:
                holder = self.holder()
                log.warning(
                    "cdc_slot_in_use",
                    slot=self.cdc.slot_name,
                    holder_pid=None if holder is None else holder.pid,
                    holder=None if holder is None else holder.application_name,
                    detail="another consumer serves this slot; waiting to take over",
                )
                waiting = True
            if stop.wait(self.cdc.poll_interval_seconds):
                return False

    def holder(self) -> SlotHolder | None:
        """The session that holds the slot's consumer lock (another consumer), if any."""
        return slot_holder(self.connection(), self.cdc.slot_name)

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
        """One CDC batch: a ``send`` span of the CloudEvents it enqueues, none when it enqueued
        nothing; the step's own statements are not traced (docs/operations.md, "Traces")."""
        assert self.strategy is not None
        started = time.time_ns()
        with untraced():
            result = self.strategy.run_receive(self._step_once, "cdc.step")
        if result.events:
            record_send(
                self.broker.queue_name,
                started,
                time.time_ns(),
                result.events,
                {
                    "hartonomous.cdc.transactions": result.transactions,
                    "hartonomous.cdc.position": result.position,
                },
            )
        return result

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
        limit, budget = self.cdc.batch_size, self.cdc.chunk_bytes
        peek = limit * PEEK_CHUNKS
        target_row = connection.execute(
            f"SELECT pg_current_wal_flush_lsn()::text, now(), {_NEXT_XID}"
        ).fetchone()
        assert target_row is not None
        target, read_at, next_xid = lsn_from_text(str(target_row[0])), target_row[1], target_row[2]
        written = _Written()
        stream = _Stream()
        # A server-side cursor: PostgreSQL materialises the peek on its side (spilling to
        # disk), and this process holds one chunk at a time whatever the transaction's size.
        # WITH HOLD lets the chunks' own transactions run on this connection in between.
        # Fetches are sized so that a fetch of the widest row seen stays within half the
        # byte budget: a batch of wide rows never sits in memory all at once.
        fetch, widest = min(limit, _FIRST_FETCH_ROWS), 0
        with connection.cursor(name="hartonomous_cdc_peek", withhold=True) as cursor:
            cursor.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
                "'proto_version', '1', 'publication_names', %s)",
                (self.cdc.slot_name, lsn_to_text(target), peek, self.cdc.publication_name),
            )
            while batch := cursor.fetchmany(fetch):
                widest = max(widest, *(len(payload) for (payload,) in batch))
                fetch = max(1, min(limit, budget // (2 * widest)))
                for (payload,) in batch:
                    if stream.chunk.changes and stream.chunk.size + len(payload) > budget:
                        # The chunk so far ends just before a change that would overflow it.
                        self._flush(connection, stream, written)
                    self._read(stream, bytes(payload))
                    if len(stream.chunk.changes) >= limit or stream.chunk.size >= budget:
                        self._flush(connection, stream, written)
        more = stream.rows >= peek
        final = Frontier(stream.last_end if more else max(stream.last_end, target))
        caught_up_at = None if more else read_at  # everything committed before it is enqueued
        chunk = stream.chunk
        if (
            chunk.changes
            or chunk.truncations
            or stream.transactions
            or self._refresh_due(not more, int(next_xid))
        ):
            self._write(connection, chunk, final, written, caught_up_at=caught_up_at)
        self._advance(connection, final.lsn)
        return StepResult(
            stream.transactions,
            written.events,
            written.skipped_transactions,
            lsn_to_text(final.lsn),
            more,
            written.dead_lettered,
        )

    def _read(self, stream: _Stream, payload: bytes) -> None:
        """Take one pgoutput message of the peek into the stream's state and chunk."""
        stream.rows += 1
        chunk, begin = stream.chunk, stream.begin
        try:
            message = decode(payload)
        except Exception as exc:  # set aside when written: never wedge capture
            if begin is None:
                raise
            chunk.add(_Pending(begin, stream.index, None, None, exc), len(payload))
            stream.index += 1
            return
        if isinstance(message, Relation):
            self._relations[message.oid] = message
        elif isinstance(message, TypeInfo):
            self._types[message.oid] = message.name
        elif isinstance(message, Begin):
            stream.begin, stream.index = message, 0
        elif isinstance(message, Change) and begin is not None:
            relation = self._relations.get(message.relation_oid)
            chunk.add(_Pending(begin, stream.index, message, relation), len(payload))
            stream.index += 1
        elif isinstance(message, Truncate) and begin is not None:
            chunk.truncations.append((self._names(message), begin, stream.index))
        elif isinstance(message, Commit):
            stream.transactions += 1
            stream.last_end, stream.begin = message.end_lsn, None

    def _flush(self, connection: Connection, stream: _Stream, written: _Written) -> None:
        """Write the chunk read so far, up to the stream's position, and start a new one."""
        self._write(connection, stream.chunk, stream.position(), written)
        stream.chunk = _Chunk()

    def _names(self, truncate: Truncate) -> list[str]:
        return [
            table_name(self._relations[oid]) if oid in self._relations else f"oid {oid}"
            for oid in truncate.relation_oids
        ]

    def _refresh_due(self, caught_up: bool, next_xid: int) -> bool:
        return (
            caught_up
            and next_xid > self._next_xid_written
            and time.monotonic() - self._caught_up_written > CAUGHT_UP_REFRESH_SECONDS
        )

    def _write(
        self,
        connection: Connection,
        chunk: _Chunk,
        position: Frontier,
        written: _Written,
        *,
        caught_up_at: datetime | None = None,
    ) -> None:
        """One transaction: enqueue what the checkpoint does not cover, then move it."""
        with connection.transaction():
            checkpoint = self._lock_checkpoint(connection)
            fresh = [p for p in chunk.changes if not checkpoint.covers(p.begin.final_lsn, p.index)]
            written.skipped_transactions += sum(
                1
                for p in chunk.changes
                if p.index == 0 and checkpoint.covers(p.begin.final_lsn, p.index)
            )
            sent: list[tuple[_Pending, OutgoingMessage]] = []
            dead = 0
            for pending in fresh:
                message = self._message(connection, pending)
                if message is None:
                    dead += 1
                else:
                    sent.append((pending, message))
            messages = [message for _, message in sent]
            try:
                self.transport.send_batch(connection, messages)
            except RecordTooLargeError:
                # The log refused a record within the configured limit (its own is lower):
                # one record at a time, in order, setting aside each refused alone. What the
                # batch send already landed comes again (at least once; event ids dedupe).
                messages = []
                for pending, message in sent:
                    try:
                        self.transport.send_batch(connection, [message])
                    except RecordTooLargeError as exc:
                        self._set_aside_text(connection, pending, message, exc)
                        dead += 1
                    else:
                        messages.append(message)
            truncations = [
                (tables, begin)
                for tables, begin, before in chunk.truncations
                if not checkpoint.covers(begin.final_lsn, before)
            ]
            for tables, begin in truncations:
                log.warning(
                    "cdc_truncate_not_captured",
                    tables=tables,
                    lsn=lsn_to_text(begin.final_lsn),
                    detail="TRUNCATE produces no events; the graph keeps the rows' nodes",
                )
            last_truncation = (
                None
                if not truncations
                else exact_dumps(
                    {
                        "tables": truncations[-1][0],
                        "lsn": lsn_to_text(truncations[-1][1].final_lsn),
                        "time": truncations[-1][1].commit_time.isoformat(),
                    }
                )
            )
            connection.execute(
                "UPDATE cdc_checkpoints SET "
                "last_lsn = CASE WHEN %(move)s THEN %(lsn)s ELSE last_lsn END, "
                "next_change_index = CASE WHEN %(move)s THEN %(index)s "
                "ELSE next_change_index END, "
                "updated_at = now(), events_total = events_total + %(events)s, "
                "dead_lettered_total = dead_lettered_total + %(dead)s, "
                "truncations_total = truncations_total + %(truncations)s, "
                "last_truncation = coalesce(%(truncation)s::jsonb, last_truncation), "
                "caught_up_at = coalesce(%(caught_up_at)s, caught_up_at) "
                "WHERE consumer_name = %(consumer)s",
                {
                    "move": position > checkpoint,
                    "lsn": lsn_to_text(position.lsn),
                    "index": position.index,
                    "events": len(messages),
                    "dead": dead,
                    "truncations": len(truncations),
                    "truncation": last_truncation,
                    "caught_up_at": caught_up_at,
                    "consumer": self.cdc.consumer_name,
                },
            )
        written.events += len(messages)
        written.dead_lettered += dead
        if caught_up_at is not None:
            self._caught_up_written = time.monotonic()
        after = connection.execute(f"SELECT {_NEXT_XID}").fetchone()
        assert after is not None
        self._next_xid_written = int(after[0])

    def _message(self, connection: Connection, pending: _Pending) -> OutgoingMessage | None:
        """The change's message, or None when it was set aside as a dead letter."""
        event: RowEvent | None = None
        try:
            if pending.error is not None:
                raise pending.error
            if pending.relation is None:
                raise LookupError("the change's relation was not announced by pgoutput")
            event = with_billed_party(connection, self._event(pending, self._types))
            text = self.broker.serialise(event.body)
            # Only the text is kept: a body of a wide row (a jsonb array of 60,000 numbers
            # becomes 60,000 Decimals) weighs many times its text until the chunk is sent.
            message = OutgoingMessage(None, event.conversation_id, body_text=text)
            if isinstance(self.transport, SizeLimited):
                self.transport.check_size(message)  # Kafka: bytes of the encoded record
            return message
        except Exception as exc:  # noqa: BLE001 - one bad change must not stop capture
            self._set_aside(connection, pending, event, exc)
            return None

    def _event(self, pending: _Pending, type_names: dict[int, str] | None) -> RowEvent:
        assert pending.change is not None
        assert pending.relation is not None
        return to_event(
            pending.change,
            relation=pending.relation,
            type_names=type_names,
            begin=pending.begin,
            index=pending.index,
            database=self._database,
        )

    def _set_aside(
        self, connection: Connection, pending: _Pending, event: RowEvent | None, exc: Exception
    ) -> None:
        too_large = isinstance(exc, MessageTooLargeError) and event is not None
        if not too_large and pending.change is not None and pending.relation is not None:
            # The same event (same id) with every value as PostgreSQL's text.
            event = self._event(pending, None)
        body: dict[str, Any] = (
            event.body
            if event is not None
            else {
                "specversion": "1.0",
                "lsn": lsn_to_text(pending.begin.final_lsn),
                "index": pending.index,
            }
        )
        reason = (
            f"cdc: event larger than {exc.setting}"
            if too_large and isinstance(exc, MessageTooLargeError)
            else UNMAPPABLE_REASON
        )
        self._dead_letter(
            connection,
            pending,
            message=OutgoingMessage(body, None if event is None else event.conversation_id),
            body_text=exact_dumps(body),
            reason=reason,
            exc=exc,
        )

    def _set_aside_text(
        self,
        connection: Connection,
        pending: _Pending,
        message: OutgoingMessage,
        exc: MessageTooLargeError,
    ) -> None:
        """Set aside an event the transport refused as too large (its text as it was sent)."""
        text = message.body_text or exact_dumps(message.body)
        self._dead_letter(
            connection,
            pending,
            message=OutgoingMessage(exact_loads(text), message.conversation_id),
            body_text=text,
            reason=f"cdc: event larger than {exc.setting}",
            exc=exc,
        )

    def _dead_letter(
        self,
        connection: Connection,
        pending: _Pending,
        *,
        message: OutgoingMessage,
        body_text: str,
        reason: str,
        exc: Exception,
    ) -> None:
        body: dict[str, Any] = message.body
        lsn = lsn_to_text(pending.begin.final_lsn)
        dead_letter_id = dead_letter_unsent(
            connection,
            self.broker,
            message,
            body_text=body_text,
            reason=reason,
            failure=Failure.of(exc),
            metadata={
                "source": "ces-consumer",
                "lsn": lsn,
                "change_index": str(pending.index),
                "table": str(body.get("table", "")),
                "event_id": str(body.get("id", "")),
            },
        )
        log.error(
            "cdc_change_set_aside",
            reason=reason,
            error=f"{type(exc).__name__}: {exc}",
            table=body.get("table"),
            subject=body.get("subject"),
            lsn=lsn,
            dead_letter_id=dead_letter_id,
        )

    def _lock_checkpoint(self, connection: Connection) -> Frontier:
        row = connection.execute(
            "SELECT last_lsn, next_change_index FROM cdc_checkpoints "
            "WHERE consumer_name = %s FOR UPDATE",
            (self.cdc.consumer_name,),
        ).fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO cdc_checkpoints (consumer_name, slot_name, last_lsn) "
                "VALUES (%s, %s, '0/0')",
                (self.cdc.consumer_name, self.cdc.slot_name),
            )
            return Frontier(0)
        return Frontier(lsn_from_text(str(row[0])), int(row[1]))

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

    def run(self, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
        """Serve until `stop` is set: poll fast while changes flow, back off when idle.

        Each turn of the loop beats ``heartbeat`` (a new one named ``ces-consumer`` when not
        given), so a loop that stops turning is seen by `/health/ready` (docs/operations.md);
        the lifecycle (pause, failure wait, heartbeat) is every service's
        (`messaging/lifecycle.py`).
        """
        beat = heartbeat or Heartbeat(self.url, self.settings, "ces-consumer")
        beat.beat("starting")
        try:
            try:
                acquired = self.acquire(stop, beat)
                if acquired:
                    self.prepare()
                    self.prune_history()
            except BaseException as exc:
                beat.end("failed", f"{type(exc).__name__}: {exc}")
                raise
            if not acquired:
                beat.end("stopped")
                return
            # A wait for Kafka's acknowledgements beats through the wait (docs/messaging.md).
            self.transport.watch(lambda detail: beat.beat("failing", detail))
            serve(
                stop,
                beat,
                self.step,
                _Pacing(self, stop).rest,
                failure_wait=self.cdc.poll_interval_seconds,
                failure_event="cdc_step_failed",
                pause_connection=self.connection,
            )
        finally:
            self.close()

    def status(self) -> dict[str, Any]:
        return cdc_status(self.connection(), self.cdc).as_dict()


@dataclass
class _Pacing:
    """Between steps: go on at once while a step left more, back off (doubling up to
    `poll_interval_seconds`) while idle, and re-prepare every `_REPREPARE_SECONDS`."""

    consumer: CesConsumer
    stop: threading.Event
    idle: float = _MIN_IDLE_SECONDS
    since_prepare: float = 0.0

    def rest(self, result: StepResult) -> None:
        if result.transactions:
            self.idle = _MIN_IDLE_SECONDS
            if result.more:
                return
        else:
            self.idle = min(self.idle * 2, self.consumer.cdc.poll_interval_seconds)
        self.stop.wait(self.idle)
        self.since_prepare += self.idle
        if self.since_prepare >= _REPREPARE_SECONDS:
            # Upkeep, not work: untraced (an idle `up` exports no trace).
            with untraced():
                self.consumer.prepare()  # tables added by later migrations join the publication
                self.consumer.prune_history()
            self.since_prepare = 0.0


def prepare_capture(url: str, settings: Settings) -> None:
    """Arm change capture (publication, slot, checkpoint) without consuming anything."""
    consumer = CesConsumer(url, settings)
    try:
        consumer.prepare()
    finally:
        consumer.close()
