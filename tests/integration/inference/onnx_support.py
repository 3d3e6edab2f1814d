"""Helpers for the `onnx_run` tests: models onnxruntime ships, models generated here (with
external data), tenants and ingestion through the real pipeline, and task contexts."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.datasets import get_example
from sqlalchemy import Engine

from hartonomous.config import Settings
from hartonomous.inference.tasks import InferenceTask, TaskContext, TaskRequest
from hartonomous.ingest.pipeline import IngestRequest, JobOutcome, ingest_paths
from hartonomous.json_types import JsonValue
from hartonomous.security import ensure_tenant

# The ONNX models onnxruntime ships (mul_1.onnx is IR 3 with an initializer that is not a graph
# input: ingestion checks it as IR 4 does, docs/ingest.md).
SHIPPED = ("logreg_iris.onnx", "sigmoid.onnx", "mul_1.onnx")


def shipped(name: str) -> Path:
    return Path(get_example(name))


def add_tenant(engine: Engine, tenant_id: str) -> str:
    with engine.begin() as connection:
        ensure_tenant(connection, tenant_id, f"Tenant {tenant_id}")
    return tenant_id


def ingest(engine: Engine, tenant_id: str, *paths: Path) -> dict[str, str]:
    """Ingest through the real pipeline; file name -> atom id (hex), every file ingested."""
    outcome: JobOutcome = ingest_paths(engine, IngestRequest(tenant_id=tenant_id), list(paths))
    failed = [(file.path, file.error) for file in outcome.files if file.atom_id is None]
    assert not failed, failed
    return {Path(file.path).name: str(file.atom_id) for file in outcome.files}


def context(
    engine: Engine,
    settings: Settings,
    tenant_id: str,
    model_atom_id: str | None,
    request: dict[str, JsonValue],
) -> TaskContext:
    return TaskContext(
        engine=engine,
        settings=settings,
        request=TaskRequest(
            tenant_id=tenant_id,
            principal_id=None,
            inference_id=uuid.uuid4(),
            task=InferenceTask.ONNX_RUN,
            model_atom_id=bytes.fromhex(model_atom_id) if model_atom_id else None,
            input=request,
        ),
    )


def inline(array: np.ndarray) -> dict[str, JsonValue]:
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.tolist()}


def npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def mlp_arrays(seed: int, width: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.standard_normal((8, width), dtype=np.float32),
        "b1": rng.standard_normal((width,), dtype=np.float32),
        "w2": rng.standard_normal((width, 3), dtype=np.float32),
    }


def write_mlp(
    folder: Path,
    name: str = "mlp.onnx",
    *,
    seed: int = 7,
    external: str | None = "weights.bin",
    one_file: bool = True,
    batch: str | None = "batch",
    features: int | str = 8,
) -> Path:
    """``y = relu(x @ w1 + b1) @ w2`` with x ``[batch, features]`` (w1 takes 8 features);
    initializers in ``external``
    (one file, or one file per tensor when ``one_file`` is False) or inside the model."""
    arrays = mlp_arrays(seed)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [numpy_helper.from_array(array, key) for key, array in arrays.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if external is None:
        onnx.save(model, path)
    else:
        onnx.save(
            model,
            path,
            save_as_external_data=True,
            all_tensors_to_one_file=one_file,
            location=external,
            size_threshold=0,
        )
    return path


def write_custom_op_model(path: Path) -> Path:
    """A valid ONNX model whose one node is an operator of a domain onnxruntime does not know."""
    graph = helper.make_graph(
        [helper.make_node("Scramble", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    onnx.save(model, path)
    return path
