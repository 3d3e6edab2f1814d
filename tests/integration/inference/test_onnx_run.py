"""`onnx_run` against models ingested through the real pipeline into real PostgreSQL: outputs
equal onnxruntime's on the same file, external data, the session cache, and every bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from sqlalchemy import Engine
from tests.integration.data_plane.data_plane_support import write_gguf, write_safetensors
from tests.integration.inference.onnx_support import (
    SHIPPED,
    add_tenant,
    context,
    ingest,
    inline,
    npy,
    shipped,
    write_custom_op_model,
    write_mlp,
)

from hartonomous.config import Settings
from hartonomous.inference.onnx_run import clear_sessions, run_onnx
from hartonomous.inference.tasks import InferenceInputError, InputAtom, Task, TaskResult
from hartonomous.inference.tensors import NPY_MEDIA_TYPE, tensor_from_npy
from hartonomous.json_types import JsonValue

TASK: Task = run_onnx


@pytest.fixture(autouse=True)
def cold_cache() -> Iterator[None]:
    clear_sessions()
    yield
    clear_sessions()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path / "data"})


def _direct(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.type.startswith("tensor(")]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _feeds(path: Path, seed: int = 3) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    return {
        i.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in i.shape]).astype(
            np.float32
        )
        for i in session.get_inputs()
    }


def _run(
    engine: Engine,
    settings: Settings,
    tenant: str,
    model: str | None,
    request: dict[str, JsonValue],
) -> TaskResult:
    return TASK(context(engine, settings, tenant, model, request))


def _outputs(result: TaskResult) -> dict[str, np.ndarray]:
    for file in result.output_files:
        assert file.media_type == NPY_MEDIA_TYPE
    return {file.name: tensor_from_npy(file.name, file.data) for file in result.output_files}


def _steps(result: TaskResult) -> dict[str, tuple[bool, dict[str, JsonValue]]]:
    return {step.operation: (step.cache_used, dict(step.detail)) for step in result.steps}


@pytest.mark.parametrize("name", SHIPPED)
def test_outputs_equal_onnxruntime_on_the_same_file(
    engine: Engine, settings: Settings, name: str
) -> None:
    tenant = add_tenant(engine, "acme")
    path = shipped(name)
    model = ingest(engine, tenant, path)[name]
    feeds = _feeds(path)

    result = _run(
        engine, settings, tenant, model, {"inputs": {k: inline(v) for k, v in feeds.items()}}
    )

    expected = _direct(path, feeds)
    outputs = _outputs(result)
    assert set(outputs) == set(expected)
    for key, array in expected.items():
        assert outputs[key].dtype == array.dtype
        np.testing.assert_array_equal(outputs[key], array)
    described = {o["name"]: o for o in result.output["outputs"]}  # type: ignore[index, union-attr]
    for key, array in expected.items():
        assert described[key]["dtype"] == array.dtype.name
        assert described[key]["shape"] == list(array.shape)
        assert np.array_equal(np.asarray(described[key]["values"], dtype=array.dtype), array)
    run_ms = next(step.duration_ms for step in result.steps if step.operation == "run")
    run_ns = round(Decimal(run_ms) * 1_000_000)
    assert result.usage_units > 0
    assert result.usage_units == (Decimal(run_ns) / 1_000_000_000).quantize(
        Decimal("0.000001"), ROUND_CEILING
    )
    assert result.embedding is None
    assert [step.operation for step in result.steps] == ["reconstruct", "session_create", "run"]
    assert _steps(result)["reconstruct"] == (
        False,
        {"bytes": path.stat().st_size, "model_bytes": path.stat().st_size, "external_files": 0},
    )


def test_a_classifier_s_map_output_is_omitted_unless_named(
    engine: Engine, settings: Settings
) -> None:
    tenant = add_tenant(engine, "acme")
    path = shipped("logreg_iris.onnx")
    model = ingest(engine, tenant, path)["logreg_iris.onnx"]
    request: dict[str, JsonValue] = {"inputs": {"float_input": inline(_feeds(path)["float_input"])}}

    result = _run(engine, settings, tenant, model, request)

    assert result.output["omitted_outputs"] == [
        {"name": "probabilities", "type": "seq(map(int64,tensor(float)))"}
    ]
    with pytest.raises(InferenceInputError, match="output 'probabilities' is seq"):
        _run(engine, settings, tenant, model, {**request, "outputs": ["probabilities"]})
    with pytest.raises(InferenceInputError, match="output 'score': the model has no such output"):
        _run(engine, settings, tenant, model, {**request, "outputs": ["score"]})
    only_label = _run(engine, settings, tenant, model, {**request, "outputs": ["label"]})
    assert [file.name for file in only_label.output_files] == ["label"]


def test_an_npy_atom_input_is_read_and_recorded(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    tenant = add_tenant(engine, "acme")
    path = shipped("sigmoid.onnx")
    x = _feeds(path)["x"]
    (tmp_path / "x.npy").write_bytes(npy(x))
    atoms = ingest(engine, tenant, path, tmp_path / "x.npy")

    result = _run(
        engine,
        settings,
        tenant,
        atoms["sigmoid.onnx"],
        {"inputs": {"x": {"atom_id": atoms["x.npy"]}}},
    )

    np.testing.assert_array_equal(_outputs(result)["y"], _direct(path, {"x": x})["y"])
    assert list(result.input_atoms) == [InputAtom("x", bytes.fromhex(atoms["x.npy"]))]
    assert _steps(result)["read_inputs"][1] == {"bytes": len(npy(x))}


@pytest.mark.parametrize("one_file", [True, False], ids=["one-data-file", "file-per-tensor"])
def test_external_data_model_round_trip(
    engine: Engine, settings: Settings, tmp_path: Path, one_file: bool
) -> None:
    tenant = add_tenant(engine, "acme")
    folder = tmp_path / "mlp"
    path = write_mlp(folder, one_file=one_file)
    assert len(list(folder.iterdir())) == (2 if one_file else 4)
    total = sum(file.stat().st_size for file in folder.iterdir())
    model = ingest(engine, tenant, folder)["mlp.onnx"]
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)

    result = _run(engine, settings, tenant, model, {"inputs": {"x": inline(x)}})

    np.testing.assert_array_equal(_outputs(result)["y"], _direct(path, {"x": x})["y"])
    cache_used, detail = _steps(result)["reconstruct"]
    assert (cache_used, detail["bytes"], detail["model_bytes"]) == (False, total, total)
    assert detail["external_files"] == (1 if one_file else 3)


@pytest.mark.parametrize(
    ("folder_name", "location"),
    [("modèles", "poids 1.bin"), ("plain", "sub/weights.bin")],
    ids=["non-ascii-and-space", "subfolder"],
)
def test_external_data_found_under_names_that_need_encoding(
    engine: Engine, settings: Settings, tmp_path: Path, folder_name: str, location: str
) -> None:
    tenant = add_tenant(engine, "acme")
    folder = tmp_path / folder_name
    (folder / "sub").mkdir(parents=True)
    path = write_mlp(folder, external=location)
    assert (folder / location).is_file()
    model = ingest(engine, tenant, folder)["mlp.onnx"]
    x = np.ones((2, 8), dtype=np.float32)

    result = _run(engine, settings, tenant, model, {"inputs": {"x": inline(x)}})

    np.testing.assert_array_equal(_outputs(result)["y"], _direct(path, {"x": x})["y"])


def test_external_data_not_held_beside_the_model_is_named(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    acme, globex = add_tenant(engine, "acme"), add_tenant(engine, "globex")
    folder = tmp_path / "mlp"
    write_mlp(folder)
    model = ingest(engine, acme, folder)["mlp.onnx"]
    x: dict[str, JsonValue] = {"inputs": {"x": inline(np.zeros((1, 8), dtype=np.float32))}}
    # globex holds the model file alone (its weights were beside it on disk, not ingested);
    # acme's holding of the weights lends globex nothing.
    assert ingest(engine, globex, folder / "mlp.onnx")["mlp.onnx"] == model

    with pytest.raises(
        InferenceInputError,
        match=rf"model {model}: external data file 'weights.bin' not found beside the model",
    ):
        _run(engine, settings, globex, model, x)
    # Once globex holds the same model again beside its weights, that holding is used.
    ingest(engine, globex, folder)
    assert _run(engine, settings, globex, model, x).output_files
    assert _run(engine, settings, acme, model, x).output_files


def test_second_call_uses_the_cached_session(engine: Engine, settings: Settings) -> None:
    tenant = add_tenant(engine, "acme")
    path = shipped("sigmoid.onnx")
    model = ingest(engine, tenant, path)["sigmoid.onnx"]
    request: dict[str, JsonValue] = {"inputs": {"x": inline(_feeds(path)["x"])}}

    first = _steps(_run(engine, settings, tenant, model, request))
    second = _steps(_run(engine, settings, tenant, model, request))

    assert (first["reconstruct"][0], first["session_create"][0]) == (False, False)
    assert (second["reconstruct"][0], second["session_create"][0]) == (True, True)
    assert second["reconstruct"][1]["bytes"] == 0

    off = Settings.model_validate(
        {"data_dir": settings.data_dir, "inference": {"session_cache_size": 0}}
    )
    third = _steps(_run(engine, off, tenant, model, request))
    assert third["reconstruct"][0] is False


def test_the_cache_keeps_the_most_recently_used_sessions(engine: Engine, tmp_path: Path) -> None:
    tenant = add_tenant(engine, "acme")
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "data", "inference": {"session_cache_size": 1}}
    )
    sigmoid, logreg = shipped("sigmoid.onnx"), shipped("logreg_iris.onnx")
    atoms = ingest(engine, tenant, sigmoid, logreg)
    sig_request: dict[str, JsonValue] = {"inputs": {"x": inline(_feeds(sigmoid)["x"])}}
    logreg_request: dict[str, JsonValue] = {
        "inputs": {"float_input": inline(_feeds(logreg)["float_input"])}
    }

    _run(engine, settings, tenant, atoms["sigmoid.onnx"], sig_request)
    kept = _steps(_run(engine, settings, tenant, atoms["sigmoid.onnx"], sig_request))
    _run(engine, settings, tenant, atoms["logreg_iris.onnx"], logreg_request)
    again = _steps(_run(engine, settings, tenant, atoms["sigmoid.onnx"], sig_request))

    assert kept["reconstruct"][0] is True
    assert again["reconstruct"][0] is False  # evicted by logreg_iris (capacity 1)


# --- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def sigmoid_model(engine: Engine) -> tuple[str, str]:
    tenant = add_tenant(engine, "acme")
    return tenant, ingest(engine, tenant, shipped("sigmoid.onnx"))["sigmoid.onnx"]


def _x(shape: tuple[int, ...] = (3, 4, 5), dtype: str = "float32") -> dict[str, JsonValue]:
    return inline(np.ones(shape, dtype=dtype))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": _x(), "z": _x()}, r"input 'z': the model has no such input \('x'\)"),
        ({}, r"missing input 'x' required by the model"),
        ({"x": _x(dtype="int64")}, r"input 'x': dtype int64 given, float32 expected"),
        ({"x": _x(dtype="float64")}, r"input 'x': dtype float64 given, float32 expected"),
        ({"x": _x((3, 4, 6))}, r"input 'x': shape \[3, 4, 6\] given, \[3, 4, 5\] expected"),
        ({"x": _x((3, 4))}, r"input 'x': shape \[3, 4\] given, \[3, 4, 5\] expected"),
        (
            {"x": {"dtype": "float32", "shape": [3, 4, 5], "data": [[1.0, 2.0]]}},
            r"input 'x': data has shape \[1, 2\], shape \[3, 4, 5\] declared",
        ),
        ({"x": {"atom_id": "00" * 32}}, r"input 'x': atom 0{64} not found"),
        ({"x": {"atom_id": "xyz"}}, r"input 'x': atom_id must be 64 hexadecimal digits"),
    ],
    ids=[
        "unknown-name",
        "missing",
        "dtype-int",
        "dtype-double",
        "shape-dim",
        "shape-rank",
        "inline-data-shape",
        "unknown-atom",
        "bad-atom-id",
    ],
)
def test_bad_inputs_are_named_before_running(
    engine: Engine,
    settings: Settings,
    sigmoid_model: tuple[str, str],
    inputs: dict[str, JsonValue],
    message: str,
) -> None:
    tenant, model = sigmoid_model

    with pytest.raises(InferenceInputError, match=message):
        _run(engine, settings, tenant, model, {"inputs": inputs})


@pytest.mark.parametrize(("batch", "shown"), [("batch", "batch"), (None, "None")])
def test_symbolic_and_unknown_dimensions_accept_any_size(
    engine: Engine, settings: Settings, tmp_path: Path, batch: str | None, shown: str
) -> None:
    tenant = add_tenant(engine, "acme")
    path = write_mlp(tmp_path / "mlp", batch=batch, external=None)
    model = ingest(engine, tenant, path)["mlp.onnx"]

    for rows in (1, 7):
        x = np.ones((rows, 8), dtype=np.float32)
        result = _run(engine, settings, tenant, model, {"inputs": {"x": inline(x)}})
        np.testing.assert_array_equal(_outputs(result)["y"], _direct(path, {"x": x})["y"])
    with pytest.raises(
        InferenceInputError, match=rf"input 'x': shape \[2, 3\] given, \[{shown}, 8\] expected"
    ):
        _run(engine, settings, tenant, model, {"inputs": {"x": _x((2, 3))}})


def test_inputs_over_the_size_limit_are_refused(
    engine: Engine, tmp_path: Path, sigmoid_model: tuple[str, str]
) -> None:
    tenant, model = sigmoid_model
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "data", "inference": {"max_input_bytes": 1024}}
    )
    big = np.ones((3, 4, 5), dtype=np.float32)  # 240 bytes: within
    assert _run(engine, settings, tenant, model, {"inputs": {"x": inline(big)}}).output_files
    (tmp_path / "big.npy").write_bytes(npy(np.ones((40, 40), dtype=np.float32)))
    atom = ingest(engine, tenant, tmp_path / "big.npy")["big.npy"]
    inline_big = {"dtype": "float32", "shape": [300], "data": [1.0] * 300}

    with pytest.raises(InferenceInputError, match=r"input 'x': the inputs reach 6528 bytes"):
        _run(engine, settings, tenant, model, {"inputs": {"x": {"atom_id": atom}}})
    with pytest.raises(InferenceInputError, match=r"max_input_bytes"):
        _run(engine, settings, tenant, model, {"inputs": {"x": inline_big}})


def test_an_atom_that_is_not_npy_is_refused(
    engine: Engine, settings: Settings, tmp_path: Path, sigmoid_model: tuple[str, str]
) -> None:
    tenant, model = sigmoid_model
    (tmp_path / "x.txt").write_text("1 2 3\n")
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    atoms = ingest(engine, tenant, tmp_path / "x.txt", tmp_path / "x.npz")

    for name in ("x.txt", "x.npz"):
        with pytest.raises(InferenceInputError, match=r"input 'x': the bytes are not a .npy array"):
            _run(engine, settings, tenant, model, {"inputs": {"x": {"atom_id": atoms[name]}}})


def test_a_model_over_the_size_limit_is_refused_before_reconstruction(
    engine: Engine, tmp_path: Path
) -> None:
    tenant = add_tenant(engine, "acme")
    folder = tmp_path / "mlp"
    write_mlp(folder)
    model = ingest(engine, tenant, folder)["mlp.onnx"]
    total = sum(file.stat().st_size for file in folder.iterdir())
    settings = Settings.model_validate(
        {"data_dir": tmp_path / "data", "inference": {"max_model_bytes": total - 1}}
    )

    with pytest.raises(
        InferenceInputError,
        match=rf"model {model} is {total} bytes \(external data included\), over the limit",
    ):
        _run(engine, settings, tenant, model, {"inputs": {"x": _x((1, 8))}})


def test_another_tenant_s_model_and_unknown_models_are_not_found(
    engine: Engine, settings: Settings, sigmoid_model: tuple[str, str], tmp_path: Path
) -> None:
    acme, model = sigmoid_model
    globex = add_tenant(engine, "globex")
    request: dict[str, JsonValue] = {"inputs": {"x": _x()}}
    (tmp_path / "x.npy").write_bytes(npy(np.ones((3, 4, 5), dtype=np.float32)))
    acme_input = ingest(engine, acme, tmp_path / "x.npy")["x.npy"]

    with pytest.raises(InferenceInputError, match=rf"^model {model} not found$"):
        _run(engine, settings, globex, model, request)
    with pytest.raises(InferenceInputError, match=rf"^model {'ab' * 32} not found$"):
        _run(engine, settings, acme, "ab" * 32, request)
    with pytest.raises(InferenceInputError, match=rf"^model {acme_input} not found \(the atom"):
        _run(engine, settings, acme, acme_input, request)
    own_model = ingest(engine, globex, shipped("sigmoid.onnx"))["sigmoid.onnx"]
    with pytest.raises(InferenceInputError, match=rf"input 'x': atom {acme_input} not found"):
        _run(engine, settings, globex, own_model, {"inputs": {"x": {"atom_id": acme_input}}})


@pytest.mark.parametrize(
    "case",
    [("tiny.safetensors", "safetensors", write_safetensors), ("tiny.gguf", "gguf", write_gguf)],
    ids=["safetensors", "gguf"],
)
def test_models_in_other_formats_cannot_run(
    engine: Engine,
    settings: Settings,
    tmp_path: Path,
    case: tuple[str, str, Callable[[Path], object]],
) -> None:
    name, model_format, write = case
    tenant = add_tenant(engine, "acme")
    write(tmp_path / name)
    model = ingest(engine, tenant, tmp_path / name)[name]

    with pytest.raises(
        InferenceInputError, match=rf"^model {model}: format {model_format} cannot run: only onnx$"
    ):
        _run(engine, settings, tenant, model, {"inputs": {}})


def test_a_missing_model_id_is_refused(
    engine: Engine, settings: Settings, sigmoid_model: tuple[str, str]
) -> None:
    tenant, _ = sigmoid_model
    with pytest.raises(InferenceInputError, match="onnx_run needs a model"):
        _run(engine, settings, tenant, None, {"inputs": {"x": _x()}})


def test_what_onnxruntime_refuses_is_reported_with_its_reason(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    tenant = add_tenant(engine, "acme")
    custom = ingest(engine, tenant, write_custom_op_model(tmp_path / "custom.onnx"))["custom.onnx"]
    # The input's width is symbolic, so only the MatMul inside the graph rejects 5 features.
    loose = ingest(engine, tenant, write_mlp(tmp_path / "loose", external=None, features="f"))

    with pytest.raises(
        InferenceInputError, match=rf"^model {custom}: onnxruntime cannot load it: .*Scramble"
    ):
        _run(engine, settings, tenant, custom, {"inputs": {"x": _x((2,))}})
    with pytest.raises(InferenceInputError, match=r": the run failed: .*MatMul"):
        _run(engine, settings, tenant, loose["mlp.onnx"], {"inputs": {"x": _x((1, 5))}})
