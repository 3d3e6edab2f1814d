"""The one exception root: every error a user or operator is meant to read.

Each kind maps once to a CLI exit code and an HTTP status (docs/api.md, README's exit-code
table), and carries a stable machine ``code`` that clients may branch on::

    HartonomousError                  code           exit  HTTP
    ├── UsageError                    invalid-input     2   400  bad argument, option or field
    │   ├── InvalidCursorError        invalid-cursor    2   400  a cursor we did not issue
    │   └── PayloadTooLargeError      payload-too-large 2   413  upload or body over its limit
    ├── NotAuthenticatedError         not-authenticated 2   401  no, unknown, expired or revoked key
    ├── ForbiddenError                forbidden         2   403  the key's role may not do this
    ├── NotFoundError                 not-found         1   404  no such thing (for this tenant)
    ├── ConflictError                 conflict          1   409  exists already / wrong state
    ├── RateLimitedError              rate-limited      1   429  over a [security] rate limit
    ├── UnavailableError              unavailable       1   503  database or a service is not there
    └── OperationFailedError          operation-failed  1   500  the work ran and failed

A subclass may set its own ``code`` (``unknown-tenant``, ``tenant-disabled`` …) while keeping its
parent's exit code and status. Driver errors (psycopg, SQLAlchemy) are wrapped once, at the
boundary that calls the driver, never passed up raw.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ECHO_CHARACTERS",
    "ConflictError",
    "ForbiddenError",
    "HartonomousError",
    "InvalidCursorError",
    "NotAuthenticatedError",
    "NotFoundError",
    "OperationFailedError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "UnavailableError",
    "UsageError",
    "echoed",
]

EXIT_FAILED = 1
EXIT_USAGE = 2


class HartonomousError(Exception):
    """An error whose message is the whole story for its reader (no traceback needed).

    ``code`` is stable machine text (kebab-case); ``exit_code`` what the CLI exits with;
    ``http_status`` what the API answers with (as an RFC 9457 problem, docs/api.md).
    ``cli_hint``, when set, names the command that helps: the CLI prints it after the
    message; an HTTP answer never does (it speaks of the API, not of the command line).
    """

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"
    exit_code: ClassVar[int] = EXIT_FAILED
    http_status: ClassVar[int] = 500
    cli_hint: str | None = None


class UsageError(HartonomousError):
    """The request or command line asks for something that cannot run as given."""

    code = "invalid-input"
    title = "Invalid input"
    exit_code = EXIT_USAGE
    http_status = 400


class InvalidCursorError(UsageError):
    """A pagination cursor that is malformed, tampered with, or from another listing."""

    code = "invalid-cursor"
    title = "Invalid pagination cursor"


class PayloadTooLargeError(UsageError):
    """An upload or request body larger than its configured limit; the message names both."""

    code = "payload-too-large"
    title = "Payload too large"
    http_status = 413


class NotAuthenticatedError(HartonomousError):
    """No API key, or one that is malformed, unknown, expired or revoked."""

    code = "not-authenticated"
    title = "Not authenticated"
    exit_code = EXIT_USAGE
    http_status = 401


class ForbiddenError(HartonomousError):
    """The caller is authenticated but its role does not allow this operation."""

    code = "forbidden"
    title = "Forbidden"
    exit_code = EXIT_USAGE
    http_status = 403


class NotFoundError(HartonomousError):
    """The thing asked for does not exist, or belongs to another tenant (never told apart)."""

    code = "not-found"
    title = "Not found"
    http_status = 404


class ConflictError(HartonomousError):
    """The thing exists already, or is in a state that does not allow the operation."""

    code = "conflict"
    title = "Conflict"
    http_status = 409


class RateLimitedError(HartonomousError):
    """Over a rate limit; ``retry_after_seconds`` says when the window has room again."""

    code = "rate-limited"
    title = "Too many requests"
    http_status = 429

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(HartonomousError):
    """The database or a service the operation needs is not available."""

    code = "unavailable"
    title = "Service unavailable"
    http_status = 503


class OperationFailedError(HartonomousError):
    """The operation ran and failed; the message says what failed."""

    code = "operation-failed"
    title = "Operation failed"
    http_status = 500


ECHO_CHARACTERS = 64
"""Most characters of a refused input a message repeats."""


def echoed(value: str) -> str:
    """``value`` quoted for a message (``repr``: escapes shown), cut past ``ECHO_CHARACTERS``
    with its length said, so a huge refused input is not repeated whole."""
    if len(value) <= ECHO_CHARACTERS:
        return repr(value)
    return f"{value[:ECHO_CHARACTERS]!r}… ({len(value)} characters)"
