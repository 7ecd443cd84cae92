"""runtimes/modeldeploy-onnx.yaml is a ClusterServingRuntime the real KServe schema accepts."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client

from modeldeploy.api.serving import DEFAULT_RUNTIME
from tests.cluster.kube import kserve_candidate
from tests.support.controlplane import REPO_ROOT

RUNTIME = REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"


def test_cluster_serving_runtime_is_accepted_intact(api_client: client.ApiClient) -> None:
    doc: dict[str, Any] = yaml.safe_load(RUNTIME.read_text())
    assert doc["metadata"]["name"] == DEFAULT_RUNTIME  # the spec's default runtime exists
    # Under a name of its own: the chart tests and the operator tests install the real one.
    doc["metadata"]["name"] = f"{DEFAULT_RUNTIME}-schema-test"
    api = client.CustomObjectsApi(api_client)
    stored = api.create_cluster_custom_object(
        "serving.kserve.io", "v1alpha1", "clusterservingruntimes", doc, field_validation="Strict"
    )
    try:
        spec = stored["spec"]
        assert spec["supportedModelFormats"] == [
            {"name": "onnx", "version": "1", "autoSelect": False}
        ]
        # KServe's choice, with the spec as the API server stored it: named, ours serves;
        # an ONNX InferenceService that names no runtime is never given to ours.
        assert kserve_candidate(spec, "onnx", runtime_named=True)
        assert not kserve_candidate(spec, "onnx", runtime_named=False)
        assert spec["protocolVersions"] == ["v2", "grpc-v2"]
        container = spec["containers"][0]
        assert container["args"][:2] == ["serve", "/mnt/models"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
    finally:
        api.delete_cluster_custom_object(
            "serving.kserve.io", "v1alpha1", "clusterservingruntimes", doc["metadata"]["name"]
        )
