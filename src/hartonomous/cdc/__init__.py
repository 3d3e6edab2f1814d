"""Change data capture: WAL (pgoutput) → CloudEvents on the broker (docs/cdc.md)."""

from hartonomous.cdc.consumer import CesConsumer, StepResult, prepare_capture
from hartonomous.cdc.replication import CdcStatus, captured_tables, cdc_status

__all__ = [
    "CdcStatus",
    "CesConsumer",
    "StepResult",
    "captured_tables",
    "cdc_status",
    "prepare_capture",
]
