"""The model repository's Triton side: the graph's signature and ``config.pbtxt``, so both our
runtime and KServe's Triton runtime load the artifact. Where artifacts are stored and how they
are published is ``modeldeploy.artifacts.store``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api.base import duration_seconds
from modeldeploy.api.serving import Batching
from modeldeploy.artifacts.manifest import ArtifactError, ArtifactManifest, BatchingRecord, Tensor

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


_ONNX_TYPES = {triton.removeprefix("TYPE_"): onnx for onnx, triton in _TRITON_TYPES.items()}


def from_manifest(tensor: Tensor) -> TensorSignature:
    """A manifest's tensor record as a signature (:class:`ArtifactError` for a datatype the
    onnxruntime backend has no config type for)."""
    if tensor.datatype not in _ONNX_TYPES:
        raise ArtifactError(f"tensor {tensor.name!r}: datatype {tensor.datatype} is not staged")
    return TensorSignature(tensor.name, _ONNX_TYPES[tensor.datatype], tuple(tensor.shape))


def batching_record(batching: Batching) -> BatchingRecord:
    """The manifest's batching, from the spec: what staging writes and the publisher expects."""
    return BatchingRecord(
        max_batch_size=batching.max_batch_size,
        max_queue_delay_microseconds=round(duration_seconds(batching.max_queue_delay) * 1e6),
        max_queue_size=batching.max_queue_size,
        request_timeout_milliseconds=round(duration_seconds(batching.request_timeout) * 1e3),
    )


def manifest_config(manifest: ArtifactManifest, gpu: bool) -> str:
    """The config.pbtxt that ``manifest``'s artifact must carry."""
    return triton_config(
        manifest.name,
        [from_manifest(t) for t in manifest.signature.inputs],
        [from_manifest(t) for t in manifest.signature.outputs],
        manifest.batching.max_batch_size,
        manifest.batching.max_queue_delay_microseconds,
        gpu,
    )


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
