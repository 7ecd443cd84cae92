"""The operator as a real process against the real kube-apiserver with the KServe CRDs, the
local executor running the staging Jobs (real ``modeldeploy stage``) and the InferenceServices
(real ``modeldeploy serve``), and the real tritonclient through the URL in the status."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from kubernetes import client

from tests.operator.conftest import Kube, digits_spec
from tests.support.demo_model import digit_png


def infer_png(url: str, name: str, index: int) -> tuple[str, str]:
    """(top label, true label) for one digit, sent as PNG bytes through ``url``."""
    png, truth = digit_png(index)
    triton = httpclient.InferenceServerClient(url.removeprefix("http://"))
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
    result = triton.infer(name, [item], outputs=[httpclient.InferRequestedOutput("labels")])
    return result.as_numpy("labels")[0, 0].decode(), truth


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_apply_stages_deploys_and_serves(
    kube: Kube, start_operator, namespace: str, store: str
) -> None:  # type: ignore[no-untyped-def]
    start_operator()
    created = kube.create("digits", digits_spec())

    job = kube.wait("the staging Job", lambda: kube.jobs("digits"))[0]
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert job["metadata"]["name"].startswith("digits-stage-")
    assert job["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    steps = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    assert list(steps) == ["fetch", "stage", "publish"]
    for container in steps.values():
        assert container["command"][:2] == ["modeldeploy", "stage"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["activeDeadlineSeconds"] == 1800
    assert spec["backoffLimit"] == 2
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"][:3] == [2, 3, 10]
    env = {e["name"]: e.get("value") for e in steps["publish"]["env"]}
    assert env["MODELDEPLOY_ARTIFACT_STORE"] == f"{store}/{namespace}"
    assert env["MODELDEPLOY_OWNER"] == f"{namespace}.digits"
    assert "MODELDEPLOY_ARTIFACT_STORE" not in {e["name"] for e in steps["stage"]["env"]}
    claims = sorted(
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    )
    assert claims == ["artifacts", "models"]
    # The namespace's staging NetworkPolicy exists before the pod runs: it selects every
    # staging pod (this Job's among them), lets nothing in, and lets out only DNS (no egress is
    # configured here). One per namespace, made once: not a write per ModelDeployment.
    networking = client.NetworkingV1Api(kube.custom.api_client)
    policy = json.loads(
        networking.read_namespaced_network_policy(
            "modeldeploy-staging", namespace, _preload_content=False
        ).data
    )
    assert "ownerReferences" not in policy["metadata"]
    assert stamp(policy["metadata"]["creationTimestamp"]) <= stamp(
        job["metadata"]["creationTimestamp"]
    )
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress")  # Ingress listed, no rule: nothing comes in
    assert [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]] == [53, 53]

    ready = kube.wait_condition("digits", "Ready", "True", "InferenceServiceReady")
    body = kube.get("digits")
    assert body is not None
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    artifact = status["artifact"]
    assert artifact["uri"].startswith(f"{store}/{namespace}/digits-")
    # Staged in three steps; the success the operator read is publish's, after fetch and stage.
    pod_status = kube.pods(job["metadata"]["name"])[0].status
    assert [s.name for s in pod_status.init_container_statuses] == ["fetch", "stage"]
    assert [s.state.terminated.exit_code for s in pod_status.init_container_statuses] == [0, 0]
    assert (
        json.loads(pod_status.container_statuses[0].state.terminated.message)["uri"]
        == (artifact["uri"])
    )
    assert artifact["precision"] == "fp32"
    assert artifact["parity"]["passed"] is True
    assert artifact["parity"]["maxAbsDiff"] < 1e-3
    assert artifact["cacheHit"] is False
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "ArtifactReady": ("True", "Staged"),
        "Deployed": ("True", "InferenceServiceApplied"),
        "RolloutProgressing": ("False", "NoRollout"),  # a first deployment has nothing to protect
        "Ready": ("True", "InferenceServiceReady"),
        "Degraded": ("False", "AsExpected"),
    }
    assert status["traffic"]["split"] == "100/0"
    assert status["revisions"] == {"stable": artifact["stagingHash"], "stableUri": artifact["uri"]}

    isvc = kube.isvc("digits")
    assert isvc is not None
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == artifact["uri"]
    assert model["runtime"] == "modeldeploy-onnx"
    assert model["modelFormat"] == {"name": "onnx"}
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/models/digits/ready"
    assert model["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    # Standard mode: the URL is the host of the HTTPRoute that splits traffic, through the
    # Gateway; the InferenceService's own URL reaches stable only.
    assert status["url"] == f"http://digits.{namespace}.example.com"
    assert status["url"] in ready["message"]
    assert isvc["status"]["url"] in ready["message"]
    route = kube.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "digits-traffic"
    )
    assert route["spec"]["hostnames"] == [f"digits.{namespace}.example.com"]
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [100]

    # A real inference through KServe's URL (no gateway in the test cluster to carry the route).
    answers = [infer_png(isvc["status"]["url"], "digits", i) for i in range(10)]
    assert sum(top == truth for top, truth in answers) >= 8, answers

    # The finished Job is left to the TTL controller (none runs here), never deleted by the
    # operator; and the happy path posts no Event: its story is the conditions above.
    (job,) = kube.jobs("digits")
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert any(c["type"] == "Complete" for c in job["status"]["conditions"])
    assert kube.events("digits") == []


def test_gpu_deployment_gets_limits_selector_tolerations(kube: Kube, start_operator) -> None:  # type: ignore[no-untyped-def]
    start_operator()
    serving = {
        "resources": {"cpu": "1", "memory": "1Gi", "gpu": 2, "gpuType": "NVIDIA-H100-80GB-HBM3",
                      "tolerations": [{"key": "pool", "operator": "Equal", "value": "inference",
                                       "effect": "NoSchedule"}]},
        "probes": {"startup": {"failureThreshold": 360}},
        "protocol": "grpc-v2",
    }  # fmt: skip
    kube.create("digits-gpu", digits_spec(serving=serving))
    isvc = kube.wait("the InferenceService", lambda: kube.isvc("digits-gpu"), timeout=180)
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert model["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "pool", "operator": "Equal", "value": "inference", "effect": "NoSchedule"},
    ]
    assert model["startupProbe"]["failureThreshold"] == 360
    assert model["startupProbe"]["periodSeconds"] == 5
    assert (
        model["image"] == "ghcr.io/modeldeploy/onnx-runtime:0.1.0-cuda12"
    )  # the runtime's modeldeploy.io/gpu-image
    assert model["protocolVersion"] == "grpc-v2"
    assert model["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]


def test_precision_change_restages_and_parity_failure_keeps_old_artifact(
    kube: Kube, start_operator
) -> None:  # type: ignore[no-untyped-def]
    start_operator()
    # immediate: the new artifact takes over once ready (tests/operator/test_canary.py walks
    # canary steps).
    kube.create("digits", digits_spec(rollout={"strategy": "immediate"}))
    kube.wait_condition("digits", "Ready", "True")
    first = kube.get("digits")["status"]["artifact"]  # type: ignore[index]

    # fp16: a new staging run, a new artifact, the InferenceService moves to it.
    kube.patch_spec(
        "digits", {"optimization": {"precision": "fp16", "parity": {"atol": 0.01, "rtol": 0.01}}}
    )
    kube.wait(
        "the fp16 artifact",
        lambda: (
            (kube.get("digits") or {}).get("status", {}).get("artifact", {}).get("precision")
            == "fp16"
        ),
        timeout=180,
    )
    second = kube.get("digits")["status"]["artifact"]  # type: ignore[index]
    assert second["uri"] != first["uri"]
    assert second["stagingHash"] != first["stagingHash"]
    kube.wait(
        "the InferenceService on the fp16 artifact",
        lambda: kube.isvc("digits")["spec"]["predictor"]["model"]["storageUri"] == second["uri"],  # type: ignore[index]
    )
    kube.wait_condition("digits", "Ready", "True")
    isvc_before = kube.isvc("digits")
    assert isvc_before is not None

    # fp16 with zero tolerance cannot pass parity: staging fails, the fp16 artifact keeps serving.
    kube.patch_spec(
        "digits", {"optimization": {"precision": "fp16", "parity": {"atol": 0.0, "rtol": 0.0}}}
    )
    failed = kube.wait_condition(
        "digits", "ArtifactReady", "False", "ParityCheckFailed", timeout=180
    )
    assert "max |Δ|" in failed["message"]
    assert "fp16" in failed["message"]
    degraded = kube.wait_condition("digits", "Degraded", "True", "ParityCheckFailed")
    assert "previous artifact keeps serving" in degraded["message"]
    assert kube.condition("digits", "Ready")["status"] == "True"
    isvc_after = kube.isvc("digits")
    assert isvc_after is not None
    assert isvc_after["spec"] == isvc_before["spec"]
    assert isvc_after["metadata"]["generation"] == isvc_before["metadata"]["generation"]
    assert kube.get("digits")["status"]["artifact"]["uri"] == second["uri"]  # type: ignore[index]
    # The failed Job stays as the record (no retry loop); the finished ones of earlier specs
    # are the TTL controller's (ttlSecondsAfterFinished), none is left running.
    jobs = kube.jobs("digits")
    failed_jobs = [j for j in jobs if any(c["type"] == "Failed" for c in j["status"]["conditions"])]
    assert len(failed_jobs) == 1
    assert len(kube.pods(failed_jobs[0]["metadata"]["name"])) == 1  # exit code 17: no retries
    assert all(j["spec"]["ttlSecondsAfterFinished"] == 600 for j in jobs)
    assert all(j["status"].get("conditions") for j in jobs)  # every one finished

    # Going back to the serving spec needs no staging at all.
    kube.patch_spec(
        "digits", {"optimization": {"precision": "fp16", "parity": {"atol": 0.01, "rtol": 0.01}}}
    )
    kube.wait_condition("digits", "Degraded", "False", "AsExpected")
    kube.wait_condition("digits", "ArtifactReady", "True")
    # No Job was made for it; the finished ones wait for their TTL.
    assert sorted(j["metadata"]["name"] for j in kube.jobs("digits")) == sorted(
        j["metadata"]["name"] for j in jobs
    )


def serving_runtime(namespace: str, name: str, model_format: str) -> dict[str, Any]:
    """A CPU-only v2 ServingRuntime (no modeldeploy.io/gpu-image) for one model format."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "supportedModelFormats": [{"name": model_format, "version": "1"}],
            "protocolVersions": ["v2"],
            "containers": [{"name": "kserve-container", "image": f"example.com/{name}:1"}],
        },
    }


def test_admitted_but_unworkable_specs_create_nothing(
    kube: Kube, start_operator, control_plane, namespace: str
) -> None:  # type: ignore[no-untyped-def]
    runtimes = [
        serving_runtime(namespace, "cpu-only", "onnx"),
        serving_runtime(namespace, "sklearn-only", "sklearn"),
    ]
    control_plane.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": runtimes}),
    )
    start_operator()
    cases = {
        "unknown-runtime": ({"runtime": "no-such-runtime"}, "RuntimeNotFound", "no-such-runtime"),
        "no-gpu-image": ({"runtime": "cpu-only", "resources": {"gpu": 1}}, "RuntimeHasNoGpuImage", "no GPU image"),
        "wrong-format": ({"runtime": "sklearn-only"}, "RuntimeUnsupportedFormat", "does not serve onnx"),
        "wrong-protocol": ({"runtime": "cpu-only", "protocol": "grpc-v2"}, "RuntimeUnsupportedProtocol", "grpc-v2"),
    }  # fmt: skip
    for name, (serving, _, _) in cases.items():
        kube.create(name, digits_spec(serving=serving))
    for name, (_, reason, words) in cases.items():
        cond = kube.wait_condition(name, "Ready", "False", reason)
        assert words in cond["message"]
        assert "spec.serving" in cond["message"]
        assert kube.condition(name, "Deployed")["reason"] == reason
        # Events are posted in the background: wait for the Warning rather than race it.
        kube.wait(
            f"a {reason} Warning event", lambda n=name, r=reason: ("Warning", r) in kube.events(n)
        )
    for name in cases:
        assert kube.jobs(name) == []
        assert kube.isvc(name) is None


def test_missing_store_secret_is_reported_before_anything_is_created(
    kube: Kube, start_operator, namespace: str
) -> None:  # type: ignore[no-untyped-def]
    start_operator(
        "--artifact-store", "s3://artifacts/store", "--artifact-store-secret", "s3-credentials"
    )
    kube.create("digits", digits_spec())
    cond = kube.wait_condition("digits", "Ready", "False", "SecretNotFound")
    assert "'s3-credentials'" in cond["message"]
    assert namespace in cond["message"]
    assert kube.jobs("digits") == []
    # Creating the Secret unblocks it: the next reconciliation creates the Job with it mounted.
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "s3-credentials"},
                                                   "stringData": {"AWS_ACCESS_KEY_ID": "x"}})  # fmt: skip
    kube.patch_spec("digits", {"serving": {"scaling": {"maxReplicas": 2}}})  # wakes it now
    job = kube.wait("the staging Job", lambda: kube.jobs("digits"))[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
