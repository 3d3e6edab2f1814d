"""Dead letters: list (cursor pagination), show, replay, purge (docs/messaging.md).

Dead letters belong to the platform, not to a tenant: these are operator (admin) use cases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import set_json_loads
from pydantic import BaseModel

from hartonomous.errors import HartonomousError, InvalidCursorError, UsageError
from hartonomous.messaging import dead_letters as store
from hartonomous.messaging.dead_letters import DeadLetterNotFoundError, ReplaySelection
from hartonomous.messaging.envelope import loads_stored
from hartonomous.messaging.transport import open_transport
from hartonomous.services.pagination import Page, cursor_codec
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = [
    "DeadLetter",
    "DeadLetterNotFoundError",
    "DeadLetterSummary",
    "LetterReplay",
    "PurgeOutcome",
    "ReplayOutcome",
    "ReplaySelection",
    "list_dead_letters",
    "parse_duration",
    "purge_dead_letters",
    "replay_dead_letters",
    "replay_each",
    "show_dead_letter",
]

_LISTING = "dead-letters"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LONGEST_SECONDS = 100 * 366 * 86400


class DeadLetterSummary(BaseModel):
    dead_letter_id: int
    message_id: int
    queue_name: str
    conversation_id: str | None
    message_type: str
    attempts: int
    reason: str
    exception_type: str | None
    exception_message: str | None  # its first 500 characters
    created_at: datetime
    replayed_at: datetime | None
    replay_count: int
    event_type: str | None  # the CloudEvent's `type`, when the body is one


class DeadLetter(BaseModel):
    """Everything about one dead letter. ``body`` is the message as captured: its numbers with
    a fraction are exact (``Decimal``; written as decimal strings over HTTP, docs/api.md); a
    body nested deeper than the JSON parser follows is its JSON text (a string)."""

    dead_letter_id: int
    message_id: int
    queue_name: str
    conversation_id: str | None
    message_type: str
    body: Any
    enqueued_at: datetime
    attempts: int
    reason: str
    exception_type: str | None
    exception_message: str | None
    exception_traceback: str | None
    metadata: Any
    created_at: datetime
    replayed_at: datetime | None
    replay_count: int
    replayed_message_id: int | None


@dataclass(frozen=True)
class ReplayOutcome:
    # The new messages, one per replayed dead letter: broker message ids; on Kafka the
    # records' offsets (each dead letter's metadata names the partition).
    message_ids: list[int]

    @property
    def replayed(self) -> int:
        return len(self.message_ids)


@dataclass(frozen=True)
class LetterReplay:
    """One selected letter's outcome: the new message id, or why it was not replayed."""

    dead_letter_id: int
    message_id: int | None
    error: str | None


@dataclass(frozen=True)
class PurgeOutcome:
    purged: int


def parse_duration(text: str, name: str | None = None) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w``, ``0s`` …; ``UsageError`` (naming ``name``) otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(
            ("" if name is None else f"{name} ")
            + f"{text!r} is not a duration: use a number and a unit, e.g. 30m, 12h, 7d, 2w"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > _LONGEST_SECONDS:  # past it, `now() - age` leaves PostgreSQL's time range
        raise UsageError(
            ("" if name is None else f"{name} ") + f"{text!r} is longer than 100 years"
        )
    return timedelta(seconds=seconds)


def list_dead_letters(
    platform: Platform,
    *,
    limit: int = 50,
    include_replayed: bool = False,
    cursor: str | None = None,
) -> Page[DeadLetterSummary]:
    """Dead letters newest first, ``limit`` a page; ``InvalidCursorError`` for a bad cursor."""
    codec = cursor_codec(platform.engine)
    filters = {"include_replayed": include_replayed}
    before = (
        None if cursor is None else _position(codec.decode(_LISTING, None, cursor, filters=filters))
    )
    with driver_session(platform) as connection:
        rows = store.list_dead_letters(connection, limit + 1, include_replayed, before)
    items = [DeadLetterSummary.model_validate(row) for row in rows[:limit]]
    more = len(rows) > limit
    if not more:
        return Page(items, None)
    return Page(items, codec.encode(_LISTING, None, [items[-1].dead_letter_id], filters=filters))


def _position(position: list[Any]) -> int:
    if len(position) != 1 or not isinstance(position[0], int):
        raise InvalidCursorError("cursor holds no dead letter position")
    return position[0]


def show_dead_letter(platform: Platform, dead_letter_id: int) -> DeadLetter:
    """One dead letter; ``DeadLetterNotFoundError`` (404) when there is none with this id."""
    with driver_session(platform) as connection:
        # The body's numbers as they were captured; a body nested deeper than the parser
        # follows is shown as its JSON text (`envelope.loads_stored`).
        set_json_loads(loads_stored, connection)
        try:
            row = store.show_dead_letter(connection, dead_letter_id)
        finally:
            set_json_loads(json.loads, connection)  # psycopg's default: the session is pooled
    return DeadLetter.model_validate(row)


def replay_dead_letters(platform: Platform, selection: ReplaySelection) -> ReplayOutcome:
    """Re-enqueue the selected dead letters with attempts reset, in one transaction.

    ``DeadLetterNotFoundError`` when one id is asked for and does not exist.
    """
    transport = open_transport(platform.settings.message_broker)
    try:
        with driver_session(platform) as connection:
            ids = store.replay(connection, transport, selection)
    finally:
        transport.close()
    return ReplayOutcome(ids)


def replay_each(platform: Platform, dead_letter_ids: list[int]) -> list[LetterReplay]:
    """Replay each letter in its own transaction, so one that fails (gone since it was
    listed) leaves the others replayed; an outcome per letter, in the order given."""
    outcomes = []
    for dead_letter_id in dead_letter_ids:
        try:
            [message_id] = replay_dead_letters(
                platform, ReplaySelection(dead_letter_id=dead_letter_id)
            ).message_ids
        except HartonomousError as exc:
            outcomes.append(LetterReplay(dead_letter_id, None, str(exc)))
        else:
            outcomes.append(LetterReplay(dead_letter_id, message_id, None))
    return outcomes


def purge_dead_letters(platform: Platform, older_than: timedelta, *, confirm: bool) -> PurgeOutcome:
    """Delete dead letters created more than ``older_than`` ago, for good.

    ``UsageError`` unless ``confirm`` (the CLI's ``--yes``, the API's ``confirm=true``).
    """
    if not confirm:
        raise UsageError("confirm must be true: purge deletes dead letters for good")
    with driver_session(platform) as connection:
        return PurgeOutcome(store.purge(connection, older_than))
