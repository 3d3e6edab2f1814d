""".NET conventions that the AtomicStream format inherits: ``BinaryWriter``/``BinaryReader``
encoding, ``DateTime`` ticks and ``String.Trim``.

Every multi-byte integer is little-endian. A string is its UTF-8 bytes prefixed by their count
as a 7-bit varint (``Write7BitEncodedInt``: seven bits per byte, low group first, the high bit
set on every byte but the last; an ``int32`` count takes at most 5 bytes). A GUID is 16 bytes in
``Guid.ToByteArray`` order: its first three groups little-endian, the last eight bytes as
written (Python's ``UUID.bytes_le``). A ``DateTime`` is ``Ticks``: 100 ns units since
0001-01-01T00:00:00 (UTC here), 0 to ``MAX_TICKS``. The byte layouts are in docs/provenance.md.

``BinaryReader`` here reads untrusted bytes: every defect raises the ``error`` type its caller
gives (a ``UsageError`` subclass taking ``(message, offset=...)``) naming the byte offset and what
was expected there, and every declared length is checked against the bytes that remain before
anything is allocated for it.
"""

from __future__ import annotations

import struct
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

from hartonomous.errors import UsageError

TICKS_PER_MICROSECOND = 10
EPOCH = datetime(1, 1, 1, tzinfo=UTC)  # DateTime.MinValue, tick 0
MAX_TICKS = 3_155_378_975_999_999_999  # DateTime.MaxValue.Ticks (9999-12-31T23:59:59.9999999)
INT32_MAX = 2**31 - 1
MAX_VARINT_BYTES = 5  # an int32 in 7-bit groups

_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")


def _bytes(count: int) -> str:
    return f"{count} byte" if count == 1 else f"{count} bytes"


def _remain(count: int) -> str:
    return f"{_bytes(count)} {'remains' if count == 1 else 'remain'}"


class OffsetErrorFactory(Protocol):
    """An error type built from a message and the byte offset it concerns."""

    def __call__(self, message: str, *, offset: int) -> UsageError: ...


def ticks_from_datetime(value: datetime) -> int:
    """``DateTime.Ticks`` of an aware datetime (converted to UTC); exact, as 1 µs = 10 ticks.

    Raises ``ValueError`` for a naive datetime (a tick count is only meaningful in UTC) and for
    one whose UTC instant falls outside years 1..9999.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"a naive datetime ({value.isoformat()}) has no UTC instant; give tzinfo")
    try:
        delta = value.astimezone(UTC) - EPOCH
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside years 1..9999 in UTC") from None
    return (delta // timedelta(microseconds=1)) * TICKS_PER_MICROSECOND


def datetime_from_ticks(ticks: int) -> datetime:
    """The UTC datetime of ``ticks``, rounded down to the microsecond (Python's precision).

    Raises ``ValueError`` outside 0..``MAX_TICKS`` (the range .NET's ``DateTime`` accepts).
    """
    if not 0 <= ticks <= MAX_TICKS:
        raise ValueError(f"ticks must be in 0..{MAX_TICKS}, got {ticks}")
    return EPOCH + timedelta(microseconds=ticks // TICKS_PER_MICROSECOND)


def encode_varint(value: int) -> bytes:
    """``Write7BitEncodedInt`` of a non-negative int32 (1 to 5 bytes)."""
    if not 0 <= value <= INT32_MAX:
        raise ValueError(f"a 7-bit encoded length must be in 0..{INT32_MAX}, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class BinaryWriter:
    """Appends values in ``BinaryWriter``'s encoding; ``getvalue()`` gives the bytes."""

    def __init__(self) -> None:
        self._out = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._out)

    def write_bool(self, value: bool) -> None:
        self._out.append(1 if value else 0)

    def write_byte(self, value: int) -> None:
        self._out.append(value)

    def write_int32(self, value: int) -> None:
        self._out += _INT32.pack(value)

    def write_int64(self, value: int) -> None:
        self._out += _INT64.pack(value)

    def write_guid(self, value: uuid.UUID) -> None:
        self._out += value.bytes_le

    def write_bytes(self, value: bytes) -> None:
        self._out += value

    def write_string(self, value: str) -> None:
        """Raises ``UnicodeEncodeError`` for text UTF-8 cannot carry (lone surrogates)."""
        encoded = value.encode("utf-8")
        self._out += encode_varint(len(encoded))
        self._out += encoded

    def write_optional_string(self, value: str | None) -> None:
        """``bool hasValue`` then, when true, the string."""
        self.write_bool(value is not None)
        if value is not None:
            self.write_string(value)


class BinaryReader:
    """Reads ``BinaryWriter``'s encoding from a buffer, strictly; ``offset`` is the next byte.

    Each ``read_*`` takes ``what`` (the field's name, for the error message) and raises
    ``error(message, offset=...)`` for bytes that run out or are not a valid value.
    """

    def __init__(self, data: bytes | bytearray | memoryview, error: OffsetErrorFactory) -> None:
        self._view = memoryview(data).cast("B")
        self._error = error
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._view) - self.offset

    def fail(self, message: str, *, offset: int | None = None) -> UsageError:
        """The error to raise for a defect at ``offset`` (default: the current offset)."""
        return self._error(message, offset=self.offset if offset is None else offset)

    def _take(self, size: int, what: str, form: str | None = None) -> memoryview:
        """The next ``size`` bytes; ``form`` describes them for the error (default: the size)."""
        start = self.offset
        end = start + size
        if end > len(self._view):
            raise self.fail(
                f"expected {what} ({form or _bytes(size)}), but only {_remain(self.remaining)}"
            )
        self.offset = end
        return self._view[start:end]

    def read_bool(self, what: str) -> bool:
        """One byte, 0 or 1 (stricter than .NET, which takes any non-zero byte as true)."""
        start = self.offset
        value = self._take(1, what, "bool, 1 byte")[0]
        if value > 1:
            raise self.fail(f"expected {what} as a bool byte 0 or 1, got {value}", offset=start)
        return value == 1

    def read_byte(self, what: str) -> int:
        return self._take(1, what)[0]

    def read_int32(self, what: str) -> int:
        value: int = _INT32.unpack(self._take(_INT32.size, what, "int32, 4 bytes"))[0]
        return value

    def read_int64(self, what: str) -> int:
        value: int = _INT64.unpack(self._take(_INT64.size, what, "int64, 8 bytes"))[0]
        return value

    def read_guid(self, what: str) -> uuid.UUID:
        return uuid.UUID(bytes_le=bytes(self._take(16, what, "GUID, 16 bytes")))

    def read_bytes(self, size: int, what: str) -> bytes:
        """``size`` bytes, checked against what remains before they are copied."""
        return bytes(self._take(size, what))

    def read_varint(self, what: str) -> int:
        """``Read7BitEncodedInt`` as a length: 1 to 5 bytes, a value in 0..``INT32_MAX``."""
        start = self.offset
        value = 0
        for index in range(MAX_VARINT_BYTES):
            byte = self._take(1, what, f"byte {index + 1} of a 7-bit length")[0]
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if value > INT32_MAX:
                    raise self.fail(
                        f"expected {what} as a length in 0..{INT32_MAX}, got {value}",
                        offset=start,
                    )
                return value
        raise self.fail(
            f"expected {what} as a 7-bit length of at most {MAX_VARINT_BYTES} bytes, "
            "but its fifth byte still has the continuation bit set",
            offset=start,
        )

    def read_string(self, what: str) -> str:
        """A 7-bit length then that many bytes of valid UTF-8 (.NET would substitute U+FFFD)."""
        size = self.read_varint(f"{what} length")
        start = self.offset
        raw = self._take(size, what, f"{_bytes(size)} of UTF-8")
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(
                f"expected {what} as UTF-8, but byte {start + exc.start} is not ({exc.reason})",
                offset=start + exc.start,
            ) from None

    def read_optional_string(self, what: str) -> str | None:
        """``bool hasValue`` then, when true, the string."""
        if not self.read_bool(f"{what} presence flag"):
            return None
        return self.read_string(what)

    def expect_end(self, what: str) -> None:
        """Raise if bytes remain after ``what``."""
        if self.remaining:
            raise self.fail(f"expected the end after {what}, but {_remain(self.remaining)}")


def _is_dotnet_whitespace(char: str) -> bool:
    # .NET's Char.IsWhiteSpace, which String.Trim uses: categories Zs/Zl/Zp, TAB..CR, NEL.
    # Python's str.strip also strips U+001C..U+001F, which .NET keeps.
    return char in "\t\n\v\f\r\x85" or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def dotnet_trim(text: str) -> str:
    """``text`` without leading and trailing whitespace as .NET's ``String.Trim`` defines it."""
    start, end = 0, len(text)
    while start < end and _is_dotnet_whitespace(text[start]):
        start += 1
    while end > start and _is_dotnet_whitespace(text[end - 1]):
        end -= 1
    return text[start:end]
