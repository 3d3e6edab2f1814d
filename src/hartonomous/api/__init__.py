"""HTTP API (FastAPI)."""

from hartonomous.api.app import create_app

__all__ = ["create_app"]
