"""Trace spans of the broker's messages, after the OpenTelemetry messaging and CloudEvents
semantic conventions (docs/operations.md, "Traces")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import INVALID_SPAN_CONTEXT, Span, SpanKind

from hartonomous.messaging.broker import ReceivedMessage
from hartonomous.observability.tracing import tracer

__all__ = ["MESSAGING_SYSTEM", "link_message", "process_batch_span", "send_span"]

# Not one of the conventions' well-known systems: the in-database broker (docs/messaging.md).
MESSAGING_SYSTEM = "hartonomous_broker"


@contextmanager
def process_batch_span(queue: str, count: int) -> Iterator[Span]:
    """``process <queue>`` (CONSUMER) for handling a claimed batch of ``count`` messages at
    once, with ``messaging.batch.message_count``; the caller links each message to it
    (`link_message`), as the messaging conventions ask of batch processing."""
    with _span(
        "process", queue, SpanKind.CONSUMER, {"messaging.batch.message_count": count}
    ) as span:
        yield span


def link_message(span: Span, message: ReceivedMessage, decision: str) -> None:
    """Link ``message`` to its batch's ``span``: the link's attributes are those a span of the
    message alone carried (CloudEvent id, type, source, subject; message id, conversation,
    attempts) and ``hartonomous.sync.decision``. The message carries no producer's span
    context, so the link's is the invalid one, which OpenTelemetry records for a link with
    attributes. Nothing is built while the span is not recording (tracing off)."""
    if not span.is_recording():
        return
    attributes: dict[str, str | int] = {
        **_message_attributes(message),
        "hartonomous.sync.decision": decision,
    }
    span.add_link(INVALID_SPAN_CONTEXT, attributes)


def _message_attributes(message: ReceivedMessage) -> dict[str, str | int]:
    body: Any = message.body if isinstance(message.body, dict) else {}
    return {
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


@contextmanager
def send_span(queue: str, operation: str) -> Iterator[Span]:
    """``send <queue>`` (PRODUCER) for a batch of messages enqueued at once; the caller sets
    ``messaging.batch.message_count`` when it knows it."""
    with _span("send", queue, SpanKind.PRODUCER, {"messaging.operation.name": operation}) as span:
        yield span


@contextmanager
def _span(
    operation_type: str, queue: str, kind: SpanKind, extra: dict[str, str | int]
) -> Iterator[Span]:
    """``<operation type> <queue>``, with the messaging attributes every such span has."""
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation_type,
        "messaging.destination.name": queue,
        **extra,
    }
    with tracer().start_as_current_span(
        f"{operation_type} {queue}", kind=kind, attributes=attributes
    ) as span:
        yield span
