"""The NOTIFY channels of inference jobs (docs/inference.md, "Waiting").

``hartonomous_inference`` (payload empty): a request was queued, idle workers claim at once.
``hartonomous_inference_done`` (payload the inference id): a job completed or failed, so a
caller waiting on it reads its outcome at once instead of polling. Both are sent inside the
writing transaction, so PostgreSQL delivers them only once it commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Connection, String, cast, func, text

__all__ = ["DONE_CHANNEL", "NOTIFY_CHANNEL", "notice", "notify"]

NOTIFY_CHANNEL = "hartonomous_inference"
DONE_CHANNEL = "hartonomous_inference_done"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def notify(connection: Connection, channel: str, inference_id: uuid.UUID | None = None) -> None:
    """Queue a notification on ``channel`` in the transaction of ``connection``."""
    payload = "" if inference_id is None else str(inference_id)
    connection.execute(_NOTIFY, {"channel": channel, "payload": payload})


def notice(channel: str, inference_id: ColumnElement[object]) -> ColumnElement[object]:
    """``pg_notify(channel, inference_id)`` as an expression, to queue a notice within the
    statement that writes (no round trip of its own)."""
    return func.pg_notify(channel, cast(inference_id, String))
