"""Content addressing, atomic publication and the S3 store, against a real S3 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from modeldeploy.artifacts.manifest import MANIFEST
from modeldeploy.artifacts.store import FolderStore, S3Store, open_store
from modeldeploy.staging.stage import stage
from tests.staging.conftest import digits_deployment
from tests.support.controlplane import REPO_ROOT
from tests.support.s3 import S3Server

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests


def test_second_run_is_a_cache_hit_and_converts_nothing(files: Path, tmp_path: Path) -> None:
    spec = digits_deployment(f"file://{files / 'cnn.pt'}")
    first = stage(spec, str(tmp_path))
    model = Path(first.uri.removeprefix("file://")) / "digits" / "1" / "model.onnx"
    before = model.stat().st_mtime_ns
    second = stage(spec, str(tmp_path))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.uri == first.uri
    assert second.parity == first.parity
    assert model.stat().st_mtime_ns == before
    # Changing what shapes the artifact gives a new address; changing scaling does not.
    fp16 = stage(
        digits_deployment(
            f"file://{files / 'cnn.pt'}",
            "fp16",
            optimization={"parity": {"atol": 1e-2, "rtol": 1e-2}},
        ),
        str(tmp_path),
    )
    assert fp16.uri != first.uri
    scaled = digits_deployment(
        f"file://{files / 'cnn.pt'}", serving={"scaling": {"maxReplicas": 9}}
    )
    assert stage(scaled, str(tmp_path)).uri == first.uri


_CRASHER = """
import sys
from pathlib import Path
from modeldeploy.artifacts.store import open_store
open_store(sys.argv[1]).publish(sys.argv[2], Path(sys.argv[3]))
"""


def _staged_folder(root: Path, big_mb: int) -> Path:
    """A finished artifact folder with a large graph file, so publishing takes a moment."""
    model = root / "digits"
    (model / "1").mkdir(parents=True)
    with (model / "1" / "model.onnx").open("wb") as f:
        f.write(os.urandom(big_mb << 20))
    (model / MANIFEST).write_text(json.dumps({"name": "digits"}))
    return root


def _kill_when(proc: subprocess.Popen[bytes], started: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not started():
        assert proc.poll() is None, "publisher finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_crash_while_publishing_to_a_folder_leaves_nothing_complete(tmp_path: Path) -> None:
    staged = _staged_folder(tmp_path / "staged", 256)
    store_root = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(store_root), "digits-crash", str(staged)],
        cwd=REPO_ROOT,
    )
    _kill_when(
        proc,
        lambda: (
            store_root.exists() and any(p.name.startswith(".tmp-") for p in store_root.iterdir())
        ),
    )
    store = FolderStore(store_root, f"file://{store_root}")
    assert not (store_root / "digits-crash").exists()
    assert store.manifest("digits-crash", "digits") is None
    # The leftover is under a name that no reader ever takes for an artifact; publishing again works.
    store.publish("digits-crash", staged)
    assert store.manifest("digits-crash", "digits") == {"name": "digits"}


def test_crash_while_uploading_to_s3_leaves_no_manifest(s3: S3Server, tmp_path: Path) -> None:
    s3.client().create_bucket(Bucket="crash")
    staged = _staged_folder(tmp_path / "staged", 128)
    data = s3.workdir / "data" / "crash"
    env = {**os.environ, **s3.env}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, "s3://crash/artifacts", "digits-crash", str(staged)],
        cwd=REPO_ROOT,
        env=env,
    )
    # versitygw writes objects under data/<bucket>/; kill as soon as the upload has begun.
    _kill_when(proc, lambda: any(data.rglob("*")))
    store = S3Store("crash", "artifacts")
    for key, value in s3.env.items():
        os.environ[key] = value
    try:
        assert store.manifest("digits-crash", "digits") is None
        store.publish("digits-crash", staged)
        assert store.manifest("digits-crash", "digits") == {"name": "digits"}
    finally:
        for key in s3.env:
            os.environ.pop(key, None)


def test_s3_source_and_destination_round_trip(
    s3_env: S3Server, files: Path, tmp_path: Path
) -> None:
    client = s3_env.client()
    for bucket in ("models", "artifacts"):
        client.create_bucket(Bucket=bucket)
    client.upload_file(str(files / "cnn.pt"), "models", "digits/v1/cnn.pt")
    spec = digits_deployment("s3://models/digits/v1/cnn.pt")
    first = stage(spec, "s3://artifacts/modeldeploy")
    assert first.uri.startswith("s3://artifacts/modeldeploy/digits-")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="artifacts")["Contents"]}
    prefix = first.uri.removeprefix("s3://artifacts/")
    assert {
        f"{prefix}/digits/{name}"
        for name in ("config.pbtxt", "1/model.onnx", "golden.npz", MANIFEST, "labels.txt")
    } == keys
    assert stage(spec, "s3://artifacts/modeldeploy").cache_hit is True

    # What KServe's storage initializer would download serves the golden samples exactly.
    from kserve_storage import Storage

    local = Path(Storage.download(first.uri, str(tmp_path / "mnt-models")))
    session = ort.InferenceSession(
        str(local / "digits" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    golden = np.load(local / "digits" / "golden.npz")
    np.testing.assert_allclose(
        session.run(None, {"image": golden["input:image"]})[0], golden["output:output"], rtol=1e-6
    )


def test_store_uris() -> None:
    assert open_store("s3://bucket/a/b").uri("k") == "s3://bucket/a/b/k"
    assert open_store("pvc://artifacts/models").uri("k") == "pvc://artifacts/models/k"
    assert open_store("file:///srv/models").uri("k") == "file:///srv/models/k"
    with pytest.raises(Exception, match="unsupported artifact store 'ftp://x'"):
        open_store("ftp://x")


def _publish_owned(store: Any, tmp_path: Path, key: str, owners: list[str]) -> None:
    staged = tmp_path / f"staged-{key}"
    (staged / "digits").mkdir(parents=True)
    (staged / "digits" / MANIFEST).write_text(json.dumps({"name": "digits"}))
    store.publish(key, staged)
    for owner in owners:
        store.add_owner(key, owner)


def _release_cases(store: Any, tmp_path: Path) -> None:
    _publish_owned(store, tmp_path, "digits-aaaa", ["a.digits", "b.digits"])  # shared
    _publish_owned(store, tmp_path, "digits-bbbb", ["a.digits"])  # only a's
    _publish_owned(store, tmp_path, "digits-cccc", [])  # staged by hand: nobody's
    _publish_owned(store, tmp_path, "digits-x-dddd", ["a.digits-x"])  # another deployment
    assert store.release("digits", "a.digits") == ["digits-bbbb"]
    assert store.manifest("digits-bbbb", "digits") is None
    for kept in ("digits-aaaa", "digits-cccc", "digits-x-dddd"):
        assert store.manifest(kept, "digits") is not None
    assert store.release("digits", "a.digits") == []  # idempotent
    assert store.release("digits", "b.digits") == ["digits-aaaa"]
    assert store.manifest("digits-aaaa", "digits") is None
    assert store.manifest("digits-cccc", "digits") is not None


def test_folder_store_release_deletes_only_unshared_owned_artifacts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _release_cases(FolderStore(root, f"file://{root}"), tmp_path)
    assert sorted(p.name for p in (root / ".owners").iterdir()) == ["digits-x-dddd"]


def test_s3_store_release_through_the_cli(s3_env: S3Server, tmp_path: Path) -> None:
    s3_env.client().create_bucket(Bucket="owned")
    store = S3Store("owned", "artifacts")
    _release_cases(store, tmp_path)
    _publish_owned(store, tmp_path, "digits-eeee", ["ns.digits"])
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy", "artifacts", "release", "--name", "digits",
         "--owner", "ns.digits", "--dest", "s3://owned/artifacts"],
        capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, **s3_env.env}, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout) == {"released": "ns.digits", "deleted": ["digits-eeee"]}
    keys = {o["Key"] for o in s3_env.client().list_objects_v2(Bucket="owned")["Contents"]}
    assert not any("digits-eeee" in k for k in keys)
