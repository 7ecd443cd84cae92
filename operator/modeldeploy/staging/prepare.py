"""Staging's first step, ``fetch``: our code only, no tenant code runs here.

It brings the model, its labels and its calibration samples into the inputs folder (which the
``stage`` step then only reads), computes the content key from the model's own bytes, and
looks for an artifact already at that key in the namespace's store. An artifact found there is
verified like a fresh one (:func:`modeldeploy.staging.publish.verified`), never trusted; one
that fails is rebuilt and replaced.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from modeldeploy.api.artifact import artifact_options
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.artifacts.manifest import sha256_file
from modeldeploy.artifacts.store import StoreError, content_key, open_store
from modeldeploy.staging import source
from modeldeploy.staging.errors import DestinationError, UntrustedArtifactError
from modeldeploy.staging.plan import StagingPlan
from modeldeploy.staging.publish import verified


def _inside(inputs: Path, fetched: source.Source, folder: str) -> tuple[str, str]:
    """``fetched`` as a path relative to ``inputs`` and its digest: a local source (a claim, a
    file) is copied in, since the ``stage`` step mounts no claims; the digest is of the copy."""
    if fetched.path.is_relative_to(inputs):
        return fetched.path.relative_to(inputs).as_posix(), fetched.digest
    copy = inputs / folder / "local" / fetched.path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fetched.path, copy, follow_symlinks=False)
    return copy.relative_to(inputs).as_posix(), sha256_file(copy)


def _labels(deployment: ModelDeployment, inputs: Path) -> list[str] | None:
    post = deployment.spec.model.postprocessing
    options = post.classification or post.detection
    if options is None:
        return None
    if options.labels is not None:
        return list(options.labels)
    if options.labels_uri is None:
        return None
    fetched = source.fetch(options.labels_uri, inputs / "labels")
    return [line.strip() for line in fetched.path.read_text().splitlines() if line.strip()]


def code_digest(code_dir: Path) -> str:
    """sha256 over the code folder's files (relative path and content, in order): a ConfigMap
    volume's files, whose ``..data`` links and ``..<timestamp>`` folders are the kubelet's."""
    digest = hashlib.sha256()
    files: list[Path] = []
    # Followed links: a key placed at pkg/mod.py is pkg -> ..data/pkg in a real volume.
    for folder, dirs, names in os.walk(code_dir, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        files += [Path(folder) / n for n in names if not n.startswith("..")]
    for file in sorted(files, key=lambda f: f.relative_to(code_dir).as_posix()):
        digest.update(file.relative_to(code_dir).as_posix().encode() + b"\0")
        digest.update(sha256_file(file).encode() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def prepare(
    deployment: ModelDeployment, destination: str, inputs: Path, code_dir: Path | None = None
) -> StagingPlan:
    """Fetch everything ``deployment``'s staging reads into ``inputs``, and write the plan.
    The content key covers the code in ``code_dir`` too, when the spec names code: the same
    weights built by other code are another artifact."""
    inputs.mkdir(parents=True, exist_ok=True)
    spec = deployment.spec
    model, digest = _inside(inputs, source.fetch(spec.model.uri, inputs / "source"), "source")
    calibration = None
    quantization = spec.optimization.quantization
    if quantization is not None and quantization.calibration is not None:
        fetched = source.fetch(quantization.calibration.uri, inputs / "calibration")
        calibration, _ = _inside(inputs, fetched, "calibration")
    reference = reference_digest = None
    if spec.monitoring.reference is not None:
        fetched = source.fetch(spec.monitoring.reference.uri, inputs / "reference")
        reference, reference_digest = _inside(inputs, fetched, "reference")
    options = artifact_options(deployment)
    if spec.model.code is not None and code_dir is not None:
        options = {**options, "codeDigest": code_digest(code_dir)}
    if reference_digest is not None:  # other data behind the same URI: another profile
        options = {**options, "referenceDigest": reference_digest}
    plan = StagingPlan(
        key=content_key(deployment.metadata.name, digest, options),
        digest=digest,
        source=model,
        labels=_labels(deployment, inputs),
        calibration=calibration,
        reference=reference,
    )
    try:
        found = verified(open_store(destination), plan.key, deployment, plan)
    except StoreError as err:
        raise DestinationError(str(err)) from err
    except UntrustedArtifactError as err:
        print(f"modeldeploy stage: {err}; it is staged again and replaced", file=sys.stderr)
        found = None
    if found is not None:
        plan = plan.model_copy(update={"cache_hit": True})
    plan.write(inputs)
    return plan
