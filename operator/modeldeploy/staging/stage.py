"""``modeldeploy stage``: from a model URI to a verified artifact in the store, or a clear error.

fetch → (cache hit? stop) → load → bake pre/post-processing → export ONNX → fp16/int8 →
parity against the source → golden samples → model repository → publish (manifest last).

Runs inside the operator's staging Job, and on a laptop; the same code either way.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.api.artifact import artifact_options
from modeldeploy.api.base import duration_seconds
from modeldeploy.api.model import ModelFormat
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.artifacts.golden import write_golden
from modeldeploy.artifacts.manifest import (
    MANIFEST,
    ArtifactError,
    ArtifactManifest,
    BatchingRecord,
    GoldenRecord,
    ModelFile,
    Signature,
    SourceRecord,
    Tensor,
    parse_manifest,
    sha256_file,
)
from modeldeploy.artifacts.store import ArtifactStore, StoreError, content_key, open_store
from modeldeploy.staging import export, optimize, parity, processing, repository, samples, source
from modeldeploy.staging.errors import (
    DestinationError,
    LabelsMismatchError,
    ParityError,
    SourceUnavailableError,
    StagingError,
)
from modeldeploy.staging.load import check_declared_format, load_torch

PARITY_SEED = 20261123
TOOLS = ("modeldeploy", "torch", "onnx", "onnxruntime", "kserve-storage")


@dataclass(frozen=True)
class StageResult:
    """What the operator needs to know about the artifact; the summary printed as JSON."""

    uri: str
    key: str
    digest: str
    precision: str
    size_bytes: int
    cache_hit: bool
    parity: dict[str, Any] | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "Succeeded",
            "uri": self.uri,
            "key": self.key,
            "digest": self.digest,
            "precision": self.precision,
            "sizeBytes": self.size_bytes,
            "cacheHit": self.cache_hit,
            "parity": self.parity,
            "seconds": round(self.seconds, 2),
        }


def _tool_versions() -> dict[str, str]:
    found = {}
    for tool in TOOLS:
        try:
            found[tool] = version(tool)
        except PackageNotFoundError:
            found[tool] = "absent"
    return found


def _labels(deployment: ModelDeployment, workdir: Path) -> list[str] | None:
    post = deployment.spec.model.postprocessing
    options = post.classification or post.detection
    if options is None:
        return None
    if options.labels is not None:
        return list(options.labels)
    if options.labels_uri is None:
        return None
    fetched = source.fetch(options.labels_uri, workdir / "labels")
    return [line.strip() for line in fetched.path.read_text().splitlines() if line.strip()]


def _report_from(
    manifest: ArtifactManifest, store: ArtifactStore, key: str, started: float
) -> StageResult:
    return StageResult(
        uri=store.uri(key),
        key=key,
        digest=manifest.source.digest if manifest.source else "",
        precision=manifest.precision,
        size_bytes=manifest.model.size_bytes,
        cache_hit=True,
        parity=manifest.parity,
        seconds=time.monotonic() - started,
    )


def stage(
    deployment: ModelDeployment,
    destination: str,
    code_dir: Path | None = None,
    workdir: Path | None = None,
    owner: str | None = None,
) -> StageResult:
    """Stage ``deployment``'s model into ``destination``; raises a StagingError subclass.

    ``owner`` (``namespace.name``) marks the artifact as used by that ModelDeployment, so that
    deleting it can remove the artifacts only it used (see :data:`modeldeploy.artifacts.store.OWNERS`)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-stage-", dir=workdir) as tmp:
        work = Path(tmp)
        name = deployment.metadata.name
        spec = deployment.spec
        src = source.fetch(spec.model.uri, work / "source")
        try:
            store = open_store(destination)
            options = artifact_options(deployment)
            key = content_key(name, src.digest, options)
            existing = store.manifest(key, name)
            if existing is not None:  # a cache hit is checked like any manifest, not trusted
                result = _report_from(_checked(existing, key), store, key, started)
            else:
                result = _build(deployment, src, store, key, options, code_dir, work, started)
            if owner:
                store.add_owner(key, owner)
        except StoreError as err:
            raise DestinationError(str(err)) from err
        return result


def _checked(manifest: dict[str, Any], key: str) -> ArtifactManifest:
    try:
        return parse_manifest(json.dumps(manifest), f"artifact {key}")
    except ArtifactError as err:
        raise DestinationError(f"the stored artifact is not one staging wrote: {err}") from err


def _build(
    deployment: ModelDeployment,
    src: source.Source,
    store: ArtifactStore,
    key: str,
    options: dict[str, Any],
    code_dir: Path | None,
    work: Path,
    started: float,
) -> StageResult:
    name = deployment.metadata.name
    spec = deployment.spec
    model_spec, opt = spec.model, spec.optimization
    inputs = model_spec.inputs
    pre = model_spec.preprocessing
    labels = _labels(deployment, work)

    batch = samples.random_batch(inputs, opt.parity.samples, PARITY_SEED, pre)
    calibration = None
    if opt.quantization is not None and opt.quantization.calibration is not None:
        cal = opt.quantization.calibration
        fetched = source.fetch(cal.uri, work / "calibration")
        try:
            calibration = samples.load_calibration(fetched.path, inputs, cal.samples)
        except ValueError as err:
            raise SourceUnavailableError(f"calibration {cal.uri}: {err}") from err
    checked = (
        {k: np.concatenate([batch[k], calibration[k]]) for k in batch}
        if calibration is not None
        else batch
    )

    # The source model sees normalised inputs; the served graph gets raw ones and normalises
    # itself (processing.bake), so the reference is source(normalise(x)), softmaxed if declared.
    model_input = {**checked}
    if inputs:
        model_input[inputs[0].name] = processing.normalise(checked[inputs[0].name], pre)
    raw = work / "raw.onnx"
    if model_spec.format == ModelFormat.ONNX:
        check_declared_format(src.path, ModelFormat.ONNX)
        shutil.copyfile(src.path, raw)
        reference = parity.run_onnx(parity.onnx_session(raw), model_input)
    else:
        module = load_torch(
            src.path, model_spec.format, model_spec.entrypoint, model_spec.entrypoint_args, code_dir
        )
        example = samples.split(model_input, 2)[0]
        export.export_onnx(module, inputs, example, opt.opset, raw)
        reference = parity.run_torch(module, inputs, model_input)
    classification = model_spec.postprocessing.classification is not None
    if classification and labels is not None and reference[0].shape[-1] != len(labels):
        # Served as it is, every request would fail in top-k with an IndexError.
        raise LabelsMismatchError(
            f"{len(labels)} class labels, but the model's first output has "
            f"{reference[0].shape[-1]} classes (shape {list(reference[0].shape[1:])})"
        )
    softmax = processing.wants_softmax(model_spec.postprocessing)
    if softmax:
        reference[0] = processing.softmax(reference[0])
    fp32 = work / "fp32.onnx"
    processing.bake(raw, fp32, pre, model_spec.postprocessing)

    final = work / "model.onnx"
    optimize.optimize(fp32, final, opt.precision, opt.quantization, calibration)
    session = parity.onnx_session(final)
    graph_inputs, graph_outputs = repository.signature(session)
    output_names = [o.name for o in graph_outputs]
    candidate = parity.run_onnx(session, checked)
    report = parity.compare(reference, candidate, output_names, opt.parity)
    if not report.passed:
        raise ParityError(
            f"parity check failed for precision {opt.precision} on {report.samples} samples "
            f"(max |Δ| {report.max_abs_diff:.6g}, max rel {report.max_rel_diff:.6g}"
            + (
                f", top-1 agreement {report.top1_agreement:.4f}"
                if report.top1_agreement is not None
                else ""
            )
            + "): "
            + "; ".join(report.failures)
        )

    out = work / "out"
    model_dir = out / name
    (model_dir / "1").mkdir(parents=True)
    shutil.copyfile(final, model_dir / "1" / "model.onnx")
    golden = write_golden(
        model_dir / "golden.npz",
        batch,
        dict(zip(output_names, parity.run_onnx(session, batch), strict=True)),
        opt.parity.golden_samples,
    )
    batching = spec.serving.batching
    delay_us = round(duration_seconds(batching.max_queue_delay) * 1e6)
    (model_dir / "config.pbtxt").write_text(
        repository.triton_config(
            name,
            graph_inputs,
            graph_outputs,
            batching.max_batch_size,
            delay_us,
            spec.serving.resources.gpu > 0,
        )
    )
    if labels is not None:
        (model_dir / "labels.txt").write_text("\n".join(labels) + "\n")
    size = (model_dir / "1" / "model.onnx").stat().st_size
    post = model_spec.postprocessing
    manifest = ArtifactManifest(
        name=name,
        key=key,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=SourceRecord(uri=model_spec.uri, digest=src.digest, format=model_spec.format.value),
        options=options,
        precision=opt.precision.value,
        signature=Signature(
            inputs=[Tensor.model_validate(i.to_json()) for i in graph_inputs],
            outputs=[Tensor.model_validate(o.to_json()) for o in graph_outputs],
        ),
        preprocessing=(
            {
                **pre.model_dump(mode="json", by_alias=True, exclude_none=True),
                "bakedIntoGraph": True,
            }
            if pre is not None
            else None
        ),
        postprocessing={
            **post.model_dump(mode="json", by_alias=True, exclude_none=True),
            "softmaxBakedIntoGraph": softmax,
        },
        labels="labels.txt" if labels is not None else None,
        batching=BatchingRecord(
            max_batch_size=batching.max_batch_size,
            max_queue_delay_microseconds=delay_us,
            max_queue_size=batching.max_queue_size,
            request_timeout_milliseconds=round(duration_seconds(batching.request_timeout) * 1e3),
        ),
        parity={**report.to_json(), "atol": opt.parity.atol, "rtol": opt.parity.rtol},
        golden=GoldenRecord(
            file="golden.npz", count=golden, atol=opt.parity.atol, rtol=opt.parity.rtol
        ),
        model=ModelFile(
            file="1/model.onnx",
            sha256=sha256_file(model_dir / "1" / "model.onnx"),
            size_bytes=size,
        ),
        tools=_tool_versions(),
    )
    (model_dir / MANIFEST).write_text(manifest.dumps())
    parity_json: dict[str, Any] = {
        **report.to_json(),
        "atol": opt.parity.atol,
        "rtol": opt.parity.rtol,
    }
    store.publish(key, out)
    return StageResult(
        uri=store.uri(key),
        key=key,
        digest=src.digest,
        precision=opt.precision.value,
        size_bytes=size,
        cache_hit=False,
        parity=parity_json,
        seconds=time.monotonic() - started,
    )


TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4000


def summary_for_error(err: StagingError) -> dict[str, Any]:
    return {
        "status": "Failed",
        "reason": err.reason,
        "message": str(err),
        "exitCode": err.exit_code,
    }


def write_termination_log(summary: dict[str, Any], path: Path = TERMINATION_LOG) -> None:
    """The summary, under Kubernetes' 4 KB limit, where the kubelet reads it (if it exists)."""
    if not path.exists():
        return
    text = json.dumps(summary, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_LIMIT:
        excess = len(text.encode()) - TERMINATION_LIMIT + 20
        message = str(summary.get("message", ""))
        summary = {**summary, "message": message[: max(0, len(message) - excess)] + " …(truncated)"}
        text = json.dumps(summary, separators=(",", ":"))
    path.write_text(text)
