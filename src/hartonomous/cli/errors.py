"""How the command line reports failures.

Exit codes (README): 0 success, 1 the work failed, 2 the command line asked for something that
cannot run as given. Every error meant for a reader is a ``HartonomousError`` and carries its
own exit code (``hartonomous.errors``); services turn driver errors into one of these
(``hartonomous.services.database_errors``). This module adds the command-line usage error.
"""

from __future__ import annotations

from hartonomous.errors import UsageError


class CommandUsageError(UsageError, ValueError):
    """An argument or option the command cannot run with (exit 2); the message says which."""
