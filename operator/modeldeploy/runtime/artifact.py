"""Read a staged model repository: the manifest, the graph, golden samples and labels."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MANIFEST = "modeldeploy.json"


class ArtifactError(RuntimeError):
    """The folder is not a model repository written by ``modeldeploy stage``."""


GOLDEN_MAX_BYTES = 64 * 1024 * 1024
"""Most bytes the golden samples may hold, compressed or not: what the operator (shared by every
namespace) and the runtime will ever allocate for a tenant's ``golden.npz``."""
GOLDEN_MAX_ARRAYS = 64


def golden_arrays(
    source: Path | BinaryIO, max_bytes: int = GOLDEN_MAX_BYTES
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The golden inputs and outputs of a ``golden.npz``: plain arrays only (never unpickled),
    and at most ``max_bytes`` of them. Each array's size is read from its ``.npy`` header before
    anything is decompressed, and exactly that many bytes are read, so a deflate bomb is refused
    for what it declares and can never make this allocate more."""
    arrays: dict[str, np.ndarray] = {}
    used = 0
    try:
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            if len(members) > GOLDEN_MAX_ARRAYS:
                raise ArtifactError(
                    f"golden.npz holds {len(members)} arrays, more than {GOLDEN_MAX_ARRAYS}"
                )
            for member in members:
                name = member.filename.removesuffix(".npy")
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
                    else:
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
                    if dtype.hasobject:
                        raise ArtifactError(f"golden.npz: {name} holds Python objects")
                    size = math.prod(shape) * dtype.itemsize
                    used += size
                    if used > max_bytes:
                        raise ArtifactError(
                            f"golden.npz: {name} {tuple(shape)} {dtype} would make the golden "
                            f"samples {used} bytes, more than {max_bytes}"
                        )
                    data = stream.read(size)
                if len(data) != size:
                    raise ArtifactError(f"golden.npz: {name} is cut short")
                flat = np.frombuffer(data, dtype)
                arrays[name] = flat.reshape(shape, order="F") if fortran else flat.reshape(shape)
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise ArtifactError(f"golden.npz is not a plain .npz of arrays: {err}") from err
    inputs = {k.removeprefix("input:"): v for k, v in arrays.items() if k.startswith("input:")}
    outputs = {k.removeprefix("output:"): v for k, v in arrays.items() if k.startswith("output:")}
    return inputs, outputs


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, v2 datatype and shape with -1 for dynamic dims."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB blocks. Staging writes it into the manifest;
    the runtime checks it before loading."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


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

    def verify_model(self) -> None:
        """Refuse a graph that is not the one staging verified: the artifact store is written
        by staging pods, so its bytes are checked against the manifest's digest, not trusted."""
        declared = self.manifest.get("model", {}).get("sha256")
        if not declared:
            raise ArtifactError(f"{self.directory / MANIFEST} declares no model.sha256")
        found = sha256_file(self.model_path)
        if found != declared:
            raise ArtifactError(
                f"{self.model_path} has {found}, but the manifest declares {declared}: "
                "it was changed after staging verified it"
            )

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
    def max_queue_size(self) -> int:
        return int(self.manifest.get("batching", {}).get("maxQueueSize", 128))

    @property
    def request_timeout_s(self) -> float:
        return (
            float(self.manifest.get("batching", {}).get("requestTimeoutMilliseconds", 30_000)) / 1e3
        )

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
