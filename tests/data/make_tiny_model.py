"""Writes tests/data/tiny_expression.onnx: a 2 KB expression model (conv, pool, linear; fixed random weights)
with the full metadata, so that the runtime's tests run without torch. Needs the `onnx` package.

    python tests/data/make_tiny_model.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.metadata import ModelMetadata

LABELS = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
OUT = Path(__file__).resolve().parent / "tiny_expression.onnx"


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {"conv_w": rng.normal(0, 0.3, (8, 1, 3, 3)), "conv_b": rng.normal(0, 0.1, 8),
               "fc_w": rng.normal(0, 0.3, (7, 8)), "fc_b": rng.normal(0, 0.1, 7)}
    nodes = [helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], strides=[4, 4], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny_expression",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fer-edge tests")
    model.ir_version = 8
    meta = ModelMetadata(labels=LABELS, input_size=48, channels=1, mean=[0.5], std=[0.25], arch="tiny-test",
                         dataset="none", source_commit="test fixture")
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), str(OUT))
    print(f"{OUT}: {OUT.stat().st_size} bytes")
