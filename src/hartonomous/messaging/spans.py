"""Trace spans of the broker's messages, after the OpenTelemetry messaging and CloudEvents
semantic conventions (docs/operations.md, "Traces")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, SpanKind

from hartonomous.messaging.broker import ReceivedMessage
from hartonomous.observability.tracing import tracer

__all__ = ["MESSAGING_SYSTEM", "process_span", "send_span"]

# Not one of the conventions' well-known systems: the in-database broker (docs/messaging.md).
MESSAGING_SYSTEM = "hartonomous_broker"


@contextmanager
def process_span(message: ReceivedMessage) -> Iterator[Span]:
    """``process <queue>`` (CONSUMER) for handling one message: its CloudEvent's id, type,
    source and subject, the message id and conversation."""
    body: Any = message.body if isinstance(message.body, dict) else {}
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": message.queue_name,
        "messaging.message.id": str(body.get("id", message.message_id)),
        "messaging.message.conversation_id": message.conversation_id or "",
        "hartonomous.broker.message_id": message.message_id,
        "hartonomous.broker.attempts": message.attempts,
        **{
            f"cloudevents.event_{name}": str(body[key])
            for name, key in (
                ("id", "id"),
                ("type", "type"),
                ("source", "source"),
                ("subject", "subject"),
                ("spec_version", "specversion"),
            )
            if key in body
        },
    }
    with tracer().start_as_current_span(
        f"process {message.queue_name}", kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextmanager
def send_span(queue: str, operation: str) -> Iterator[Span]:
    """``send <queue>`` (PRODUCER) for a batch of messages enqueued at once; the caller sets
    ``messaging.batch.message_count`` when it knows it."""
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }
    with tracer().start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span
