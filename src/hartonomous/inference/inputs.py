"""A request's input as the caller sends it, checked and put in its stored form.

Pure: no database. Texts and tensor files become blobs to store (their atom id is the SHA-256
of their bytes, known before they are stored), so the stored ``input`` refers to them as
``{"atom_id": "<64 hex>"}``; atoms the caller names are returned as references for the
submission to check (visible to the tenant, within the size limit). The forms per task are in
docs/inference.md ("Inputs"); every refusal is an ``InferenceInputError`` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hartonomous.atoms.hashing import hex_to_digest
from hartonomous.inference.blobs import NPY_MEDIA_TYPE, TEXT_MEDIA_TYPE
from hartonomous.inference.canonical import canonical_json
from hartonomous.inference.tasks import InferenceInputError, InferenceTask
from hartonomous.inference.tensors import tensor_from_json, tensor_from_npy
from hartonomous.json_types import JsonValue
from hartonomous.search.planner import MAX_K
from hartonomous.search.service import MAX_QUERY_CHARACTERS

__all__ = [
    "DEFAULT_K",
    "MAX_CLASSIFICATION_K",
    "Blob",
    "PreparedInput",
    "atom_reference",
    "prepare_input",
]

MAX_CLASSIFICATION_K = 100
"""Most neighbours a classification may vote with."""
DEFAULT_K = {InferenceTask.SEMANTIC_SEARCH: 10, InferenceTask.CLASSIFICATION: 5}
_MAX_K = {InferenceTask.SEMANTIC_SEARCH: MAX_K, InferenceTask.CLASSIFICATION: MAX_CLASSIFICATION_K}
_TEXT_FIELDS: dict[InferenceTask, frozenset[str]] = {
    InferenceTask.TEXT_EMBEDDING: frozenset({"text"}),
    InferenceTask.SEMANTIC_SEARCH: frozenset({"text", "k"}),
    InferenceTask.CLASSIFICATION: frozenset({"text", "k"}),
}
_ONNX_FIELDS = frozenset({"inputs", "outputs"})
_INLINE_TENSOR = frozenset({"dtype", "shape", "data"})
_UNTEXTUAL = re.compile("[\x00\ud800-\udfff]")
_NAME = re.compile(r"^[^\x00-\x1f/]{1,256}$")


@dataclass(frozen=True)
class Blob:
    """Bytes the caller sent, to store as an input atom named ``name``."""

    name: str
    data: bytes
    media_type: str

    @property
    def atom_id(self) -> bytes:
        return hashlib.sha256(self.data).digest()


@dataclass
class PreparedInput:
    """The stored form of an input, what to store for it, and what it refers to.

    ``inline_bytes`` counts what travels in the JSON itself (inline tensors, canonical JSON
    bytes) plus the blobs; referenced atoms are counted by the submission from their sizes.
    """

    input: dict[str, JsonValue]
    blobs: list[Blob] = field(default_factory=list)
    references: list[tuple[str, bytes]] = field(default_factory=list)
    inline_bytes: int = 0


def atom_reference(atom_id: bytes) -> dict[str, JsonValue]:
    """How the stored input names an atom."""
    return {"atom_id": atom_id.hex()}


def prepare_input(
    task: InferenceTask,
    given: object,
    files: Mapping[str, bytes] | None = None,
) -> PreparedInput:
    """Check ``given`` (the caller's input JSON) for ``task`` and return its stored form.

    ``files`` are tensor files (.npy bytes) by input name, for ``onnx_run`` only.
    Raises ``InferenceInputError`` naming the field for an unknown field, a wrong type, a
    missing text, a bad atom id, a ``k`` out of range, a text that is empty or holds NUL
    or a lone surrogate, or a tensor sent with the request that is not one (inline: an
    unknown dtype, ragged lists, data of another shape than declared, values the dtype
    cannot hold; `.npy`: bytes that are not one array of a supported dtype). Tensors named
    by atom id are read by the worker.
    """
    if not isinstance(given, Mapping):
        raise InferenceInputError(f"input must be a JSON object, got {_kind(given)}")
    if task is InferenceTask.ONNX_RUN:
        return _onnx_input(given, files or {})
    if files:
        raise InferenceInputError(f"{task} takes no tensor files (they are for onnx_run)")
    return _text_input(task, given)


def _text_input(task: InferenceTask, given: Mapping[str, object]) -> PreparedInput:
    _refuse_unknown(given, _TEXT_FIELDS[task], task)
    prepared = PreparedInput(input={})
    if "text" not in given:
        raise InferenceInputError(f"{task} needs input 'text' (a string or an atom reference)")
    value = given["text"]
    if isinstance(value, str):
        _check_text(value, "text")
        if task is InferenceTask.SEMANTIC_SEARCH and len(value) > MAX_QUERY_CHARACTERS:
            raise InferenceInputError(
                f"input 'text' is {len(value)} characters, over the {MAX_QUERY_CHARACTERS} "
                "a search query may have"
            )
        blob = Blob("text", value.encode("utf-8"), TEXT_MEDIA_TYPE)
        prepared.blobs.append(blob)
        prepared.inline_bytes += len(blob.data)
        prepared.input["text"] = atom_reference(blob.atom_id)
    else:
        atom_id = _reference(value, "input 'text'")
        prepared.references.append(("text", atom_id))
        prepared.input["text"] = atom_reference(atom_id)
    if task in DEFAULT_K:
        prepared.input["k"] = _k(given.get("k", DEFAULT_K[task]), _MAX_K[task])
    return prepared


def _onnx_input(given: Mapping[str, object], files: Mapping[str, bytes]) -> PreparedInput:
    _refuse_unknown(given, _ONNX_FIELDS, InferenceTask.ONNX_RUN)
    tensors = given.get("inputs", {})
    if not isinstance(tensors, Mapping):
        raise InferenceInputError(f"input 'inputs' must be an object, got {_kind(tensors)}")
    prepared = PreparedInput(input={})
    stored: dict[str, JsonValue] = {}
    for name, value in tensors.items():
        _check_name(name)
        if name in files:
            raise InferenceInputError(f"input tensor {name!r} is given twice (inline and a file)")
        stored[name] = _tensor(prepared, name, value)
    for name, data in files.items():
        _check_name(name)
        stored[name] = _tensor_file(prepared, name, data)
    if not stored:
        raise InferenceInputError("onnx_run needs at least one input tensor in 'inputs'")
    prepared.input["inputs"] = stored
    if "outputs" in given:
        outputs = given["outputs"]
        if (
            not isinstance(outputs, list)
            or not outputs
            or not all(isinstance(name, str) and name for name in outputs)
            or len(set(outputs)) != len(outputs)
        ):
            raise InferenceInputError(
                "input 'outputs' must be a non-empty list of distinct output names "
                "(leave it out for every tensor output)"
            )
        prepared.input["outputs"] = list(outputs)
    return prepared


def _tensor(prepared: PreparedInput, name: str, value: object) -> JsonValue:
    what = f"input tensor {name!r}"
    if not isinstance(value, Mapping):
        raise InferenceInputError(f"{what} must be an object, got {_kind(value)}")
    keys = set(value)
    if keys == {"atom_id"}:
        atom_id = _reference(value, what)
        prepared.references.append((name, atom_id))
        return atom_reference(atom_id)
    if keys == {"npy_base64"}:
        encoded = value["npy_base64"]
        if not isinstance(encoded, str):
            raise InferenceInputError(f"{what}: npy_base64 must be a string")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InferenceInputError(f"{what}: npy_base64 is not Base64") from None
        return _tensor_file(prepared, name, data)
    if keys == _INLINE_TENSOR:
        inline: dict[str, JsonValue] = {
            "dtype": value["dtype"],
            "shape": value["shape"],
            "data": value["data"],
        }
        try:
            prepared.inline_bytes += len(canonical_json(inline))
        except ValueError:
            raise InferenceInputError(f"{what}: data holds NaN or an infinity") from None
        # Decoded now, so a tensor that is not one (an unknown dtype, ragged lists, data of
        # another shape than declared, a value the dtype cannot hold) is refused at submission
        # naming it, not found by the worker later.
        tensor_from_json(name, inline)
        return inline
    raise InferenceInputError(
        f"{what} must be {{'atom_id'}}, {{'npy_base64'}} or {{'dtype', 'shape', 'data'}}, "
        f"got the fields {sorted(keys)}"
    )


def _tensor_file(prepared: PreparedInput, name: str, data: bytes) -> JsonValue:
    """A `.npy` tensor the caller sent, read once here (a file that is not one `.npy` array
    of a supported dtype is refused naming the tensor), stored as an atom."""
    tensor_from_npy(name, data)
    blob = Blob(name, data, NPY_MEDIA_TYPE)
    prepared.blobs.append(blob)
    prepared.inline_bytes += len(data)
    return atom_reference(blob.atom_id)


def _refuse_unknown(given: Mapping[str, object], known: frozenset[str], task: str) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise InferenceInputError(
            f"{task} takes no input {', '.join(repr(name) for name in unknown)} "
            f"(it takes {', '.join(sorted(known))})"
        )


def _reference(value: object, what: str) -> bytes:
    if not isinstance(value, Mapping) or set(value) != {"atom_id"}:
        raise InferenceInputError(
            f"{what} must be a string or {{'atom_id': '<64 hex>'}}, got {_kind(value)}"
        )
    atom_id = value["atom_id"]
    if not isinstance(atom_id, str):
        raise InferenceInputError(f"{what}: atom_id must be a string")
    try:
        return hex_to_digest(atom_id)
    except ValueError as exc:
        raise InferenceInputError(f"{what}: {exc}") from None


def _check_text(value: str, what: str) -> None:
    if not value.strip():
        raise InferenceInputError(f"input {what!r} is empty")
    bad = _UNTEXTUAL.search(value)
    if bad is not None:
        raise InferenceInputError(
            f"input {what!r} holds U+{ord(bad.group()):04X} at offset {bad.start()}: "
            "a NUL or lone surrogate is not text"
        )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InferenceInputError(
            f"input tensor name {name!r} must be 1-256 characters without '/' or control characters"
        )


def _k(value: object, most: int) -> int:
    # JSON counts 5.0 as the integer 5 (JSON Schema's "integer"); stored as 5 either way.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InferenceInputError(f"input 'k' must be an integer in 1..{most}, got {value!r}")
    return value


def _kind(value: object) -> str:
    # JSON's names for the types, not Python's ("a int").
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), "null" if value is None else f"a {type(value).__name__}")
