"""Build an ONNX graph of a BERT sentence encoder straight from its safetensors weights.

The graph takes ``input_ids`` (int64, batch x length) and ``attention_mask`` (float32, 1 for a
real word piece, 0 for padding) and returns ``embedding``: the mean-pooled, L2-normalised sentence
vectors. One ONNX Runtime call therefore does the whole sentence-transformers pipeline
(Transformer, mean Pooling, Normalize). Only standard ONNX operators are used; ONNX Runtime's own
graph optimiser fuses what it can when the session is created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

# LayerNormalization is an ONNX operator from opset 17 on.
_OPSET = 17
# ONNX Runtime 1.17+ reads IR version 8; newer IR versions would refuse older runtimes for nothing.
_IR_VERSION = 8
# Added to the attention scores of padding positions: large enough that softmax gives them exactly
# zero weight in float32, finite so that no NaN can appear.
_PADDING_PENALTY = 1e9
# sentence-transformers clamps the token count the same way before dividing by it.
_MIN_TOKEN_COUNT = 1e-9

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "embedding"


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face ``config.json`` that the graph depends on."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_position_embeddings: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        # The graph below hard-codes these choices; refuse a model that makes others.
        expected = {
            "model_type": "bert",
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
        }
        for key, value in expected.items():
            if raw.get(key, value) != value:
                raise ValueError(f"{path}: {key} is {raw.get(key)!r}, only {value!r} is supported")
        return cls(
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            layer_norm_eps=float(raw["layer_norm_eps"]),
            max_position_embeddings=int(raw["max_position_embeddings"]),
        )


class _GraphBuilder:
    """Collects nodes and initialisers, naming every intermediate value uniquely."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def const(self, name: str, value: npt.ArrayLike, dtype: type[np.generic] = np.float32) -> str:
        # np.array copies into a fresh C-contiguous array (transposed weights included) and, unlike
        # np.ascontiguousarray, keeps scalars 0-d: a 1-d index would make Gather keep its axis.
        array = np.array(value, dtype=dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        self._counter += 1
        output = f"{op_type.lower()}_{self._counter}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def linear(self, x: str, weight: str, bias: str) -> str:
        return self.op("Add", self.op("MatMul", x, weight), bias)

    def layer_norm(self, x: str, scale: str, bias: str, eps: float) -> str:
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)


def build_sentence_encoder(weights_path: Path, config: BertConfig) -> onnx.ModelProto:
    """Return the ONNX model of BERT + mean pooling + L2 normalisation for these weights."""
    weights = load_file(str(weights_path))
    g = _GraphBuilder()
    hidden, heads, head_size = config.hidden_size, config.num_heads, config.head_size
    eps = config.layer_norm_eps

    g.const("one", 1.0)
    g.const("half", 0.5)
    g.const("inv_sqrt2", 1.0 / np.sqrt(2.0))
    g.const("padding_penalty", _PADDING_PENALTY)
    g.const("min_token_count", _MIN_TOKEN_COUNT)
    for index in range(3):
        g.const(f"index_{index}", index, np.int64)
    g.const("start_0", [0], np.int64)
    g.const("length_dim", [1], np.int64)
    g.const("axis_1", [1], np.int64)
    g.const("axes_1_2", [1, 2], np.int64)
    g.const("axis_last", [-1], np.int64)
    g.const("qkv_shape", [0, 0, 3, heads, head_size], np.int64)
    g.const("hidden_shape", [0, 0, hidden], np.int64)

    # Embeddings. Every input is a single segment, so the token-type row 0 is folded into the
    # position table once here instead of being gathered and added on every call.
    g.const("word_embeddings", weights["embeddings.word_embeddings.weight"])
    g.const(
        "position_embeddings",
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0],
    )
    length = g.op("Gather", g.op("Shape", INPUT_IDS), "length_dim")  # 1-D, as Slice wants
    positions = g.op("Slice", "position_embeddings", "start_0", length)
    x = g.layer_norm(
        g.op("Add", g.op("Gather", "word_embeddings", INPUT_IDS), positions),
        g.const("embeddings_ln_scale", weights["embeddings.LayerNorm.weight"]),
        g.const("embeddings_ln_bias", weights["embeddings.LayerNorm.bias"]),
        eps,
    )

    # (batch, 1, 1, length): 0 on real word pieces, -penalty on padding.
    score_mask = g.op(
        "Unsqueeze",
        g.op("Mul", g.op("Sub", ATTENTION_MASK, "one"), "padding_penalty"),
        "axes_1_2",
    )

    for layer in range(config.num_layers):
        x = _encoder_layer(g, x, score_mask, weights=weights, config=config, layer=layer)

    # Mean over real word pieces, then unit length (sentence-transformers Pooling + Normalize).
    mask = g.op("Unsqueeze", ATTENTION_MASK, "axis_last")
    summed = g.op("ReduceSum", g.op("Mul", x, mask), "axis_1", keepdims=0)
    count = g.op("Max", g.op("ReduceSum", mask, "axis_1", keepdims=0), "min_token_count")
    mean = g.op("Div", summed, count)
    g.nodes.append(helper.make_node("LpNormalization", [mean], [OUTPUT], axis=-1, p=2))

    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.FLOAT, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return model


def _encoder_layer(
    g: _GraphBuilder,
    x: str,
    score_mask: str,
    *,
    weights: dict[str, npt.NDArray[Any]],
    config: BertConfig,
    layer: int,
) -> str:
    prefix = f"encoder.layer.{layer}."
    name = f"layer{layer}_"

    def weight(key: str) -> npt.NDArray[Any]:
        return weights[prefix + key]

    # Query, key and value as one (hidden, 3*hidden) matmul; the 1/sqrt(head size) score scale is
    # folded into the query weights and bias so that no separate multiply is needed.
    scale = np.float32(1.0 / np.sqrt(config.head_size))
    parts = ("query", "key", "value")
    qkv_weight = np.concatenate([weight(f"attention.self.{p}.weight") for p in parts]).T.copy()
    qkv_bias = np.concatenate([weight(f"attention.self.{p}.bias") for p in parts])
    qkv_weight[:, : config.hidden_size] *= scale
    qkv_bias[: config.hidden_size] *= scale

    qkv = g.linear(x, g.const(name + "qkv_w", qkv_weight), g.const(name + "qkv_b", qkv_bias))
    # (batch, length, 3, heads, head) -> (3, batch, heads, length, head)
    qkv = g.op("Transpose", g.op("Reshape", qkv, "qkv_shape"), perm=[2, 0, 3, 1, 4])
    query, key, value = (g.op("Gather", qkv, f"index_{i}", axis=0) for i in range(3))
    scores = g.op(
        "Add", g.op("MatMul", query, g.op("Transpose", key, perm=[0, 1, 3, 2])), score_mask
    )
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), "hidden_shape")

    attention = g.linear(
        context,
        g.const(name + "attn_out_w", weight("attention.output.dense.weight").T),
        g.const(name + "attn_out_b", weight("attention.output.dense.bias")),
    )
    x = g.layer_norm(
        g.op("Add", attention, x),
        g.const(name + "attn_ln_scale", weight("attention.output.LayerNorm.weight")),
        g.const(name + "attn_ln_bias", weight("attention.output.LayerNorm.bias")),
        config.layer_norm_eps,
    )

    hidden = g.linear(
        x,
        g.const(name + "ffn_in_w", weight("intermediate.dense.weight").T),
        g.const(name + "ffn_in_b", weight("intermediate.dense.bias")),
    )
    # BERT's "gelu" is the exact erf form, not the tanh approximation.
    gelu = g.op(
        "Mul",
        g.op("Mul", hidden, g.op("Add", g.op("Erf", g.op("Mul", hidden, "inv_sqrt2")), "one")),
        "half",
    )
    output = g.linear(
        gelu,
        g.const(name + "ffn_out_w", weight("output.dense.weight").T),
        g.const(name + "ffn_out_b", weight("output.dense.bias")),
    )
    return g.layer_norm(
        g.op("Add", output, x),
        g.const(name + "out_ln_scale", weight("output.LayerNorm.weight")),
        g.const(name + "out_ln_bias", weight("output.LayerNorm.bias")),
        config.layer_norm_eps,
    )
