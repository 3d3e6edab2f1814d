"""docs/provenance.md's byte-level example is what the codec writes and reads."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hartonomous.provenance import AtomicStream, Segment, SegmentKind

DOC = Path(__file__).resolve().parents[3] / "docs" / "provenance.md"
BLOCK = r"<!-- {marker} -->\n```text\n(.*?)\n```"
# "offset  hex bytes  annotation": columns apart by two or more spaces, bytes by one.
LINE = re.compile(r"(\d+) {2,}((?:[0-9a-f]{2} )*[0-9a-f]{2})(?: {2,}(.*))?")


def block(marker: str) -> str:
    found = re.search(BLOCK.format(marker=marker), DOC.read_text(), re.DOTALL)
    assert found, f"docs/provenance.md has no block after <!-- {marker} -->"
    return found.group(1)


def documented_bytes(marker: str = "atomic-stream-example") -> bytes:
    data = bytearray()
    for line in block(marker).splitlines():
        parsed = LINE.fullmatch(line)
        assert parsed, f"not an 'offset  bytes  annotation' line: {line!r}"
        assert int(parsed.group(1)) == len(data), f"wrong offset on {line!r}"
        data += bytes.fromhex(parsed.group(2))
    return bytes(data)


def described_stream() -> AtomicStream:
    """The stream the doc's prose describes, built through the public API."""
    return (
        AtomicStream.create(
            uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
            created=datetime(2024, 1, 1, tzinfo=UTC),
            scope="text_generation",
            model="MiniLM",
            metadata='{"n":1}',
        )
        .with_segment(
            "prompt",
            "hi".encode("utf-16-le"),
            timestamp=datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
            content_type="text/plain; charset=utf-16",
        )
        .with_segment(
            "completion",
            b"ok",
            timestamp=datetime(2024, 1, 1, 0, 0, 2, tzinfo=UTC),
            metadata='{"tokens":1}',
        )
    )


def test_the_documented_dump_is_what_the_codec_writes() -> None:
    data = documented_bytes()
    assert len(data) == 143
    assert described_stream().to_bytes() == data


def test_the_documented_dump_reads_as_the_described_stream() -> None:
    stream = AtomicStream.from_bytes(documented_bytes())
    assert stream == described_stream()
    assert stream.segments[1] == Segment(
        SegmentKind.Output, 638_396_640_020_000_000, None, '{"tokens":1}', b"ok"
    )


def test_the_documented_text_form_is_what_the_codec_writes() -> None:
    text = block("atomic-stream-example-base64").strip()
    assert described_stream().to_base64() == text
    assert AtomicStream.from_base64(text) == described_stream()


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def inference_stream() -> AtomicStream:
    """The onnx_run stream the doc's second example describes, laid out as the job worker
    writes it."""
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    later = created + timedelta(microseconds=1600)
    model = "71f431c4e9321ec6fbeb158d02ed240459a7dcc98673fa79a4f439ce42efaf10"
    json_type = "application/json"
    tensor_in = {"data": [1, 2, 3, 4, 5, 6], "dtype": "float32", "shape": [3, 2]}
    tensor_out = {"data": [1, 4, 9, 16, 25, 36], "dtype": "float32", "shape": [3, 2]}
    request = {"input": {"inputs": {"X": tensor_in}}, "model": model, "task": "onnx_run"}
    control = {"attempt": 1, "attributes": {}, "cache_hit": False, "claimed_by": "worker-1"}
    telemetry = {
        "duration_ms": 1.5,
        "queued_ms": 3.0,
        "steps": [{"duration_ms": 0.9, "operation": "onnx_session.run"}],
    }
    metadata = {"inference_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "task": "onnx_run"}
    return (
        AtomicStream.create(
            uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            created=created,
            scope="acme",
            model=model,
            metadata=canonical(metadata).decode(),
        )
        .with_segment("Input", canonical(request), timestamp=created, content_type=json_type)
        .with_segment("Control", canonical(control), timestamp=created, content_type=json_type)
        .with_segment("Telemetry", canonical(telemetry), timestamp=later, content_type=json_type)
        .with_segment(
            "Output",
            canonical({"outputs": {"Y": tensor_out}}),
            timestamp=later,
            content_type=json_type,
        )
    )


def test_the_inference_stream_dump_is_what_the_codec_writes() -> None:
    data = documented_bytes("inference-stream-example")
    assert len(data) == 724
    assert inference_stream().to_bytes() == data
    assert AtomicStream.from_bytes(data) == inference_stream()
    text = block("inference-stream-example-base64").strip()
    assert inference_stream().to_base64() == text
