"""Request field types take only what the OpenAPI says: RFC 3339 date-times, strict ints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from hartonomous.api.fields import StrictInt, Timestamp


class Query(BaseModel):
    since: Timestamp
    limit: StrictInt = 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        (
            "2026-01-31t12:00:00.250+02:00",
            datetime(2026, 1, 31, 12, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2026-01-31 12:00:00-05:30",
            datetime(2026, 1, 31, 12, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
    ],
)
def test_an_rfc_3339_date_time_is_read(text: str, expected: datetime) -> None:
    assert Query(since=text).since == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.5,
        "0",
        "1700000000",
        "2026-01-31",
        "2026-01-31T12:00:00",
        "2026-01-31T12:00Z",
        True,
        None,
        "yesterday",
    ],
)
def test_anything_else_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Query(since=value)  # type: ignore[arg-type]
    (error,) = refused.value.errors()
    assert error["loc"] == ("since",)


def test_a_datetime_from_python_passes_and_strict_ints_refuse_coercions() -> None:
    moment = datetime(2026, 1, 31, tzinfo=UTC)
    assert Query(since=moment).since == moment
    for value in (True, "5", 5.0):
        with pytest.raises(ValidationError):
            Query(since=moment, limit=value)  # type: ignore[arg-type]
