"""Application services: one function or class per use case, for the CLI, API and admin UI.

Entry points (``cli/``, ``api/``) call these and hold no SQL; a service takes a ``Platform``
(what it runs against) and typed arguments, returns dataclasses or pydantic models, and raises
``hartonomous.errors.HartonomousError`` subclasses (docs/architecture.md).
"""

from hartonomous.services.platform import Platform, open_platform

__all__ = ["Platform", "open_platform"]
