"""Instants the platform can hold: timezone-aware times whose UTC value is in years 1-9999.

Python's ``datetime`` stops at those years (PostgreSQL's ``timestamptz`` goes further), so a
time such as ``9999-12-31T23:59:59-14:00`` parses but has no UTC value to store or compare:
converting it raises ``OverflowError`` deep in a driver or a comparison. `in_utc` turns that
into one ``ValueError`` naming the time, which each caller raises as its own bad-input error.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["in_utc", "rfc3339"]


def in_utc(moment: datetime) -> datetime:
    """``moment`` (timezone-aware) converted to UTC.

    Raises ``ValueError`` when its UTC value falls outside the years 1-9999.
    """
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{moment.isoformat()} is outside the years 0001-9999 once converted to UTC"
        ) from None


def rfc3339(moment: datetime) -> str:
    """``moment`` as the HTTP API writes instants: RFC 3339 in UTC with ``Z``
    (``2026-12-02T15:25:51.066800Z``); a naive ``moment`` is written as it is, without zone.

    Raises ``ValueError`` as `in_utc` does.
    """
    if moment.tzinfo is None:
        return moment.isoformat()
    return in_utc(moment).isoformat().replace("+00:00", "Z")
