"""The README's quick start, run word for word: the shell block under its ``quickstart`` marker,
with bash, against the test cluster. What a person at a cluster would have is here for real:
``kubectl`` (the envtest build), the ``aws`` CLI, ``kubectl mdep`` (this checkout's entry
point), a bucket of their own on an S3 server (versitygw, with its credentials in the
environment), and the operator installed with ``artifactStore.secretName=modeldeploy-s3``
(here a process, as elsewhere in these tests). The model goes from the user's bucket through a
staging Job to a served InferenceService, and the block's last command prints it Ready."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.support import Assets, Cluster
from tests.support.controlplane import REPO_ROOT
from tests.support.processes import LocalStack
from tests.support.s3 import S3Server

NAMESPACE = "modeldeploy-quickstart"
MARKER = "<!-- quickstart: tests/operator/test_quickstart.py runs this block word for word -->"


def readme_block() -> str:
    """The fenced block right after the marker, exactly as the README shows it."""
    text = (REPO_ROOT / "README.md").read_text()
    after = text[text.index(MARKER) + len(MARKER) :]
    match = re.match(r"\s*```bash\n(.*?)\n```", after, re.S)
    assert match, "the quick start block must follow its marker"
    return match.group(1)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3", Assets.provide())
    server.start()
    yield server
    server.stop()


def test_the_readme_quick_start_reaches_ready_word_for_word(
    control_plane: Cluster,
    stack: LocalStack,
    s3: S3Server,
    api_client: client.ApiClient,
    tmp_path: Path,
) -> None:
    import boto3

    block = readme_block()
    bucket = re.search(r"^export BUCKET=(\S+)$", block, re.M)
    assert bucket, "the block names its bucket"
    # The user's own bucket exists before they start.
    boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                 aws_secret_access_key=s3.secret_key,
                 region_name="us-east-1").create_bucket(Bucket=bucket.group(1))  # fmt: skip
    operator = stack.operator(
        "--artifact-store", f"pvc://artifacts/{NAMESPACE}",
        "--artifact-store-secret", "modeldeploy-s3",
        namespaces=[NAMESPACE],
    )  # fmt: skip
    work = tmp_path / "checkout"  # the user's checkout, so digits.pt lands in a scratch folder
    shutil.copytree(REPO_ROOT / "examples", work / "examples")
    tools = [str(Path(sys.executable).parent), str(Assets.provide().bin_dir)]
    env = {
        "PATH": os.pathsep.join([*tools, os.environ["PATH"]]),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(control_plane.kubeconfig),
        **{k: v for k, v in s3.env.items() if k.startswith("AWS_")},
    }
    try:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                                capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "training accuracy" in result.stdout
        assert "condition met" in result.stdout
        status = result.stdout[result.stdout.index(f"{NAMESPACE}/digits") :]
        assert re.search(r"Ready:\s+True InferenceServiceReady", status), status
        # The model came from the bucket: the source digest is the uploaded file's.
        body = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "modeldeploy.io", "v1alpha1", NAMESPACE, "modeldeployments", "digits"
        )
        assert body["spec"]["model"]["uri"] == f"s3://{bucket.group(1)}/quickstart/digits.pt"
        assert body["status"]["artifact"]["uri"].startswith(f"pvc://artifacts/{NAMESPACE}/")
    finally:
        custom = client.CustomObjectsApi(api_client)
        try:
            custom.delete_namespaced_custom_object(
                "modeldeploy.io", "v1alpha1", NAMESPACE, "modeldeployments", "digits"
            )
        except client.ApiException as err:
            if err.status != 404:
                raise
        _wait_gone(custom)
        operator.stop()


def _wait_gone(custom: client.CustomObjectsApi, timeout: float = 120.0) -> None:
    """The finalizer's clean-up Job runs while the operator is up; wait for it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = custom.list_namespaced_custom_object(
            "modeldeploy.io", "v1alpha1", NAMESPACE, "modeldeployments"
        )
        if not found["items"]:
            return
        time.sleep(0.5)
    raise AssertionError("the quick start's ModelDeployment was not deleted")
