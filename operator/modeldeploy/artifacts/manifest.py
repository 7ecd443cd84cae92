"""The manifest (``modeldeploy.json``): what an artifact is, typed.

Staging builds an :class:`ArtifactManifest` and writes it last, so a folder whose manifest
exists is complete. The runtime and the operator read it through :func:`parse_manifest`, which
refuses anything that does not fit the model: the store is written by staging pods that run
tenants' code, so a manifest is checked, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from modeldeploy.artifacts.drift import ReferenceProfile
from modeldeploy.artifacts.errors import ArtifactError

__all__ = [
    "API_VERSION",
    "KIND",
    "MANIFEST",
    "MANIFEST_MAX_BYTES",
    "ArtifactError",
    "ArtifactManifest",
    "BatchingRecord",
    "GoldenRecord",
    "ModelFile",
    "RelativePath",
    "Signature",
    "SourceRecord",
    "Tensor",
    "parse_manifest",
    "read_manifest",
    "sha256_file",
]

MANIFEST = "modeldeploy.json"
MANIFEST_MAX_BYTES = 1024 * 1024
"""Most bytes read of one manifest (or any artifact file unless the caller allows more)."""
API_VERSION = "modeldeploy.io/v1alpha1"
KIND = "ArtifactManifest"


def _inside(path: str) -> str:
    """A path inside the artifact's folder: no ``.`` or ``..`` segment."""
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"{path!r} must stay inside the artifact's folder")
    return path


RelativePath = Annotated[
    str, Field(pattern=r"^[\w.-]+(/[\w.-]+)*$", max_length=256), AfterValidator(_inside)
]
FileName = Annotated[str, Field(pattern=r"^[\w.-]+$", max_length=256), AfterValidator(_inside)]


class _Part(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class SourceRecord(_Part):
    uri: Annotated[str, Field(max_length=4096)]
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    format: Annotated[str, Field(max_length=32)]


class Tensor(_Part):
    """One graph input or output: name, v2 datatype, shape with -1 for dynamic dimensions."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    datatype: Annotated[
        str, Field(pattern=r"^(FP32|FP16|FP64|INT64|INT32|INT16|INT8|UINT8|BOOL|BYTES)$")
    ]
    shape: Annotated[list[Annotated[int, Field(ge=-1)]], Field(max_length=16)]


class Signature(_Part):
    inputs: Annotated[list[Tensor], Field(min_length=1, max_length=64)]
    outputs: Annotated[list[Tensor], Field(min_length=1, max_length=64)]


class BatchingRecord(_Part):
    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 1
    max_queue_delay_microseconds: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    max_queue_size: Annotated[int, Field(ge=1, le=100_000)] = 128
    request_timeout_milliseconds: Annotated[int, Field(ge=1, le=600_000)] = 30_000


class GoldenRecord(_Part):
    file: FileName = "golden.npz"
    count: Annotated[int, Field(ge=0, le=100_000)] = 0
    atol: Annotated[float, Field(ge=0)] = 1e-3
    rtol: Annotated[float, Field(ge=0)] = 1e-3


class ModelFile(_Part):
    file: RelativePath = "1/model.onnx"
    sha256: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    size_bytes: Annotated[int, Field(ge=0)]


class DriftWindowRecord(_Part):
    requests: Annotated[int, Field(ge=10, le=100_000)] = 1000
    seconds: Annotated[float, Field(gt=0, le=30 * 86400)] = 600.0


class ArtifactManifest(_Part):
    """Everything the runtime and the operator need to know about one artifact."""

    api_version: str = API_VERSION
    kind: str = KIND
    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(max_length=253)] = ""
    created_at: str = ""
    source: SourceRecord | None = None
    options: dict[str, Any] = {}
    precision: Annotated[str, Field(max_length=16)] = "fp32"
    signature: Signature
    preprocessing: dict[str, Any] | None = None
    postprocessing: dict[str, Any] = {"type": "none"}
    labels: FileName | None = None
    batching: BatchingRecord = BatchingRecord()
    parity: dict[str, Any] = {}
    golden: GoldenRecord = GoldenRecord()
    model: ModelFile
    tools: dict[str, str] = {}
    reference: ReferenceProfile | None = None
    """What the model was staged on, in numbers (``artifacts/drift.py``): the runtime measures
    drift against it. None: drift is not monitored."""
    drift_window: DriftWindowRecord = DriftWindowRecord()
    """The live traffic the runtime compares with the reference."""

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def parse_manifest(data: bytes | str, where: str = MANIFEST) -> ArtifactManifest:
    """The manifest in ``data``; :class:`ArtifactError` naming the first problem otherwise."""
    if len(data) > MANIFEST_MAX_BYTES:
        raise ArtifactError(f"{where} is {len(data)} bytes, more than {MANIFEST_MAX_BYTES}")
    try:
        return ArtifactManifest.model_validate_json(data)
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{where}: {path}: {first['msg']}") from err


def read_manifest(path: Path) -> ArtifactManifest:
    try:
        with path.open("rb") as f:
            data = f.read(MANIFEST_MAX_BYTES + 1)
    except OSError as err:
        raise ArtifactError(f"{path}: {err}") from err
    return parse_manifest(data, str(path))


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB blocks: source digests, and the graph's
    digest in the manifest, which the runtime checks before loading."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"
