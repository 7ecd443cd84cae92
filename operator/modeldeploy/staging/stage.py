"""``modeldeploy stage``: from a model URI to a verified artifact in the store, or a clear error.

fetch (``prepare``) → cache hit? → load → bake pre/post-processing → export ONNX → fp16/int8
→ parity against the source → golden samples → model repository (``build``) → verify and
publish (``publish``, manifest last).

In the operator's staging Job each step is its own container (``modeldeploy.staging.plan``
says why); on a laptop :func:`stage` runs them in one process. The same code either way.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.api.artifact import artifact_options
from modeldeploy.api.base import duration_seconds
from modeldeploy.api.model import ModelFormat
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.artifacts.drift import ReferenceProfile, profile_input, profile_predictions
from modeldeploy.artifacts.golden import write_golden
from modeldeploy.artifacts.manifest import (
    MANIFEST,
    ArtifactManifest,
    DriftWindowRecord,
    GoldenRecord,
    ModelFile,
    Signature,
    SourceRecord,
    Tensor,
    sha256_file,
)
from modeldeploy.staging import export, optimize, parity, processing, repository, samples
from modeldeploy.staging.errors import (
    LabelsMismatchError,
    ParityError,
    SourceUnavailableError,
)
from modeldeploy.staging.load import check_declared_format, load_torch
from modeldeploy.staging.plan import StageResult, StagingPlan
from modeldeploy.staging.prepare import prepare
from modeldeploy.staging.publish import publish

PARITY_SEED = 20261123
TOOLS = ("modeldeploy", "torch", "onnx", "onnxruntime", "kserve-storage")


def _tool_versions() -> dict[str, str]:
    found = {}
    for tool in TOOLS:
        try:
            found[tool] = version(tool)
        except PackageNotFoundError:
            found[tool] = "absent"
    return found


def stage(
    deployment: ModelDeployment,
    destination: str,
    code_dir: Path | None = None,
    workdir: Path | None = None,
    owner: str | None = None,
) -> StageResult:
    """Stage ``deployment``'s model into ``destination``; raises a StagingError subclass.

    The three steps of the staging Job, in one process (on a laptop, in tests): fetch and look
    for a verified artifact, build it on a miss, verify and publish it. ``owner``
    (``namespace.name``) marks the artifact as used by that ModelDeployment, so that deleting
    it can remove the artifacts only it used (see :data:`modeldeploy.artifacts.store.OWNERS`)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-stage-", dir=workdir) as tmp:
        inputs, staged = Path(tmp) / "inputs", Path(tmp) / "staged"
        plan = prepare(deployment, destination, inputs, code_dir)
        if not plan.cache_hit:
            build(deployment, plan, inputs, staged, code_dir)
        return publish(deployment, plan, staged, destination, owner, started)


def reference_profile(
    deployment: ModelDeployment,
    plan: StagingPlan,
    fetched: Path,
    session: Any,
    calibration: dict[str, np.ndarray] | None,
) -> ReferenceProfile | None:
    """The profile live traffic is measured against (docs/monitoring.md): from
    ``spec.monitoring.reference``, else from the calibration data, else none (random parity
    samples describe no real traffic). Inputs in the values the server receives; predictions
    are the final graph's first output on them."""
    spec = deployment.spec
    wanted = spec.monitoring.reference
    if wanted is not None and plan.reference is not None:
        try:
            data = samples.load_calibration(
                fetched / plan.reference, spec.model.inputs, wanted.samples
            )
        except ValueError as err:
            raise SourceUnavailableError(f"monitoring.reference {wanted.uri}: {err}") from err
        origin = wanted.uri
    elif calibration is not None:
        data, origin = calibration, "calibration"
    else:
        return None
    count = min(len(a) for a in data.values())
    if count < 2:
        raise SourceUnavailableError(f"reference data {origin} holds {count} sample(s)")
    scores = parity.run_onnx(session, data)[0]
    return ReferenceProfile(
        source=origin,
        samples=count,
        inputs=[profile_input(name, array) for name, array in data.items()],
        predictions=profile_predictions(scores),
    )


def build(
    deployment: ModelDeployment,
    plan: StagingPlan,
    fetched: Path,
    staged: Path,
    code_dir: Path | None = None,
) -> None:
    """The step that runs the tenant's code: from the model ``fetch`` left in ``fetched``
    (read only) to the artifact in ``staged/<key>/`` (nothing else is written), or a
    StagingError. It needs no store, no credentials and no network."""
    name = deployment.metadata.name
    spec = deployment.spec
    model_spec, opt = spec.model, spec.optimization
    inputs = model_spec.inputs
    pre = model_spec.preprocessing
    labels = plan.labels
    options = artifact_options(deployment)
    source_path = fetched / plan.source
    work = staged / ".work"
    work.mkdir(parents=True, exist_ok=True)

    batch = samples.random_batch(inputs, opt.parity.samples, PARITY_SEED, pre)
    calibration = None
    if opt.quantization is not None and opt.quantization.calibration is not None:
        cal = opt.quantization.calibration
        try:
            calibration = samples.load_calibration(
                fetched / str(plan.calibration), inputs, cal.samples
            )
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
        check_declared_format(source_path, ModelFormat.ONNX)
        shutil.copyfile(source_path, raw)
        reference = parity.run_onnx(parity.onnx_session(raw), model_input)
    else:
        module = load_torch(
            source_path,
            model_spec.format,
            model_spec.entrypoint,
            model_spec.entrypoint_args,
            code_dir,
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

    model_dir = staged / plan.key / name
    (model_dir / "1").mkdir(parents=True)
    shutil.copyfile(final, model_dir / "1" / "model.onnx")
    golden = write_golden(
        model_dir / "golden.npz",
        batch,
        dict(zip(output_names, parity.run_onnx(session, batch), strict=True)),
        opt.parity.golden_samples,
    )
    batching = repository.batching_record(spec.serving.batching)
    (model_dir / "config.pbtxt").write_text(
        repository.triton_config(
            name,
            graph_inputs,
            graph_outputs,
            batching.max_batch_size,
            batching.max_queue_delay_microseconds,
            spec.serving.resources.gpu > 0,
        )
    )
    if labels is not None:
        (model_dir / "labels.txt").write_text("\n".join(labels) + "\n")
    size = (model_dir / "1" / "model.onnx").stat().st_size
    post = model_spec.postprocessing
    profile = reference_profile(deployment, plan, fetched, session, calibration)
    manifest = ArtifactManifest(
        name=name,
        key=plan.key,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=SourceRecord(uri=model_spec.uri, digest=plan.digest, format=model_spec.format.value),
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
        batching=batching,
        parity={**report.to_json(), "atol": opt.parity.atol, "rtol": opt.parity.rtol},
        golden=GoldenRecord(
            file="golden.npz", count=golden, atol=opt.parity.atol, rtol=opt.parity.rtol
        ),
        reference=profile,
        drift_window=DriftWindowRecord(
            requests=spec.monitoring.window.requests,
            seconds=duration_seconds(spec.monitoring.window.duration),
        ),
        model=ModelFile(
            file="1/model.onnx",
            sha256=sha256_file(model_dir / "1" / "model.onnx"),
            size_bytes=size,
        ),
        tools=_tool_versions(),
    )
    (model_dir / MANIFEST).write_text(manifest.dumps())
    shutil.rmtree(work, ignore_errors=True)
