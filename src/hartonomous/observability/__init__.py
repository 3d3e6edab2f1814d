"""Structured logs (and, later, traces and metrics)."""

from hartonomous.observability.logging import bind_operation, configure_logging, new_operation_id

__all__ = ["bind_operation", "configure_logging", "new_operation_id"]
