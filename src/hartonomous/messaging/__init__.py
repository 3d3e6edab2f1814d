"""The in-database broker, its resilience policies and dead letters (design §7)."""

from hartonomous.messaging.broker import (
    Broker,
    MessageTooLargeError,
    OutgoingMessage,
    ReceivedMessage,
    psycopg_connection,
)
from hartonomous.messaging.envelope import MalformedMessageError, parse_cloudevent, to_body
from hartonomous.messaging.pump import (
    DelayMessageError,
    Handler,
    MessagePump,
    RejectMessageError,
)
from hartonomous.messaging.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    ResilienceStrategy,
    RetryPolicy,
    is_transient,
)

__all__ = [
    "Broker",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "DelayMessageError",
    "Handler",
    "MalformedMessageError",
    "MessagePump",
    "MessageTooLargeError",
    "OutgoingMessage",
    "ReceivedMessage",
    "RejectMessageError",
    "ResilienceStrategy",
    "RetryPolicy",
    "is_transient",
    "parse_cloudevent",
    "psycopg_connection",
    "to_body",
]
