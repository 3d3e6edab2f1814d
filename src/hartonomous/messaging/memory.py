"""An in-memory transport (`messaging/transport.py`) for pure-logic tests of consumer loops.

It keeps the broker's contract (docs/messaging.md) without a database: conversation heads
only, in send order; `delay` does not count the attempt, `abandon` does; dead letters are kept
in `dead_letters`. Time comes from ``clock`` (seconds), so a test moves it instead of sleeping.
The session arguments are ignored: effects of a handler are the test's own business.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hartonomous.messaging.broker import (
    Failure,
    OutgoingMessage,
    ReceivedMessage,
    UnsettledMessage,
)

QUEUE_NAME = "memory"
DEFAULT_MESSAGE_TYPE = "application/cloudevents+json"


@dataclass
class _Stored:
    message: ReceivedMessage
    available_at: float
    claimed: bool = False


@dataclass(frozen=True)
class MemoryDeadLetter:
    message: ReceivedMessage
    reason: str
    failure: Failure | None
    metadata: Mapping[str, str]


@dataclass
class InMemoryTransport:
    """A `Transport` whose queue is a list in this process."""

    max_attempts: int = 3
    clock: Callable[[], float] = time.monotonic
    dead_letters: list[MemoryDeadLetter] = field(default_factory=list)
    _queue: list[_Stored] = field(default_factory=list)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pending(self) -> int:
        """Messages not yet completed or dead-lettered."""
        return len(self._queue)

    def send_batch(self, connection: Any, messages: Sequence[OutgoingMessage]) -> list[int]:
        ids: list[int] = []
        with self._lock:
            for outgoing in messages:
                message = ReceivedMessage(
                    message_id=self._next_id,
                    queue_name=QUEUE_NAME,
                    conversation_id=outgoing.conversation_id,
                    message_type=outgoing.message_type or DEFAULT_MESSAGE_TYPE,
                    body=outgoing.body,
                    enqueued_at=datetime.now(UTC),
                    attempts=0,
                )
                self._queue.append(_Stored(message, self.clock() + outgoing.delay_seconds))
                ids.append(self._next_id)
                self._next_id += 1
        return ids

    def listen(self, connection: Any) -> None:
        """Nothing to prepare."""

    def wait(self, connection: Any, seconds: float, stop: threading.Event) -> bool:
        stop.wait(seconds)
        return True

    def watch(self, waiting: Callable[[str], None] | None) -> None:
        """Nothing to watch: nothing waits."""

    def hold(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)

    def receive(self, connection: Any, max_messages: int) -> list[ReceivedMessage]:
        now = self.clock()
        received: list[ReceivedMessage] = []
        seen: set[str] = set()
        with self._lock:
            for index, stored in enumerate(self._queue):
                conversation = stored.message.conversation_id
                is_head = conversation is None or conversation not in seen
                if conversation is not None:
                    seen.add(conversation)
                if not is_head or stored.claimed or stored.available_at > now:
                    continue
                if len(received) == max_messages:
                    break
                message = replace(stored.message, attempts=stored.message.attempts + 1)
                self._queue[index] = _Stored(message, stored.available_at, claimed=True)
                received.append(message)
        return received

    def complete(self, connection: Any, messages: Sequence[ReceivedMessage]) -> int:
        ids = {message.message_id for message in messages}
        with self._lock:
            before = len(self._queue)
            self._queue = [s for s in self._queue if s.message.message_id not in ids]
            return before - len(self._queue)

    def delay(self, connection: Any, message: ReceivedMessage, seconds: float) -> None:
        self._put_back(message, max(0.0, seconds), attempts=max(message.attempts - 1, 0))

    def abandon(
        self,
        connection: Any,
        message: ReceivedMessage,
        error: BaseException | None = None,
        retry_after_seconds: float = 0.0,
    ) -> None:
        last_error = None if error is None else f"{type(error).__name__}: {error}"
        self._put_back(message, retry_after_seconds, message.attempts, last_error)

    def dead_letter(
        self,
        connection: Any,
        message: ReceivedMessage,
        reason: str,
        failure: Failure | None = None,
        *,
        attempts: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int | None:
        if self.complete(connection, [message]) == 0:
            return None
        self.dead_letters.append(MemoryDeadLetter(message, reason, failure, dict(metadata or {})))
        return len(self.dead_letters)

    def settled(self, messages: Sequence[ReceivedMessage]) -> None:
        """Nothing to do: settling took effect at once."""

    def drained(self) -> bool:
        """Yes: a receive that claimed nothing means nothing is available now."""
        return True

    def released(self, messages: Sequence[ReceivedMessage]) -> None:
        """The claims of ``messages`` end (their attempts stay counted), as the broker's do
        when the claiming session is gone."""
        ids = {message.message_id for message in messages}
        with self._lock:
            self._queue = [
                replace(s, claimed=False) if s.message.message_id in ids else s for s in self._queue
            ]

    def close(self) -> None:
        """Nothing held."""

    def unsettled(
        self, connection: Any, conversations: Collection[str] | None = None
    ) -> list[UnsettledMessage]:
        """Messages not yet completed or dead-lettered, of ``conversations`` when given."""
        with self._lock:
            return [
                UnsettledMessage(m.conversation_id, m.body, m.enqueued_at)
                for m in (stored.message for stored in self._queue)
                if conversations is None or m.conversation_id in conversations
            ]

    def _put_back(
        self, message: ReceivedMessage, seconds: float, attempts: int, last_error: str | None = None
    ) -> None:
        with self._lock:
            for index, stored in enumerate(self._queue):
                if stored.message.message_id == message.message_id:
                    kept = replace(stored.message, attempts=attempts, last_error=last_error)
                    self._queue[index] = _Stored(kept, self.clock() + seconds)
                    return
