"""`status`'s change-capture line when the CES consumer has never caught up (a restored data
directory before its first `up`): it printed "Nones since caught up"."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from hartonomous.services.health import CaptureLag
from hartonomous.services.status import _capture


def _ready(lag_seconds: float | None) -> Any:
    lag = CaptureLag(slot_exists=True, lag_bytes=16730952, lag_seconds=lag_seconds, lagging=False)
    return cast(Any, SimpleNamespace(change_capture=lag))


def test_a_consumer_that_never_caught_up_is_said_so() -> None:
    check = _capture(_ready(None))
    assert check.detail == "slot lag 16730952 bytes, never caught up"
    assert "None" not in check.detail


def test_a_consumer_that_caught_up_gives_its_age() -> None:
    assert _capture(_ready(2.5)).detail == "slot lag 16730952 bytes, 2.5s since caught up"
