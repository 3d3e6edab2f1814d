"""Closing a billing period (docs/billing.md, "Monthly close"): freeze it with the checksum of
its totals; late events for it are billed afterwards as adjustments in the first open period.
Runs on the maintenance engine: a period closes for every tenant."""

from __future__ import annotations

from datetime import UTC, datetime

from hartonomous.billing.export import parse_period
from hartonomous.billing.periods import ClosedPeriod, close_period, closed_periods
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = ["ClosedPeriod", "close_ledger_period", "list_closed_periods"]


def close_ledger_period(
    platform: Platform, period: str, *, now: datetime | None = None
) -> ClosedPeriod:
    """Close ``period`` (``YYYY-MM``); closing a closed period answers its stored checksum.

    Raises ``InvalidPeriodError`` (not YYYY-MM, or in the future), ``PeriodNotEndedError``
    (the current period) and ``PeriodEventsQueuedError`` (naming how many of its events wait
    on the broker); nothing is written then."""
    moment = now or datetime.now(UTC)
    month = parse_period(period, today=moment.date())
    broker = platform.settings.message_broker
    transport = platform.transport() if broker.transport != "postgres" else None
    with driver_session(platform) as connection:
        return close_period(
            connection,
            month,
            now=moment,
            queue=broker.queue_name,
            unsettled=None if transport is None else lambda: transport.unsettled(connection),
        )


def list_closed_periods(platform: Platform) -> list[ClosedPeriod]:
    """Every closed period, oldest first, with its checksum."""
    with driver_session(platform) as connection:
        return closed_periods(connection)
