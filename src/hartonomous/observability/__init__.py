"""Structured logs (and, later, traces and metrics)."""

from hartonomous.observability.logging import configure_logging, new_operation_id

__all__ = ["configure_logging", "new_operation_id"]
