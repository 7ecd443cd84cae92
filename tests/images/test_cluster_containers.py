"""Once `make images` has built them, the test cluster's executor (the kubelet's stand-in) runs
the staging Job's three containers and the predictor from the images, with podman and runc,
instead of as local processes. The pod status says so as a kubelet would (``containerID``), and
the predictor answers through the InferenceService's URL from its container."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.images.test_images import image, podman
from tests.operator.conftest import Kube, digits_spec
from tests.support.demo_model import digit_png

if os.environ.get("MODELDEPLOY_EXECUTOR_CONTAINERS") == "0":
    pytest.skip(
        "MODELDEPLOY_EXECUTOR_CONTAINERS=0: the executor runs processes", allow_module_level=True
    )


def test_a_deployment_is_served_from_the_built_runtime_image_and_answers_through_kserve_s_url(
    kube: Kube, start_operator: Any, namespace: str
) -> None:
    image("staging")  # skipped unless both were built
    image("runtime")
    import numpy as np
    import tritonclient.http as httpclient

    start_operator()
    kube.create("digits", digits_spec())
    kube.wait_condition("digits", "Ready", "True", timeout=240)
    # The predictor runs in a container of the runtime image, answering through KServe's URL.
    running = podman("ps", "--format", "{{.Names}} {{.Image}}").stdout.splitlines()
    predictors = [line for line in running if line.startswith(f"{namespace}-digits-predictor-")]
    assert len(predictors) == 1, running
    assert predictors[0].endswith(image("runtime"))
    isvc = kube.isvc("digits")
    assert isvc is not None
    url = isvc["status"]["url"].removeprefix("http://")  # the router KServe's URL leads to
    png, truth = digit_png(3)
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
    result = httpclient.InferenceServerClient(url).infer(
        "digits", [item], outputs=[httpclient.InferRequestedOutput("labels")]
    )
    assert result.as_numpy("labels")[0, 0].decode() == truth


def test_a_failed_staging_pod_records_which_of_its_containers_ran_from_the_image(
    kube: Kube, start_operator: Any
) -> None:
    tag = image("staging")
    start_operator()
    # fp16 with zero tolerance cannot pass parity: the Job fails and stays as the record.
    kube.create("digits", digits_spec(optimization={"precision": "fp16",
                                                    "parity": {"atol": 0.0, "rtol": 0.0}}))  # fmt: skip
    kube.wait_condition("digits", "ArtifactReady", "False", "ParityCheckFailed", timeout=240)
    (job,) = kube.jobs("digits")
    (pod,) = kube.pods(job["metadata"]["name"])
    fetch, stage = pod.status.init_container_statuses
    (publish,) = pod.status.container_statuses
    assert (fetch.image, stage.image) == (tag, tag)
    assert fetch.container_id == f"podman://{pod.metadata.name}-fetch"
    assert stage.container_id == f"podman://{pod.metadata.name}-stage"
    assert stage.state.terminated.exit_code == 17
    assert publish.container_id is None  # never started
    assert publish.state.waiting.reason == "PodInitializing"
