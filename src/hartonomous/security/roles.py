"""Roles a principal can hold, and what each one includes (docs/security.md).

The original system defined Admin, DataScientist and User policies and never applied them;
here every API route names the least role it needs. Roles are ordered: ``admin`` can do
everything ``data-scientist`` can, which can do everything ``user`` can.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


class Role(StrEnum):
    """A principal's role: the ``principals.role`` column."""

    USER = "user"
    DATA_SCIENTIST = "data-scientist"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def includes(self, needed: Role) -> bool:
        """True when a principal with this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_RANK = {Role.USER: 0, Role.DATA_SCIENTIST: 1, Role.ADMIN: 2}
