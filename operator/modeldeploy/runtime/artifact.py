"""Read a staged model repository: the manifest, the graph, golden samples and labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MANIFEST = "modeldeploy.json"


class ArtifactError(RuntimeError):
    """The folder is not a model repository written by ``modeldeploy stage``."""


def golden_arrays(
    source: Path | BinaryIO,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The golden inputs and outputs of a ``golden.npz`` (never unpickled: plain arrays only)."""
    with np.load(source, allow_pickle=False) as data:
        inputs = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
        outputs = {
            k.removeprefix("output:"): data[k] for k in data.files if k.startswith("output:")
        }
    return inputs, outputs


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, v2 datatype and shape with -1 for dynamic dims."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Artifact:
    """A model directory ``<root>/<name>/`` with its manifest."""

    directory: Path
    manifest: dict[str, Any]

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
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except ValueError as err:
            raise ArtifactError(f"{directory / MANIFEST}: not valid JSON: {err}") from err
        artifact = cls(directory, manifest)
        if not artifact.model_path.exists():
            raise ArtifactError(f"{artifact.model_path} is missing")
        return artifact

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.directory.name)

    @property
    def model_path(self) -> Path:
        return self.directory / str(self.manifest.get("model", {}).get("file", "1/model.onnx"))

    def _tensors(self, kind: str) -> list[TensorInfo]:
        return [
            TensorInfo(t["name"], t["datatype"], tuple(t["shape"]))
            for t in self.manifest["signature"][kind]
        ]

    @property
    def inputs(self) -> list[TensorInfo]:
        return self._tensors("inputs")

    @property
    def outputs(self) -> list[TensorInfo]:
        return self._tensors("outputs")

    @property
    def max_batch_size(self) -> int:
        return int(self.manifest.get("batching", {}).get("maxBatchSize", 1))

    @property
    def max_queue_delay_s(self) -> float:
        return float(self.manifest.get("batching", {}).get("maxQueueDelayMicroseconds", 0)) / 1e6

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        pre: dict[str, Any] | None = self.manifest.get("preprocessing")
        return pre

    @property
    def postprocessing(self) -> dict[str, Any]:
        post: dict[str, Any] = self.manifest.get("postprocessing") or {"type": "none"}
        return post

    def labels(self) -> list[str] | None:
        file = self.manifest.get("labels")
        if not file:
            return None
        return [line for line in (self.directory / file).read_text().splitlines() if line]

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, float]:
        """Golden inputs, their stored outputs, and the tolerance they are compared with."""
        spec = self.manifest.get("golden") or {}
        path = self.directory / spec.get("file", "golden.npz")
        if not path.exists():
            return {}, {}, 0.0, 0.0
        inputs, outputs = golden_arrays(path)
        return inputs, outputs, float(spec.get("atol", 1e-3)), float(spec.get("rtol", 1e-3))

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
