"""Cursor pagination: opaque, signed cursors that name the position after the last item.

A cursor is ``base64url(JSON payload) "." base64url(HMAC-SHA256(payload))``; the payload holds
the listing's name, the tenant it was issued to, a digest of the listing's filters (the
parameters that choose or order its items: SHA-256 of their canonical JSON, first 16 bytes)
and the sort key of the last item returned.
The key is the database's ``server_secrets`` row ``pagination_cursor`` (migration 0012), so
every API process on one database issues and accepts the same cursors. A cursor that does not
decode, whose signature does not match (tampered with), or that was issued for another listing
or tenant, or with other filters, raises ``InvalidCursorError`` (HTTP 400) naming which
(docs/api.md, "Pagination"). ``limit`` is not a filter: a page size may change between pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, select

from hartonomous.db.tables import server_secrets
from hartonomous.errors import InvalidCursorError, UnavailableError

__all__ = [
    "OTHER_FILTERS",
    "CursorCodec",
    "Page",
    "cursor_codec",
    "filters_digest",
    "page_of_rows",
    "time_and_id",
]

T = TypeVar("T")
R = TypeVar("R")
_SECRET_NAME = "pagination_cursor"  # noqa: S105 - a row name, not a secret
_MAX_CURSOR_CHARACTERS = 4096
OTHER_FILTERS = "the cursor was made for other filters; start again without it"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items, and the cursor of the next page (None: the last)."""

    items: Sequence[T]
    next_cursor: str | None


@dataclass(frozen=True)
class CursorCodec:
    """Issues and checks cursors with one secret key."""

    secret: bytes

    def encode(
        self,
        listing: str,
        tenant_id: str | None,
        position: list[Any],
        *,
        filters: Mapping[str, object],
    ) -> str:
        """A cursor for ``listing`` (e.g. ``"holdings"``) resuming after ``position``.

        ``position`` is the sort key of the last item returned, JSON-serialisable;
        ``filters`` every parameter that chooses or orders the listing's items (``{}`` for
        none), values JSON-serialisable or ``str()``-able (datetimes, UUIDs).
        """
        payload = json.dumps(
            {"l": listing, "t": tenant_id, "f": filters_digest(filters), "p": position},
            separators=(",", ":"),
            default=str,
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(
        self,
        listing: str,
        tenant_id: str | None,
        cursor: str,
        *,
        filters: Mapping[str, object],
    ) -> list[Any]:
        """The position a cursor resumes after; ``InvalidCursorError`` naming what is wrong
        (``OTHER_FILTERS`` when ``filters`` are not those it was issued with)."""
        if not cursor:
            # One rule for every listing: an empty cursor is not one we issued (omit it).
            raise InvalidCursorError("cursor is empty: omit it for the first page")
        if len(cursor) > _MAX_CURSOR_CHARACTERS:
            raise InvalidCursorError(f"cursor is {len(cursor)} characters, more than any we issue")
        body, dot, signature = cursor.partition(".")
        try:
            payload = _unb64(body)
            given = _unb64(signature)
        except (binascii.Error, ValueError):
            raise InvalidCursorError(
                "cursor is not one this server issued (not base64url)"
            ) from None
        if not dot or not hmac.compare_digest(given, self._sign(payload)):
            raise InvalidCursorError("cursor was altered or not issued by this server")
        decoded = json.loads(payload)
        if decoded.get("l") != listing:
            raise InvalidCursorError(f"cursor was issued for another listing, not {listing}")
        if decoded.get("t") != tenant_id:
            # Which tenant it was issued to is not said: that would leak another tenant's id.
            raise InvalidCursorError(
                f"cursor was issued for another {listing} listing (another tenant's, or every "
                "tenant's)"
            )
        if decoded.get("f") != filters_digest(filters):
            raise InvalidCursorError(OTHER_FILTERS)
        position = decoded.get("p")
        if not isinstance(position, list):
            raise InvalidCursorError("cursor holds no position")
        return position

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, payload, hashlib.sha256).digest()


def filters_digest(filters: Mapping[str, object]) -> str:
    """The first 16 bytes of the SHA-256 of ``filters`` as canonical JSON (sorted keys), as
    base64url: what a cursor keeps of its listing's filters. ``None`` values count as absent,
    so an omitted filter and an explicit null are the same listing."""
    present = {name: value for name, value in filters.items() if value is not None}
    canonical = json.dumps(present, sort_keys=True, separators=(",", ":"), default=str)
    return _b64(hashlib.sha256(canonical.encode()).digest()[:16])


def page_of_rows(
    rows: Sequence[R], limit: int, item: Callable[[R], T], cursor_after: Callable[[R], str]
) -> Page[T]:
    """The page of ``rows`` read with ``LIMIT limit + 1``: the first ``limit`` as items, and a
    cursor after the last of them when there was one row more (None: the last page)."""
    following = cursor_after(rows[limit - 1]) if len(rows) > limit else None
    return Page([item(row) for row in rows[:limit]], following)


def time_and_id(position: list[Any], listing: str) -> tuple[datetime, uuid.UUID]:
    """A decoded position ``[ISO time, UUID]`` (the listings ordered by a time, then an id);
    ``InvalidCursorError`` naming ``listing`` when it is not one."""
    try:
        moment, identifier = position
        return datetime.fromisoformat(str(moment)), uuid.UUID(str(identifier))
    except (TypeError, ValueError):
        raise InvalidCursorError(f"cursor holds no {listing} position") from None


def cursor_codec(engine: Engine) -> CursorCodec:
    """The codec keyed with the database's cursor secret.

    Raises ``UnavailableError`` when the secret row is missing (migrations not at head).
    """
    with engine.connect() as connection:
        secret = connection.execute(
            select(server_secrets.c.secret).where(server_secrets.c.name == _SECRET_NAME)
        ).scalar_one_or_none()
    if secret is None:
        missing = UnavailableError(
            "no pagination key in server_secrets: the database's migrations are not at head"
        )
        missing.cli_hint = "run `hartonomous db upgrade`"  # the CLI says it; HTTP does not
        raise missing
    return CursorCodec(bytes(secret))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not ASCII")
    decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(decoded) != text:  # unused low bits set: a changed character that decodes alike
        raise ValueError("not canonical")
    return decoded
