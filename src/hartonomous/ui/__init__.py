"""The admin web UI served under `/ui` (docs/admin-ui.md)."""

from hartonomous.ui.app import UI_ROOT, create_ui

__all__ = ["UI_ROOT", "create_ui"]
