"""How a consumer settles one received message: the one vocabulary of every consumer loop.

A batch handler (`messaging/consumer.py`) answers each message with one of these, and the
transport applies it in the handler's transaction (docs/messaging.md):

- `Complete`: handled; the message goes away when the transaction commits, with the effects.
- `Delay`: not now (throttling, a dependency that is away); back after ``seconds``, and the
  delivery does not count as a failed attempt.
- `DeadLetter`: no retry can help (malformed, denied by a policy); moved to
  `message_dead_letters` at once with ``reason`` (a short code such as `policy_denied:<policy>`)
  and ``detail`` (free text).

A handler that raises instead has failed the attempt: the loop gives the message back after a
backoff, and dead-letters it at the poison limit (`[message_broker.resilience]
poison_message_max_attempts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Complete:
    """Handled: the message is removed when the handler's transaction commits."""


@dataclass(frozen=True)
class Delay:
    """Deliver again after ``seconds`` (≥ 0); ``reason`` names why (a throttle policy)."""

    seconds: float
    reason: str = "throttled"


@dataclass(frozen=True)
class DeadLetter:
    """Dead-letter at once with ``reason`` (a code), ``detail`` and extra ``metadata``."""

    reason: str
    detail: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


Settlement = Complete | Delay | DeadLetter
