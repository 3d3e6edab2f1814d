"""Signed cursors: a round trip works; any change, or another listing's cursor, is refused."""

from __future__ import annotations

import pytest

from hartonomous.errors import InvalidCursorError
from hartonomous.services.pagination import CursorCodec

CODEC = CursorCodec(b"k" * 32)


def test_a_cursor_round_trips_its_position() -> None:
    cursor = CODEC.encode("holdings", "acme", ["2026-11-30T12:00:00+00:00", 42], filters={})
    assert CODEC.decode("holdings", "acme", cursor, filters={}) == ["2026-11-30T12:00:00+00:00", 42]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # signature changed
        lambda c: ("e" if c[0] != "e" else "f") + c[1:],  # payload changed
        lambda c: c.split(".")[0],  # signature dropped
        lambda c: "not base64!",
        lambda c: "é" + c,
        lambda c: "",
        lambda c: c * 100,
    ],
)
def test_a_tampered_cursor_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    cursor = CODEC.encode("holdings", "acme", [1], filters={})
    with pytest.raises(InvalidCursorError):
        CODEC.decode("holdings", "acme", tamper(cursor), filters={})


def test_a_cursor_from_another_listing_tenant_or_key_is_refused() -> None:
    cursor = CODEC.encode("holdings", "acme", [1], filters={})
    with pytest.raises(InvalidCursorError, match="another listing"):
        CODEC.decode("ledger", "acme", cursor, filters={})
    every = r"another holdings listing \(another tenant's, or every tenant's\)"
    with pytest.raises(InvalidCursorError, match=every):
        CODEC.decode("holdings", "globex", cursor, filters={})
    with pytest.raises(InvalidCursorError, match="altered"):
        CursorCodec(b"x" * 32).decode("holdings", "acme", cursor, filters={})


def test_a_cursor_is_bound_to_its_listings_filters() -> None:
    """Replayed with any filter changed, added or dropped, a cursor is refused naming why."""
    filters = {"operation": "ingest", "recorded_since": "2026-11-01T00:00:00+00:00"}
    cursor = CODEC.encode("ledger", "acme", [1], filters=filters)
    assert CODEC.decode("ledger", "acme", cursor, filters=dict(reversed(filters.items()))) == [1]
    # An absent filter and an explicit null are one listing.
    assert CODEC.decode("ledger", "acme", cursor, filters={**filters, "principal_id": None}) == [1]
    for other in (
        {**filters, "operation": "search"},
        {**filters, "principal_id": "alice"},
        {"operation": "ingest"},
        {},
    ):
        with pytest.raises(InvalidCursorError, match="made for other filters; start again"):
            CODEC.decode("ledger", "acme", cursor, filters=other)
