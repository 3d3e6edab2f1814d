"""ONNX reader against models built with ``onnx.helper`` and saved with ``onnx.save``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hartonomous.ingest.models import ModelFormatError, read_model
from hartonomous.ingest.models.onnx_reader import read_onnx

_WEIGHT = np.arange(12, dtype=np.float32).reshape(4, 3)
_BIAS = [0.5, -1.0, 2.0]
_SHIFT = np.array([1, 2, 3], dtype=np.int64)


def _model(graph_name: str = "tiny_mlp") -> onnx.ModelProto:
    initializers = [
        numpy_helper.from_array(_WEIGHT, "encoder.layer.0.attention.self.query.weight"),
        # Typed repeated field (float_data) rather than raw_data: no contiguous span.
        helper.make_tensor("bias", TensorProto.FLOAT, [3], _BIAS),
        numpy_helper.from_array(_SHIFT, "shift"),
        numpy_helper.from_array(np.zeros((0,), dtype=np.float32), "nothing"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", initializers[0].name], ["h"]),
        helper.make_node("Add", ["h", "bias"], ["y"]),
        helper.make_node("Add", ["positions", "shift"], ["p"]),
    ]
    graph = helper.make_graph(
        nodes,
        graph_name,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("positions", TensorProto.INT64, [3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("p", TensorProto.INT64, [None]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hartonomous-tests"
    )
    onnx.helper.set_model_props(model, {"purpose": "unit test"})
    return model


def test_reads_graph_and_initializer_spans(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(_model(), path)

    description = read_model(path)

    assert description.format == "onnx"
    # Recognised from the BERT-style initializer name, ahead of the graph name.
    assert description.architecture == "bert"
    weight, bias, shift, nothing = description.tensors
    raw = path.read_bytes()
    assert (weight.dtype, weight.shape, weight.length) == ("f32", (4, 3), 48)
    assert weight.offset is not None
    assert raw[weight.offset : weight.offset + weight.length] == _WEIGHT.tobytes()
    assert (shift.dtype, shift.shape) == ("i64", (3,))
    assert shift.offset is not None
    assert raw[shift.offset : shift.offset + shift.length] == _SHIFT.tobytes()
    assert (bias.offset, bias.length, bias.metadata) == (None, 12, {"storage": "typed_fields"})
    assert (nothing.offset, nothing.length, nothing.parameter_count) == (None, 0, 0)
    assert description.parameter_count == 12 + 3 + 3
    assert description.dtypes == {"f32": 3, "i64": 1}

    metadata = description.metadata
    assert metadata["opset_imports"] == {"ai.onnx": 17}
    assert metadata["producer_name"] == "hartonomous-tests"
    assert metadata["graph_name"] == "tiny_mlp"
    assert metadata["metadata_props"] == {"purpose": "unit test"}
    assert metadata["node_count"] == 3
    assert metadata["op_types"] == {"Add": 2, "MatMul": 1}
    assert metadata["inputs"] == [
        {"name": "x", "kind": "tensor", "dtype": "f32", "shape": ["batch", 4]},
        {"name": "positions", "kind": "tensor", "dtype": "i64", "shape": [3]},
    ]
    assert metadata["outputs"] == [
        {"name": "y", "kind": "tensor", "dtype": "f32", "shape": ["batch", 3]},
        {"name": "p", "kind": "tensor", "dtype": "i64", "shape": [None]},
    ]
    json.dumps(metadata, allow_nan=False)


def test_architecture_falls_back_to_metadata_then_graph_name(tmp_path: Path) -> None:
    model = _model(graph_name="resnet_block")
    model.graph.initializer[0].name = "w"
    model.graph.node[0].input[1] = "w"
    path = tmp_path / "named.onnx"
    onnx.save(model, path)
    assert read_onnx(path).architecture == "resnet_block"

    onnx.helper.set_model_props(model, {"architecture": "mlp"})
    onnx.save(model, path)
    assert read_onnx(path).architecture == "mlp"

    model.ClearField("metadata_props")
    model.graph.name = "main_graph"
    onnx.save(model, path)
    assert read_onnx(path).architecture is None


def test_external_data_has_no_span_in_the_model_file(tmp_path: Path) -> None:
    path = tmp_path / "external.onnx"
    onnx.save(
        _model(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )

    description = read_onnx(path)

    weight = description.tensors[0]
    assert weight.offset is None
    assert weight.length == 48
    assert weight.metadata["storage"] == "external"
    assert weight.metadata["external_data"]["location"] == "weights.bin"


def test_rejects_external_data_that_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "external.onnx"
    onnx.save(_model(), path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").unlink()

    with pytest.raises(ModelFormatError, match=r"checker rejected.*weights\.bin"):
        read_onnx(path)


def test_rejects_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")

    with pytest.raises(ModelFormatError, match="empty"):
        read_model(path)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_rejects_truncated_model(tmp_path: Path, fraction: float) -> None:
    path = tmp_path / "cut.onnx"
    onnx.save(_model(), path)
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * fraction)])

    with pytest.raises(ModelFormatError):
        read_model(path)


def test_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\xff" * 64)

    with pytest.raises(ModelFormatError, match="not a valid ONNX protobuf"):
        read_model(path)


def test_rejects_model_the_checker_rejects(tmp_path: Path) -> None:
    model = _model()
    model.graph.node[0].input[0] = "undefined_input"
    path = tmp_path / "unchecked.onnx"
    onnx.save(model, path)

    with pytest.raises(ModelFormatError, match="checker rejected"):
        read_model(path)


def test_an_ir3_model_whose_initializers_are_not_inputs_is_read_as_ir4_reads_it(
    tmp_path: Path,
) -> None:
    """IR 3 wanted every initializer among the graph inputs; exporters of the time (and
    onnxruntime's own `mul_1.onnx`) did not always list them, and onnxruntime runs them."""
    model = _model()
    model.ir_version = 3
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 7))
    path = tmp_path / "ir3.onnx"
    onnx.save(model, path)
    with pytest.raises(onnx.checker.ValidationError, match="in initializer but not in graph"):
        onnx.checker.check_model(path)
    description = read_onnx(path)
    assert description.metadata["ir_version"] == 3
    assert description.metadata["checker_relaxed"] == (
        "IR 3 initializers not listed as graph inputs: checked as IR 4"
    )
    assert [tensor.name for tensor in description.tensors][:2] == [
        "encoder.layer.0.attention.self.query.weight",
        "bias",
    ]
    # Relaxing that one rule lets nothing else through.
    model.graph.node[0].input[0] = "undefined_input"
    onnx.save(model, path)
    with pytest.raises(ModelFormatError, match=r"checker rejected the model: .*undefined_input"):
        read_onnx(path)


def test_rejects_raw_data_longer_than_the_shape_needs(tmp_path: Path) -> None:
    # The checker rejects raw_data that is too short but lets surplus bytes through.
    model = _model()
    model.graph.initializer[2].raw_data = bytes(32)
    path = tmp_path / "short.onnx"
    onnx.save(model, path)

    with pytest.raises(ModelFormatError, match="raw_data holds 32 bytes but i64"):
        read_onnx(path)
