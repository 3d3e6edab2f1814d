"""Trace spans of the broker's messages, after the OpenTelemetry messaging and CloudEvents
semantic conventions (docs/operations.md, "Traces")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    use_span,
)

from hartonomous.messaging.broker import ReceivedMessage
from hartonomous.observability.tracing import tracer

__all__ = ["MESSAGING_SYSTEM", "link_message", "process_batch_span", "record_send", "untraced"]

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
def untraced() -> Iterator[None]:
    """Nothing inside is traced: it runs under a parent that is not sampled, so the default
    (parent-based) sampler records none of its spans, database calls included. For a poll that
    mostly finds nothing (a CDC step every second): its spans would bury the rest."""
    parent = SpanContext(
        trace_id=random.getrandbits(128) or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
    )
    with use_span(NonRecordingSpan(parent)):
        yield


def record_send(
    queue: str, start_ns: int, end_ns: int, count: int, extra: dict[str, str | int]
) -> None:
    """A finished ``send <queue>`` (PRODUCER) span from ``start_ns`` to ``end_ns`` (ns since
    the epoch) for ``count`` messages enqueued at once, with ``extra`` attributes. Call it
    only when something was sent: an empty poll is no send."""
    attributes: dict[str, str | int] = {
        **_attributes("send", queue),
        "messaging.batch.message_count": count,
        **extra,
    }
    span = tracer().start_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes, start_time=start_ns
    )
    span.end(end_time=end_ns)


def _attributes(operation: str, queue: str) -> dict[str, str | int]:
    # The operation's name is the operation type's own here: `send`, `process`.
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": queue,
    }


@contextmanager
def _span(
    operation_type: str, queue: str, kind: SpanKind, extra: dict[str, str | int]
) -> Iterator[Span]:
    """``<operation type> <queue>``, with the messaging attributes every such span has."""
    attributes: dict[str, str | int] = {**_attributes(operation_type, queue), **extra}
    with tracer().start_as_current_span(
        f"{operation_type} {queue}", kind=kind, attributes=attributes
    ) as span:
        yield span
