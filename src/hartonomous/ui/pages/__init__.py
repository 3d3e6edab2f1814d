"""The UI\x27s pages, one module per area (docs/admin-ui.md)."""
