"""The savepoint in front of each handler of a batch, set only when the handler uses the session.

A handler's failure must undo its own writes and nothing else, so each handler runs after a
savepoint. Setting one costs a round trip, which was most of the pump's time per message for
handlers that never touch the database (the default one only acknowledges). So the session
holds the savepoint command back and sends it just before the handler's first statement: every
statement, fetch, transaction block, pipeline or COPY of a psycopg connection goes through
`Connection.wait`, which is where it is sent. A handler that touches nothing costs nothing; one
that does gets the savepoint exactly in front of its first write.

One savepoint name serves the whole batch: `RELEASE; SAVEPOINT` (one simple query) moves it
past the previous handler, whose writes the batch transaction then keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.errors import error_from_result
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import TupleRow

_SET = b"SAVEPOINT hartonomous_handler"
_MOVE = b"RELEASE SAVEPOINT hartonomous_handler; SAVEPOINT hartonomous_handler"
_ROLL_BACK = "ROLLBACK TO SAVEPOINT hartonomous_handler"

Result = TypeVar("Result")


class PumpConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection that can send a held-back command before its next operation."""

    _held_back: bytes | None = None

    def hold_back(self, command: bytes | None) -> bytes | None:
        """Send `command` before the next operation (None: not at all); returns the previous
        command if it was never sent."""
        previous, self._held_back = self._held_back, command
        return previous

    def wait(self, gen: PQGen[Result], *args: Any, **kwargs: Any) -> Result:
        command, self._held_back = self._held_back, None
        if command is not None:
            # libpq's own PQexec (it releases the GIL): it takes a multi-statement command, and
            # the caller of `wait` already holds the connection lock that `execute` would take.
            result = self.pgconn.exec_(command)
            if result.status != ExecStatus.COMMAND_OK:
                raise error_from_result(result, encoding=self.info.encoding)
        return super().wait(gen, *args, **kwargs)


@dataclass
class HandlerSavepoint:
    """Arm before a handler, settle after it; `settle(failed=True)` undoes the handler's writes."""

    connection: PumpConnection
    _exists: bool = False

    def arm(self) -> None:
        self.connection.hold_back(_MOVE if self._exists else _SET)

    def settle(self, *, failed: bool) -> None:
        unsent = self.connection.hold_back(None)
        if unsent is not None:
            return  # the handler never used the session: there is nothing to undo
        self._exists = True
        if failed:
            self.connection.execute(_ROLL_BACK)

    def left_aborted(self) -> bool:
        """The handler returned but swallowed a database error: its transaction is unusable."""
        return self.connection.info.transaction_status == TransactionStatus.INERROR
