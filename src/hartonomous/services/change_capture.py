"""Change capture as the operations services report it (docs/cdc.md, "Operator tools")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from hartonomous.cdc.replication import CdcStatus

__all__ = ["ChangeCapture"]


class ChangeCapture(BaseModel):
    """The replication slot, publication and checkpoint of the CES consumer.

    ``lag_bytes``: WAL not yet confirmed by the consumer; ``lag_seconds``: since it was last
    caught up (None: no slot, or never caught up); ``lagging``: past ``[cdc] lag_alert_bytes``
    or ``lag_alert_seconds``.
    """

    slot: str
    slot_exists: bool
    slot_active: bool
    publication: str
    publication_exists: bool
    published_tables: list[str]
    captured_tables: list[str]
    confirmed_flush_lsn: str | None
    lag_bytes: int | None
    lag_seconds: float | None
    lag_alert_bytes: int
    lag_alert_seconds: float
    checkpoint_lsn: str | None
    events_total: int
    dead_lettered_total: int
    truncations_total: int
    last_truncation: dict[str, Any] | None
    lagging: bool

    @classmethod
    def of(cls, status: CdcStatus) -> ChangeCapture:
        return cls.model_validate(status.as_dict())

    def describe_lag(self) -> str:
        """One line: lag bytes and age, and what capture set aside or missed."""
        return CdcStatus(**self.model_dump(exclude={"lagging"})).describe_lag()
