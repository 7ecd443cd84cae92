"""The model repository's Triton side: the graph's signature and ``config.pbtxt``, so both our
runtime and KServe's Triton runtime load the artifact. Where artifacts are stored and how they
are published is ``modeldeploy.artifacts.store``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int8)": "TYPE_INT8",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(bool)": "TYPE_BOOL",
}


@dataclass(frozen=True)
class TensorSignature:
    """A graph input or output as the v2 protocol and config.pbtxt describe it."""

    name: str
    onnx_type: str
    shape: tuple[int, ...]  # with the batch dimension first, -1 where dynamic

    @property
    def datatype(self) -> str:
        return _TRITON_TYPES[self.onnx_type].removeprefix("TYPE_")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def signature(session: Any) -> tuple[list[TensorSignature], list[TensorSignature]]:
    """Inputs and outputs of an onnxruntime session."""

    def one(arg: Any) -> TensorSignature:
        shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        return TensorSignature(arg.name, arg.type, shape)

    return [one(a) for a in session.get_inputs()], [one(a) for a in session.get_outputs()]


def triton_config(
    name: str,
    inputs: list[TensorSignature],
    outputs: list[TensorSignature],
    max_batch_size: int,
    max_queue_delay_us: int,
    gpu: bool,
) -> str:
    """config.pbtxt for Triton's onnxruntime backend; dims exclude the batch dimension."""

    def tensors(items: list[TensorSignature]) -> str:
        return ",\n".join(
            f'  {{\n    name: "{t.name}"\n    data_type: {_TRITON_TYPES[t.onnx_type]}\n'
            f"    dims: [ {', '.join(str(d) for d in t.shape[1:])} ]\n  }}"
            for t in items
        )

    kind = "KIND_GPU" if gpu else "KIND_CPU"
    batching = (
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
        if max_batch_size > 1
        else ""
    )
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
        f"input [\n{tensors(inputs)}\n]\noutput [\n{tensors(outputs)}\n]\n{batching}"
        f"instance_group [\n  {{\n    count: 1\n    kind: {kind}\n  }}\n]\n"
    )
