"""Declared pre- and post-processing, baked into the ONNX graph and mirrored in numpy.

Baking ``x * scale``, mean/std normalisation and softmax into the graph means every Open
Inference Protocol v2 runtime, Triton included, returns the same numbers for the same raw input,
without sharing any code. The graph is edited after export, so it works the same for eager,
TorchScript and ONNX sources. The numpy mirror gives the parity check its reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modeldeploy.api.model import ChannelLayout, Postprocessing, PostprocessingType, Preprocessing


def wants_softmax(post: Postprocessing) -> bool:
    return post.type == PostprocessingType.CLASSIFICATION and (
        post.classification is None or post.classification.softmax
    )


def scale_shift(pre: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """``(x * scale - mean) / std`` as one multiply-add ``x * a + b``, shaped to broadcast."""
    channels = len(pre.mean or pre.std or [1.0])
    view = (1, channels, 1, 1) if pre.channel_layout == ChannelLayout.NCHW else (1, 1, 1, channels)
    mean = np.asarray(pre.mean or [0.0] * channels, dtype=np.float32).reshape(view)
    std = np.asarray(pre.std or [1.0] * channels, dtype=np.float32).reshape(view)
    return (np.float32(pre.scale) / std).astype(np.float32), (-mean / std).astype(np.float32)


def normalise(x: np.ndarray, pre: Preprocessing | None) -> np.ndarray:
    if pre is None:
        return x
    a, b = scale_shift(pre)
    if x.ndim != 4:
        a, b = a.reshape(-1), b.reshape(-1)  # scale only (one channel) on non-image inputs
    normalised: np.ndarray = (x * a + b).astype(np.float32)
    return normalised


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    probabilities: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return probabilities


def bake(source: Path, target: Path, pre: Preprocessing | None, post: Postprocessing) -> None:
    """Write ``source`` with normalisation in front of its first input and softmax behind its
    first output, keeping the graph's input and output names."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    if pre is not None:
        name = graph.input[0].name
        inner = f"{name}__normalised"
        for node in graph.node:
            node.input[:] = [inner if i == name else i for i in node.input]
        a, b = scale_shift(pre)
        rank = len(graph.input[0].type.tensor_type.shape.dim)
        if rank != 4:
            a, b = a.reshape(-1), b.reshape(-1)
        graph.initializer.extend(
            [numpy_helper.from_array(a, f"{name}__a"), numpy_helper.from_array(b, f"{name}__b")]
        )
        graph.node.insert(
            0,
            helper.make_node(
                "Mul", [name, f"{name}__a"], [f"{name}__scaled"], name=f"{name}__scale"
            ),
        )
        graph.node.insert(
            1,
            helper.make_node(
                "Add", [f"{name}__scaled", f"{name}__b"], [inner], name=f"{name}__shift"
            ),
        )
    if wants_softmax(post):
        name = graph.output[0].name
        logits = f"{name}__logits"
        for node in graph.node:
            node.output[:] = [logits if o == name else o for o in node.output]
            node.input[:] = [logits if i == name else i for i in node.input]
        graph.node.append(
            helper.make_node("Softmax", [logits], [name], axis=-1, name=f"{name}__softmax")
        )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(target))
