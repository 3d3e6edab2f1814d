"""The in-database broker, the consumer loop, resilience policies and dead letters.

docs/messaging.md describes them.
"""

from hartonomous.messaging.broker import (
    Broker,
    MessageTooLargeError,
    OutgoingMessage,
    ReceivedMessage,
    psycopg_connection,
)
from hartonomous.messaging.consumer import BatchHandler, ConsumerLoop
from hartonomous.messaging.envelope import MalformedMessageError, parse_cloudevent, to_body
from hartonomous.messaging.pump import BatchOutcome, CloudEventHandler, Handler, message_pump
from hartonomous.messaging.resilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    ResilienceStrategy,
    RetryPolicy,
    is_transient,
)
from hartonomous.messaging.settlement import Complete, DeadLetter, Delay, Settlement
from hartonomous.messaging.transport import Transport

__all__ = [
    "BatchHandler",
    "BatchOutcome",
    "Broker",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CloudEventHandler",
    "Complete",
    "ConsumerLoop",
    "DeadLetter",
    "Delay",
    "Handler",
    "MalformedMessageError",
    "MessageTooLargeError",
    "OutgoingMessage",
    "ReceivedMessage",
    "ResilienceStrategy",
    "RetryPolicy",
    "Settlement",
    "Transport",
    "is_transient",
    "message_pump",
    "parse_cloudevent",
    "psycopg_connection",
    "to_body",
]
