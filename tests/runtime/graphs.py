"""Small ONNX graphs the runtime tests stage with ``modeldeploy stage`` (format onnx).

- ``dtypes``: one input and one output per v2 datatype ONNX Runtime takes, so the REST codec
  is checked for each against onnxruntime itself.
- ``slow``: a model whose run time the client chooses and that fails on demand, so queueing,
  deadlines and batch failures happen when a test wants them, not by chance:
  ``y = x + floor(max(x))`` is computed by a Loop of ``floor(max(x))`` iterations, and
  ``z = table[i]`` fails in ONNX Runtime for an index outside the 10-entry table.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DTYPES = {
    "FP32": (TensorProto.FLOAT, "Abs", np.float32),
    "FP16": (TensorProto.FLOAT16, "Abs", np.float16),
    "INT64": (TensorProto.INT64, "Abs", np.int64),
    "INT32": (TensorProto.INT32, "Abs", np.int32),
    "INT8": (TensorProto.INT8, "Abs", np.int8),
    "UINT8": (TensorProto.UINT8, "Abs", np.uint8),
    "BOOL": (TensorProto.BOOL, "Not", np.bool_),
}
"""v2 datatype -> ONNX element type, the op applied, numpy dtype."""

WIDTH = 6


def dtypes_deployment(
    uri: str, name: str = "dtypes", namespace: str | None = None, **spec: Any
) -> dict[str, Any]:
    """The ModelDeployment document for the ``dtypes`` graph at ``uri``: one input per
    datatype; ``spec`` entries (``serving=...``) added to its spec."""
    inputs = [{"name": f"in_{t.lower()}", "shape": [WIDTH], "dtype": t} for t in DTYPES]
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": metadata,
        "spec": {"model": {"uri": uri, "format": "onnx", "inputs": inputs}, **spec},
    }  # fmt: skip


def dtypes_inputs(fp32: list[float], fill: int = 1) -> list[dict[str, Any]]:
    """A v2 request's inputs for the ``dtypes`` graph: ``fp32`` for FP32 (one row), ``fill``
    (True for BOOL) for every other datatype."""
    return [{"name": f"in_{t.lower()}", "shape": [1, WIDTH], "datatype": t,
             "data": fp32 if t == "FP32" else [True] * WIDTH if t == "BOOL" else [fill] * WIDTH}
            for t in DTYPES]  # fmt: skip


def infer_fp32(
    url: str, model: str, inputs: list[dict[str, Any]], host: str | None = None
) -> list[Any]:
    """The FP32 output of one v2 REST request to ``url`` (with ``Host: host``, as a gateway
    routes it)."""
    headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
    request = urllib.request.Request(f"{url}/v2/models/{model}/infer",
                                     json.dumps({"inputs": inputs}).encode(), headers)  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        outputs = json.load(response)["outputs"]
    return list(next(o for o in outputs if o["datatype"] == "FP32")["data"])


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


LOOKUP = 10
"""``dtypes(..., int64_lookup=True)`` answers INT64 values 0..LOOKUP-1 and fails on others."""


def dtypes(path: Path, fp32_op: str = "Abs", int64_lookup: bool = False) -> Path:
    """``out_<t> = Abs(in_<t>)`` (``Not`` for BOOL), each ``[N, WIDTH]``; ``fp32_op`` (e.g.
    ``Relu``) makes a second version whose FP32 answers tell it apart. ``int64_lookup`` makes
    ``out_int64 = table[in_int64]`` with ``table = 0, 1, ... LOOKUP-1``: Abs's answers for
    0..LOOKUP-1, and a failed run for any other value (ONNX Runtime refuses a Gather index out
    of bounds), so a version that errors on some requests only."""
    nodes, inputs, outputs, constants = [], [], [], []
    for name, (onnx_type, op, _) in DTYPES.items():
        tensor_in, tensor_out = f"in_{name.lower()}", f"out_{name.lower()}"
        inputs.append(helper.make_tensor_value_info(tensor_in, onnx_type, ["N", WIDTH]))
        outputs.append(helper.make_tensor_value_info(tensor_out, onnx_type, ["N", WIDTH]))
        if name == "INT64" and int64_lookup:
            constants.append(numpy_helper.from_array(np.arange(LOOKUP, dtype=np.int64), "table"))
            nodes.append(helper.make_node("Gather", ["table", tensor_in], [tensor_out]))
            continue
        nodes.append(helper.make_node(fp32_op if name == "FP32" else op, [tensor_in], [tensor_out]))
    return _save(helper.make_graph(nodes, "dtypes", inputs, outputs, constants), path)


def slow(path: Path) -> Path:
    """``x`` [N, 1] FP32 and ``i`` [N, 1] INT64 in; ``y = x + floor(max(x))`` after as many
    Loop iterations, and ``z = table[i]`` (table = 0.5, 1.5, ... 9.5)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["N", 1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N", 1]),
        ],
        [numpy_helper.from_array(np.ones((1, 1), np.float32), "one")],
    )
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
        helper.make_node("Floor", ["top"], ["floored"]),
        helper.make_node("Cast", ["floored"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body),
        helper.make_node("Gather", ["table", "i"], ["gathered"], axis=0),
        helper.make_node("Squeeze", ["gathered", "last"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("i", TensorProto.INT64, ["N", 1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 1]),
        ],
        [
            numpy_helper.from_array(np.array(True), "true"),
            numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(10, 1) + 0.5, "table"),
            numpy_helper.from_array(np.array([2], np.int64), "last"),
        ],
    )
    return _save(graph, path)
