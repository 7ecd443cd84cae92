"""The real KServe and Gateway API CRDs accept what the operator will create, and refuse
what they should. These pin our understanding of their schemas to the pinned releases."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.kube import message_of

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


def operator_shaped_isvc(name: str = "resnet50") -> dict[str, Any]:
    """An InferenceService of the shape the operator builds for a GPU canary deployment."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "annotations": {"serving.kserve.io/deploymentMode": "Knative"},
            "labels": {"app.kubernetes.io/managed-by": "modeldeploy"},
        },
        "spec": {
            "predictor": {
                "automountServiceAccountToken": False,
                "imagePullSecrets": [{"name": "ghcr-pull"}],
                "minReplicas": 1,
                "maxReplicas": 4,
                "scaleMetric": "concurrency",
                "scaleTarget": 8,
                "canaryTrafficPercent": 10,
                "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "runtime": "modeldeploy-onnx",
                    "protocolVersion": "v2",
                    "storageUri": "s3://artifacts/sha256-ab12/",
                    "resources": {
                        "requests": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
                        "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/v2/models/resnet50/ready", "port": 8080},
                        "periodSeconds": 5,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/v2/health/live", "port": 8080},
                        "periodSeconds": 10,
                    },
                    "startupProbe": {
                        "httpGet": {"path": "/v2/models/resnet50/ready", "port": 8080},
                        "periodSeconds": 5,
                        "failureThreshold": 120,
                    },
                    "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
                },
            }
        },
    }


def isvc_api(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def test_operator_shaped_isvc_is_accepted_intact(
    api_client: client.ApiClient, namespace: str
) -> None:
    api = isvc_api(api_client)
    sent = operator_shaped_isvc()
    stored = api.create_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], sent, field_validation="Strict"
    )
    assert stored["spec"]["predictor"] == sent["spec"]["predictor"]
    # Status is a subresource there too: KServe's controller would write the traffic split.
    status = {
        "status": {
            "components": {
                "predictor": {
                    "traffic": [
                        {
                            "revisionName": "resnet50-predictor-00002",
                            "percent": 10,
                            "tag": "latest",
                        },
                        {"revisionName": "resnet50-predictor-00001", "percent": 90, "tag": "prev"},
                    ],
                    "latestRolledoutRevision": "resnet50-predictor-00001",
                }
            }
        }
    }
    patched = api.patch_namespaced_custom_object_status(
        *ISVC[:2], namespace, ISVC[2], "resnet50", status
    )
    traffic = patched["status"]["components"]["predictor"]["traffic"]
    assert [t["percent"] for t in traffic] == [10, 90]


def test_the_builders_isvc_with_its_shadow_volume_and_revision_env_is_accepted_intact(
    api_client: client.ApiClient, namespace: str
) -> None:
    import yaml

    from modeldeploy.api.validation import parse
    from modeldeploy.controller.inference_service import (
        ServingRuntimeRef,
        build_inference_service,
    )
    from tests.support.controlplane import REPO_ROOT

    doc = yaml.safe_load((REPO_ROOT / "examples" / "resnet50-gpu-canary.yaml").read_text())
    doc["metadata"]["namespace"] = namespace
    sent = build_inference_service(
        parse(doc), "0b5e8f3c-0000-4000-8000-000000000000", "s3://artifacts/resnet50-ab12",
        ServingRuntimeRef("modeldeploy-onnx", "ClusterServingRuntime"), revision="ab12cd34ef",
    )  # fmt: skip
    sent["metadata"].pop("ownerReferences")  # no owner object exists in this test
    stored = isvc_api(api_client).create_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], sent, field_validation="Strict"
    )
    predictor = stored["spec"]["predictor"]
    assert predictor == sent["spec"]["predictor"]
    assert predictor["volumes"][0]["configMap"] == {"name": "resnet50-shadow", "optional": True}
    assert predictor["model"]["env"] == [{"name": "MODELDEPLOY_REVISION", "value": "ab12cd34ef"}]


def test_server_side_apply_keeps_fields_other_managers_own(
    api_client: client.ApiClient, namespace: str, control_plane: Any
) -> None:
    doc = operator_shaped_isvc("ssa")
    doc["metadata"]["namespace"] = namespace
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=modeldeploy", "-f", "-", input=json.dumps(doc)
    )
    control_plane.kubectl(
        "annotate",
        "isvc",
        "ssa",
        "-n",
        namespace,
        "team.example.com/owner=vision",
        "--field-manager=someone-else",
    )
    doc["spec"]["predictor"]["canaryTrafficPercent"] = 50
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=modeldeploy", "-f", "-", input=json.dumps(doc)
    )
    stored = isvc_api(api_client).get_namespaced_custom_object(*ISVC[:2], namespace, ISVC[2], "ssa")
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert stored["metadata"]["annotations"]["team.example.com/owner"] == "vision"


def test_unknown_field_is_refused_when_strict_and_pruned_otherwise(
    api_client: client.ApiClient, namespace: str
) -> None:
    api = isvc_api(api_client)
    doc = operator_shaped_isvc("typo")
    doc["spec"]["predictor"]["model"]["storageUrl"] = doc["spec"]["predictor"]["model"].pop(
        "storageUri"
    )
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(
            *ISVC[:2], namespace, ISVC[2], copy.deepcopy(doc), field_validation="Strict"
        )
    assert 'unknown field "spec.predictor.model.storageUrl"' in message_of(err.value)
    stored = api.create_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], doc, field_validation="Ignore"
    )
    assert "storageUrl" not in stored["spec"]["predictor"]["model"]
    assert "storageUri" not in stored["spec"]["predictor"]["model"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("predictor", "scaleMetric"), "gpu", 'Unsupported value: "gpu"'),
        (("predictor", "logger"), {"mode": "everything"}, 'Unsupported value: "everything"'),
        (("predictor", "canaryTrafficPercent"), "ten", "must be of type integer"),
    ],
)
def test_isvc_schema_refuses_wrong_values(
    api_client: client.ApiClient, namespace: str, path: tuple[str, ...], value: Any, expected: str
) -> None:
    doc = operator_shaped_isvc("wrong")
    node = doc["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ApiException) as err:
        isvc_api(api_client).create_namespaced_custom_object(
            *ISVC[:2], namespace, ISVC[2], doc, dry_run="All"
        )
    assert err.value.status == 422
    assert expected in message_of(err.value)


def test_serving_runtimes_and_gateway_api_are_installed(api_client: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    names = {crd.metadata.name for crd in ext.list_custom_resource_definition().items}
    assert {
        "inferenceservices.serving.kserve.io",
        "servingruntimes.serving.kserve.io",
        "clusterservingruntimes.serving.kserve.io",
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "modeldeployments.modeldeploy.io",
    } <= names


def test_weighted_httproute_is_accepted(api_client: client.ApiClient, namespace: str) -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-scorer"},
        "spec": {
            "parentRefs": [{"name": "kserve-ingress-gateway", "namespace": "kserve"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "fraud-scorer-predictor", "port": 80, "weight": 90},
                        {"name": "fraud-scorer-canary-predictor", "port": 80, "weight": 10},
                    ],
                }
            ],
        },
    }
    api = client.CustomObjectsApi(api_client)
    stored = api.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
    )
    assert [b["weight"] for b in stored["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    route["metadata"]["name"] = "too-heavy"
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 2_000_000
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", route
        )
    assert "should be less than or equal to 1000000" in message_of(err.value)
