"""Staging's last step, ``publish``: our code only. It checks what the ``stage`` step (the one
that ran the tenant's code) left in its per-run folder, and publishes it under the namespace's
prefix of the store.

An artifact is believed only when everything in it follows from the plan (written by ``fetch``,
which ran no tenant code) and the spec:

- exactly the files staging writes, plain files, no links;
- a manifest that parses, for this ModelDeployment, this key, this source digest and these
  options, with the spec's batching;
- ``model.onnx`` with the manifest's sha256 and size;
- golden samples that the bounded reader accepts;
- the labels ``fetch`` fetched, and the ``config.pbtxt`` the manifest implies.

The same check is applied to an artifact already in the store (a cache hit), and to one a
concurrent run published first. Parity numbers are the one thing it cannot re-derive: they come
from the step that loaded the tenant's model (docs/security.md says what that means).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from modeldeploy.api.artifact import artifact_options
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.artifacts.golden import GOLDEN_MAX_BYTES, golden_arrays
from modeldeploy.artifacts.manifest import (
    MANIFEST,
    ArtifactError,
    ArtifactManifest,
    parse_manifest,
)
from modeldeploy.artifacts.store import ArtifactStore, FolderStore, StoreError, open_store
from modeldeploy.staging import repository
from modeldeploy.staging.errors import DestinationError, UntrustedArtifactError
from modeldeploy.staging.plan import StageResult, StagingPlan

MODEL_FILE, GOLDEN_FILE, LABELS_FILE, CONFIG_FILE = (
    "1/model.onnx",
    "golden.npz",
    "labels.txt",
    "config.pbtxt",
)


def expected_files(name: str, labels: bool) -> set[str]:
    """The files of an artifact of ModelDeployment ``name``, relative to its key."""
    files = {MANIFEST, CONFIG_FILE, MODEL_FILE, GOLDEN_FILE, *([LABELS_FILE] if labels else [])}
    return {f"{name}/{f}" for f in files}


def _check(
    store: ArtifactStore, key: str, deployment: ModelDeployment, plan: StagingPlan
) -> ArtifactManifest | None:
    """The checks of the module docstring; ArtifactError names the first that fails."""
    name = deployment.metadata.name
    files = store.files(key)
    if files is None:
        return None
    where = f"{store.uri(key)}/{name}/{MANIFEST}"
    data = store.read(key, f"{name}/{MANIFEST}")
    if data is None:
        raise ArtifactError(f"{store.uri(key)} has no {MANIFEST}")
    manifest = parse_manifest(data, where)
    spec = deployment.spec
    facts = {
        "name": (manifest.name, name),
        "key": (manifest.key, plan.key),
        "source digest": (manifest.source.digest if manifest.source else None, plan.digest),
        "options": (manifest.options, artifact_options(deployment)),
        "batching": (manifest.batching, repository.batching_record(spec.serving.batching)),
        "model file": (manifest.model.file, MODEL_FILE),
        "golden file": (manifest.golden.file, GOLDEN_FILE),
        "labels file": (manifest.labels, LABELS_FILE if plan.labels is not None else None),
    }
    for what, (found, wanted) in facts.items():
        if found != wanted:
            raise ArtifactError(
                f"{where}: {what} is {str(found)[:200]!r}, not {str(wanted)[:200]!r}"
            )
    wanted_files = expected_files(name, plan.labels is not None)
    if set(files) != wanted_files:
        extra, missing = sorted(set(files) - wanted_files), sorted(wanted_files - set(files))
        raise ArtifactError(
            f"{store.uri(key)}: files {extra[:5]} are not staging's"
            if extra
            else f"{store.uri(key)}: {missing} missing"
        )
    model = f"{name}/{MODEL_FILE}"
    if files[model] != manifest.model.size_bytes:
        raise ArtifactError(
            f"{model} is {files[model]} bytes; the manifest says {manifest.model.size_bytes}"
        )
    digest = store.sha256(key, model)
    if digest != manifest.model.sha256:
        raise ArtifactError(f"{model} has {digest}; the manifest says {manifest.model.sha256}")
    golden = store.read(key, f"{name}/{GOLDEN_FILE}", GOLDEN_MAX_BYTES)
    golden_arrays(io.BytesIO(golden or b""))
    if plan.labels is not None:
        text = (store.read(key, f"{name}/{LABELS_FILE}") or b"").decode(errors="replace")
        if text != "\n".join(plan.labels) + "\n":
            raise ArtifactError(f"{name}/{LABELS_FILE} is not the labels fetched for this run")
    config = (store.read(key, f"{name}/{CONFIG_FILE}") or b"").decode(errors="replace")
    if config != repository.manifest_config(manifest, spec.serving.resources.gpu > 0):
        raise ArtifactError(f"{name}/{CONFIG_FILE} is not the one its manifest implies")
    return manifest


def verified(
    store: ArtifactStore, key: str, deployment: ModelDeployment, plan: StagingPlan
) -> ArtifactManifest | None:
    """The manifest of the artifact at ``key`` once every check passed; None when nothing is
    there. :class:`UntrustedArtifactError` says which check failed; a store that cannot be
    read raises :class:`StoreError`."""
    try:
        return _check(store, key, deployment, plan)
    except ArtifactError as err:
        raise UntrustedArtifactError(str(err)) from err


def publish(
    deployment: ModelDeployment,
    plan: StagingPlan,
    staged: Path,
    destination: str,
    owner: str | None = None,
    started: float | None = None,
) -> StageResult:
    """Verify and publish what ``stage`` built in ``staged`` (nothing, on a cache hit), record
    ``owner`` (``namespace.name``) on it, and say what the operator needs to know."""
    started = time.monotonic() if started is None else started
    try:
        store = open_store(destination)
        try:
            existing = verified(store, plan.key, deployment, plan)
            replace = False
        except UntrustedArtifactError:
            existing, replace = None, True
        if existing is None and plan.cache_hit:
            raise UntrustedArtifactError(f"the cache hit at {store.uri(plan.key)} is gone")
        manifest = existing
        if manifest is None:  # build's folder, checked like any other
            manifest = verified(FolderStore(staged, f"file://{staged}"), plan.key, deployment, plan)
            if manifest is None:
                raise UntrustedArtifactError(f"staging left no artifact {plan.key} in {staged}")
            store.publish(plan.key, staged / plan.key, replace=replace)
        if owner:
            store.add_owner(plan.key, owner)
    except StoreError as err:
        raise DestinationError(str(err)) from err
    return StageResult(
        uri=store.uri(plan.key),
        key=plan.key,
        digest=plan.digest,
        precision=manifest.precision,
        size_bytes=manifest.model.size_bytes,
        cache_hit=existing is not None,
        parity=manifest.parity or None,
        seconds=time.monotonic() - started,
    )
