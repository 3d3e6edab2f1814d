"""The stored form of a request's input and its hash (pure: no database)."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid

import numpy as np
import pytest

from hartonomous.inference.canonical import canonical_request, input_hash
from hartonomous.inference.inputs import prepare_input
from hartonomous.inference.registry import TASKS, TaskNotAvailableError, registered, task_for
from hartonomous.inference.streams import StreamParts, build_stream
from hartonomous.inference.tasks import InferenceInputError, InferenceTask
from hartonomous.provenance import AtomicStream, SegmentKind


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_canonical_request_sorts_keys_and_drops_whitespace() -> None:
    request = canonical_request("semantic_search", None, {"text": {"atom_id": "ab"}, "k": 2})
    assert (
        request
        == b'{"input":{"k":2,"text":{"atom_id":"ab"}},"model":null,"task":"semantic_search"}'
    )
    assert input_hash("semantic_search", None, {"k": 2, "text": {"atom_id": "ab"}}) == (
        hashlib.sha256(request).digest()
    )
    assert (
        canonical_request("t", None, {"text": "é"})
        == '{"input":{"text":"é"},"model":null,"task":"t"}'.encode()
    )


def test_a_text_becomes_a_blob_named_by_its_sha256_and_defaults_are_filled() -> None:
    prepared = prepare_input(InferenceTask.CLASSIFICATION, {"text": "héllo"})
    (blob,) = prepared.blobs
    assert blob.data == "héllo".encode()
    assert prepared.input == {"text": {"atom_id": hashlib.sha256(blob.data).hexdigest()}, "k": 5}
    assert prepared.inline_bytes == len(blob.data)
    # The default given explicitly, or as 5.0, is the same request.
    for k in (5, 5.0):
        same = prepare_input(InferenceTask.CLASSIFICATION, {"text": "héllo", "k": k})
        assert same.input == prepared.input


def test_an_atom_reference_is_checked_later_not_stored() -> None:
    atom = "cd" * 32
    prepared = prepare_input(InferenceTask.TEXT_EMBEDDING, {"text": {"atom_id": atom}})
    assert prepared.blobs == []
    assert prepared.references == [("text", bytes.fromhex(atom))]


def test_onnx_tensors_in_their_three_forms() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3, dtype=np.float32), allow_pickle=False)
    npy = buffer.getvalue()
    prepared = prepare_input(
        InferenceTask.ONNX_RUN,
        {
            "inputs": {
                "a": {"npy_base64": base64.b64encode(npy).decode()},
                "b": {"dtype": "int64", "shape": [2], "data": [1, 2]},
                "c": {"atom_id": "ef" * 32},
            },
            "outputs": ["y"],
        },
        files={"d": npy},
    )
    digest = hashlib.sha256(npy).hexdigest()
    assert prepared.input == {
        "inputs": {
            "a": {"atom_id": digest},
            "b": {"dtype": "int64", "shape": [2], "data": [1, 2]},
            "c": {"atom_id": "ef" * 32},
            "d": {"atom_id": digest},
        },
        "outputs": ["y"],
    }
    assert [blob.name for blob in prepared.blobs] == ["a", "d"]


@pytest.mark.parametrize(
    ("task", "given", "files", "message"),
    [
        (InferenceTask.ONNX_RUN, {"inputs": {}}, {}, "needs at least one input tensor"),
        (InferenceTask.ONNX_RUN, {"inputs": {"x/y": {"atom_id": "ab" * 32}}}, {}, "without '/'"),
        (InferenceTask.ONNX_RUN, {"inputs": {"x": {"npy_base64": "!!"}}}, {}, "not Base64"),
        # A tensor sent with the request is decoded at submission, naming it.
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"dtype": "float32", "shape": [-1], "data": []}}},
            {},
            "input 'x': shape must be a list of non-negative integers",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"dtype": "f4", "shape": [1], "data": [1.0]}}},
            {},
            "input 'x': dtype 'f4' is not one of",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"w": {"dtype": "float32", "shape": [2, 2], "data": [[1, 2], [3]]}}},
            {},
            "input 'w': data is ragged",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"dtype": "float32", "shape": [3], "data": [1, 2]}}},
            {},
            "input 'x': data has shape [2], shape [3] declared",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"dtype": "uint8", "shape": [1], "data": [300]}}},
            {},
            "input 'x': values do not fit uint8",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"dtype": "int64", "shape": [1], "data": ["1"]}}},
            {},
            "input 'x': dtype int64 needs numbers, not text",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"npy_base64": base64.b64encode(b"1 2 3").decode()}}},
            {},
            "input 'x': the bytes are not a .npy array",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {}},
            {"y": _npy(np.arange(3, dtype=np.float32))[:-4]},
            "input 'y': unreadable .npy array",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {}},
            {"y": _npy(np.array([1 + 2j]))},
            "input 'y': .npy dtype complex128 is not one of",
        ),
        (InferenceTask.ONNX_RUN, {"inputs": {"x": {"data": []}}}, {}, "got the fields ['data']"),
        (
            InferenceTask.ONNX_RUN,
            {"inputs": {"x": {"atom_id": "ab" * 32}}},
            {"x": b""},
            "given twice",
        ),
        (InferenceTask.ONNX_RUN, {"inputs": [1]}, {}, "'inputs' must be an object"),
        # JSON's type names, never Python's ("got a int").
        (InferenceTask.ONNX_RUN, {"inputs": 5}, {}, "must be an object, got an integer"),
        (InferenceTask.ONNX_RUN, {"inputs": 5.5}, {}, "must be an object, got a number"),
        (InferenceTask.TEXT_EMBEDDING, {"text": 5}, {}, "got an integer"),
        (
            InferenceTask.ONNX_RUN,
            {"outputs": [""], "inputs": {"x": {"atom_id": "ab" * 32}}},
            {},
            "list of distinct output names",
        ),
        # An empty list: onnxruntime would read it as "every output"; refused, not a 500.
        (
            InferenceTask.ONNX_RUN,
            {"outputs": [], "inputs": {"x": {"atom_id": "ab" * 32}}},
            {},
            "must be a non-empty list",
        ),
        (
            InferenceTask.ONNX_RUN,
            {"outputs": ["y", "y"], "inputs": {"x": {"atom_id": "ab" * 32}}},
            {},
            "list of distinct output names",
        ),
        (InferenceTask.TEXT_EMBEDDING, {"text": "x"}, {"x": b""}, "takes no tensor files"),
        (InferenceTask.TEXT_EMBEDDING, {}, {}, "needs input 'text'"),
        (InferenceTask.SEMANTIC_SEARCH, {"text": "x" * 4001}, {}, "over the 4000"),
        (InferenceTask.SEMANTIC_SEARCH, {"text": "x", "k": True}, {}, "input 'k'"),
        (InferenceTask.TEXT_EMBEDDING, {"text": "\ud800"}, {}, "U+D800"),
    ],
)
def test_bad_input_names_the_field(
    task: InferenceTask, given: object, files: dict[str, bytes], message: str
) -> None:
    with pytest.raises(InferenceInputError) as refused:
        prepare_input(task, given, files)
    assert message in str(refused.value)


def test_the_registry_refuses_a_missing_task_and_restores_after_a_stand_in() -> None:
    original = dict(TASKS)
    with (
        registered(InferenceTask.TEXT_EMBEDDING, None),
        pytest.raises(TaskNotAvailableError, match="text_embedding is not available"),
    ):
        task_for(InferenceTask.TEXT_EMBEDDING)
    assert original == TASKS


def test_a_stream_carries_the_parts_in_order() -> None:
    stream_id = uuid.uuid4()
    parts = StreamParts(
        inference_id=uuid.uuid4(),
        tenant_id="acme",
        task="text_embedding",
        model="minilm-l6-v2",
        request=b'{"input":{}}',
        control={"cache_hit": False},
        embedding=[0.5, -0.25],
        telemetry={"duration_ms": 1.5},
        output={"ok": True},
    )
    stream = AtomicStream.from_bytes(build_stream(parts, stream_id).to_bytes())
    assert stream.stream_id == stream_id
    assert (stream.scope, stream.model) == ("acme", "minilm-l6-v2")
    kinds = [s.kind for s in stream.segments]
    assert kinds == [
        SegmentKind.Input,
        SegmentKind.Control,
        SegmentKind.Embedding,
        SegmentKind.Telemetry,
        SegmentKind.Output,
    ]
    assert np.frombuffer(stream.segments[2].payload, dtype="<f4").tolist() == [0.5, -0.25]
    assert stream.segments[4].payload == b'{"ok":true}'
