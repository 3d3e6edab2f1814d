"""The kinds of AtomicStream segment and how names map to them (docs/provenance.md)."""

from __future__ import annotations

from enum import IntEnum

from hartonomous.provenance.dotnet import dotnet_trim

__all__ = ["SegmentKind"]


class SegmentKind(IntEnum):
    """What a segment holds; the value is the byte stored in the format."""

    Unknown = 0
    Input = 1
    Output = 2
    Embedding = 3
    Moderation = 4
    Artifact = 5
    Telemetry = 6
    Control = 7

    @classmethod
    def parse(cls, name: str | None) -> SegmentKind:
        """The kind ``name`` means: after trimming, a member name in any ASCII case, then an
        alias (prompt, completion, vector, guard, attachment, metrics); anything else (None
        included) is ``Unknown``.

        Unlike .NET's ``Enum.TryParse`` in the original, digits are not taken as a kind's number.
        """
        text = dotnet_trim(name or "")
        # ASCII only: str.lower would also map look-alikes such as the Kelvin sign to "k".
        return _KIND_BY_NAME.get(text.lower(), cls.Unknown) if text.isascii() else cls.Unknown


_KIND_BY_NAME: dict[str, SegmentKind] = {kind.name.lower(): kind for kind in SegmentKind} | {
    "prompt": SegmentKind.Input,
    "completion": SegmentKind.Output,
    "vector": SegmentKind.Embedding,
    "guard": SegmentKind.Moderation,
    "attachment": SegmentKind.Artifact,
    "metrics": SegmentKind.Telemetry,
}
