"""A staged model repository as the runtime sees it on disk (``/mnt/models``): its typed
manifest (``modeldeploy.artifacts``), the graph, golden samples and labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.artifacts.golden import golden_arrays
from modeldeploy.artifacts.manifest import (
    MANIFEST,
    ArtifactError,
    ArtifactManifest,
    Tensor,
    read_manifest,
    sha256_file,
)

__all__ = ["Artifact", "ArtifactError", "TensorInfo"]


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, v2 datatype and shape with -1 for dynamic dims."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _infos(tensors: list[Tensor]) -> list[TensorInfo]:
    return [TensorInfo(t.name, t.datatype, tuple(t.shape)) for t in tensors]


@dataclass(frozen=True)
class Artifact:
    """A model directory ``<root>/<name>/`` with its manifest."""

    directory: Path
    manifest: ArtifactManifest

    @classmethod
    def open(cls, root: Path, name: str | None = None) -> Artifact:
        """``root`` as KServe mounts it (``/mnt/models``), or the model directory itself."""
        if (root / MANIFEST).exists():
            candidates = [root]
        else:
            candidates = sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))
        if name is not None:
            candidates = [c for c in candidates if c.name == name]
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "none"
            raise ArtifactError(
                f"{root}: expected one model directory with {MANIFEST}"
                + (f" named {name!r}" if name else "")
                + f", found {found}"
            )
        directory = candidates[0]
        artifact = cls(directory, read_manifest(directory / MANIFEST))
        if not artifact.model_path.exists():
            raise ArtifactError(f"{artifact.model_path} is missing")
        return artifact

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def model_path(self) -> Path:
        return self.directory / self.manifest.model.file

    def verify_model(self) -> None:
        """Refuse a graph that is not the one staging verified: the artifact store is written
        by staging pods, so its bytes are checked against the manifest's digest, not trusted."""
        declared = self.manifest.model.sha256
        found = sha256_file(self.model_path)
        if found != declared:
            raise ArtifactError(
                f"{self.model_path} has {found}, but the manifest declares {declared}: "
                "it was changed after staging verified it"
            )

    @property
    def inputs(self) -> list[TensorInfo]:
        return _infos(self.manifest.signature.inputs)

    @property
    def outputs(self) -> list[TensorInfo]:
        return _infos(self.manifest.signature.outputs)

    @property
    def max_batch_size(self) -> int:
        return self.manifest.batching.max_batch_size

    @property
    def max_queue_delay_s(self) -> float:
        return self.manifest.batching.max_queue_delay_microseconds / 1e6

    @property
    def max_queue_size(self) -> int:
        return self.manifest.batching.max_queue_size

    @property
    def request_timeout_s(self) -> float:
        return self.manifest.batching.request_timeout_milliseconds / 1e3

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        return self.manifest.preprocessing

    @property
    def postprocessing(self) -> dict[str, Any]:
        return self.manifest.postprocessing or {"type": "none"}

    def labels(self) -> list[str] | None:
        if not self.manifest.labels:
            return None
        text = (self.directory / self.manifest.labels).read_text()
        return [line for line in text.splitlines() if line]

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, float]:
        """Golden inputs, their stored outputs, and the tolerance they are compared with."""
        spec = self.manifest.golden
        path = self.directory / spec.file
        if not path.exists():
            return {}, {}, 0.0, 0.0
        inputs, outputs = golden_arrays(path)
        return inputs, outputs, spec.atol, spec.rtol

    def triton_config(self) -> dict[str, Any]:
        """The model configuration as Triton's ``GET /v2/models/{name}/config`` returns it."""

        def tensors(items: list[TensorInfo]) -> list[dict[str, Any]]:
            return [
                {"name": t.name, "data_type": f"TYPE_{t.datatype}", "dims": list(t.shape[1:])}
                for t in items
            ]

        config: dict[str, Any] = {
            "name": self.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": self.max_batch_size,
            "input": tensors(self.inputs),
            "output": tensors(self.outputs),
        }
        if self.max_batch_size > 1:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": int(self.max_queue_delay_s * 1e6)
            }
        return config
