"""The operator's pure parts, without a cluster: builders, runtime checks, staging outcomes,
conditions and the reconciliation plan."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modeldeploy.api.artifact import artifact_options, staging_hash
from modeldeploy.api.optimization import Precision
from modeldeploy.api.status import ConditionType
from modeldeploy.api.validation import parse as parse_document
from modeldeploy.cli import app
from modeldeploy.controller.conditions import Wanted, merge
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import ServingRuntimeRef, build_inference_service
from modeldeploy.controller.job_state import staging_outcome, termination_message
from modeldeploy.controller.reconcile import Observed, plan, rejected_status
from modeldeploy.controller.runtimes import Blocker, resolve_runtime
from modeldeploy.controller.staging_job import build_cleanup_job, build_staging_job

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG = OperatorConfig(artifact_store="pvc://artifacts/store")
STORE = CONFIG.tenant_store("demo")
UID = "11111111-2222-3333-4444-555555555555"
RUNTIME = ServingRuntimeRef("modeldeploy-onnx", "ClusterServingRuntime", "img:cuda")


def example(name: str = "digits-cpu") -> Any:
    return parse_document(yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text()))


def body_of(
    deployment: Any, generation: int = 1, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc = deployment.to_manifest()
    doc["metadata"].update(uid=UID, generation=generation)
    if status is not None:
        doc["status"] = status
    return doc


# --- staging Job -------------------------------------------------------------------------------


def test_staging_job_is_locked_down_and_carries_the_spec() -> None:
    deployment = example()
    job = build_staging_job(deployment, UID, CONFIG)
    digest = staging_hash(deployment, STORE)
    assert job["metadata"]["name"] == f"digits-stage-{digest}"
    assert (
        job["metadata"]["ownerReferences"][0] | {"uid": UID}
        == job["metadata"]["ownerReferences"][0]
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    steps = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    assert [c["name"] for c in pod["initContainers"]] == ["fetch", "stage"]
    assert [c["name"] for c in pod["containers"]] == ["publish"]
    for container in steps.values():
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}  # fmt: skip
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        env = {e["name"]: e["value"] for e in container["env"]}
        staged = json.loads(env["MODELDEPLOY_DEPLOYMENT"])
        assert staged["metadata"] == {"name": "digits", "namespace": "demo"}
        assert staged["spec"]["model"]["uri"] == "pvc://models/digits/model.pt"
        assert "rollout" not in staged["spec"]  # rollout never changes the artifact
        assert parse_document(staged).spec == deployment.spec.model_copy(
            update={"rollout": parse_document(staged).spec.rollout}
        )

    def mounts(step: str) -> dict[str, tuple[str, bool]]:
        return {m["mountPath"]: (m["name"], bool(m.get("readOnly")))
                for m in steps[step]["volumeMounts"]}  # fmt: skip

    # fetch reads the model claim and the store (read-only), and writes the inputs.
    assert mounts("fetch") == {"/tmp": ("trusted-tmp", False),
                               "/staging/inputs": ("inputs", False),
                               "/mnt/pvc/artifacts": ("pvc-0", True),
                               "/mnt/pvc/models": ("pvc-1", True)}  # fmt: skip
    # stage, which runs the tenant's code, gets no claim, no store and no credentials.
    assert mounts("stage") == {"/tmp": ("scratch", False),
                               "/staging/inputs": ("inputs", True),
                               "/staging/output": ("output", False)}  # fmt: skip
    stage_env = {e["name"] for e in steps["stage"]["env"]}
    assert not {"MODELDEPLOY_ARTIFACT_STORE", "MODELDEPLOY_OWNER"} & stage_env
    assert steps["stage"]["envFrom"] == []
    # publish reads both hand-over folders and alone writes the store, under the namespace.
    assert mounts("publish") == {"/tmp": ("trusted-tmp", False),
                                 "/staging/inputs": ("inputs", True),
                                 "/staging/output": ("output", True),
                                 "/mnt/pvc/artifacts": ("pvc-0", False)}  # fmt: skip
    publish_env = {e["name"]: e["value"] for e in steps["publish"]["env"]}
    assert publish_env["MODELDEPLOY_ARTIFACT_STORE"] == "pvc://artifacts/store/demo"
    assert publish_env["MODELDEPLOY_OWNER"] == "demo.digits"
    assert [steps[s]["command"][-1] for s in ("fetch", "stage", "publish")] == [
        "fetch", "build", "publish"]  # fmt: skip
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    rule = job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]
    assert "containerName" not in rule  # every step's exit code counts
    assert {17, 22} <= set(rule["values"])
    assert 18 not in rule["values"]


def test_s3_store_mounts_the_secret_only_where_our_code_runs_and_no_store_volume() -> None:
    config = OperatorConfig(artifact_store="s3://bucket/prefix", artifact_store_secret="creds")
    job = build_staging_job(example(), UID, config)
    pod = job["spec"]["template"]["spec"]
    env_from = {c["name"]: c["envFrom"] for c in [*pod["initContainers"], *pod["containers"]]}
    secret = [{"secretRef": {"name": "creds"}}]
    assert env_from == {"fetch": secret, "stage": [], "publish": secret}
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in job["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["models"]


def test_cleanup_job_outlives_its_owner_and_touches_only_the_namespace_s_store() -> None:
    job = build_cleanup_job(example(), UID, CONFIG)
    assert "ownerReferences" not in job["metadata"]
    assert job["metadata"]["name"] == f"digits-cleanup-{UID[:8]}"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["modeldeploy", "artifacts", "release",
                                    "--name", "digits", "--owner", "demo.digits"]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELDEPLOY_ARTIFACT_STORE"] == "pvc://artifacts/store/demo"
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp", "/mnt/pvc/artifacts"]


def test_staging_hash_follows_the_artifact_not_serving() -> None:
    base = example()
    digest = staging_hash(base, STORE)
    scaled = base.model_copy(deep=True)
    scaled.spec.serving.scaling.max_replicas = 9
    scaled.spec.rollout.steps[0].weight = 3
    assert staging_hash(scaled, STORE) == digest
    fp16 = base.model_copy(deep=True)
    fp16.spec.optimization.precision = Precision.FP16
    assert staging_hash(fp16, STORE) != digest
    assert staging_hash(base, "s3://other/store") != digest


def test_queue_bound_and_deadline_restage_only_when_set_away_from_their_defaults() -> None:
    # They reached the manifest after artifacts already existed: at their defaults the hash is
    # what it was before them, so an operator upgrade does not restage every deployment.
    base = example()
    digest = staging_hash(base, STORE)
    assert "maxQueueSize" not in artifact_options(base)
    assert "requestTimeout" not in artifact_options(base)
    bounded = base.model_copy(deep=True)
    bounded.spec.serving.batching.max_queue_size = 16
    assert staging_hash(bounded, STORE) != digest
    hurried = base.model_copy(deep=True)
    hurried.spec.serving.batching.request_timeout = "2s"
    assert staging_hash(hurried, STORE) != digest


# --- InferenceService --------------------------------------------------------------------------


def test_inference_service_for_a_gpu_canary() -> None:
    isvc = build_inference_service(example("resnet50-gpu-canary"), UID, "s3://a/b", RUNTIME)
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Knative",
        "serving.kserve.io/enable-tag-routing": "true",  # the canary's own URL, for analysis
    }
    assert model["resources"]["limits"] == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert predictor["tolerations"][0] == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert (
        predictor["minReplicas"],
        predictor["maxReplicas"],
        predictor["scaleMetric"],
        predictor["scaleTarget"],
    ) == (1, 8, "concurrency", 16)
    assert model["image"] == "img:cuda"
    assert model["startupProbe"] == {
        "httpGet": {"path": "/v2/models/resnet50/ready", "port": 8080},
        "initialDelaySeconds": 0, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 120,
    }  # fmt: skip


def test_cpu_inference_service_has_no_gpu_parts() -> None:
    isvc = build_inference_service(example(), UID, "pvc://a/b", RUNTIME)
    predictor = isvc["spec"]["predictor"]
    assert "nvidia.com/gpu" not in predictor["model"]["resources"]["limits"]
    assert "nodeSelector" not in predictor
    assert "tolerations" not in predictor
    assert "image" not in predictor["model"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert predictor["automountServiceAccountToken"] is False  # no API token in a model server


# --- runtime checks ----------------------------------------------------------------------------


def runtime_object(
    formats: list[str], protocols: list[str], gpu_image: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "rt"}
    if gpu_image:
        meta["annotations"] = {"modeldeploy.io/gpu-image": gpu_image}
    return {"metadata": meta, "spec": {"supportedModelFormats": [{"name": f} for f in formats],
                                       "protocolVersions": protocols}}  # fmt: skip


@pytest.mark.parametrize(
    ("namespaced", "cluster", "gpu", "reason"),
    [
        (None, None, 0, "RuntimeNotFound"),
        (None, runtime_object(["sklearn"], ["v2"]), 0, "RuntimeUnsupportedFormat"),
        (None, runtime_object(["onnx"], ["v1"]), 0, "RuntimeUnsupportedProtocol"),
        (None, runtime_object(["onnx"], ["v2"]), 1, "RuntimeHasNoGpuImage"),
        (
            runtime_object(["onnx"], ["v2"]),
            runtime_object(["onnx"], ["v2"], "x"),
            1,
            "RuntimeHasNoGpuImage",
        ),
    ],
)
def test_runtime_blockers(namespaced: Any, cluster: Any, gpu: int, reason: str) -> None:
    deployment = example()
    deployment.spec.serving.resources.gpu = gpu
    found = resolve_runtime(deployment, namespaced, cluster, CONFIG)
    assert isinstance(found, Blocker)
    assert found.reason == reason
    assert found.message.startswith("spec.serving.")


def test_runtime_found_with_gpu_image_or_known_gpu_runtime() -> None:
    deployment = example()
    deployment.spec.serving.resources.gpu = 1
    found = resolve_runtime(deployment, None, runtime_object(["onnx"], ["v2"], "img:gpu"), CONFIG)
    assert found == ServingRuntimeRef("modeldeploy-onnx", "ClusterServingRuntime", "img:gpu")
    deployment.spec.serving.runtime = "kserve-tritonserver"
    found = resolve_runtime(deployment, runtime_object(["onnx"], ["v2", "grpc-v2"]), None, CONFIG)
    assert found == ServingRuntimeRef("kserve-tritonserver", "ServingRuntime", None)


# --- staging outcomes --------------------------------------------------------------------------


def job(conditions: list[dict[str, str]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits-stage-abc"},
        "status": {"conditions": conditions or [], **status},
    }


SUMMARY = {"status": "Succeeded", "uri": "pvc://artifacts/store/demo/digits-0123456789abcdef0123", "key": "digits-0123456789abcdef0123",
           "digest": "sha256:" + "a" * 64, "precision": "fp32", "sizeBytes": 1234, "cacheHit": False,
           "parity": {"maxAbsDiff": 1e-7, "maxRelDiff": 1e-6, "top1Agreement": 1.0, "samples": 32,
                      "passed": True, "atol": 0.001, "rtol": 0.001}}  # fmt: skip


def test_outcomes_from_job_and_termination_message() -> None:
    assert staging_outcome(job(active=1), None).phase == "Running"
    done = staging_outcome(job([{"type": "Complete", "status": "True"}]), json.dumps(SUMMARY))
    assert (done.phase, done.reason, done.summary) == ("Succeeded", "Staged", SUMMARY)
    failed_summary = {
        "status": "Failed",
        "reason": "ParityCheckFailed",
        "message": "max |Δ| 0.3",
        "exitCode": 17,
    }
    failed = staging_outcome(
        job([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]),
        json.dumps(failed_summary),
    )
    assert (failed.phase, failed.reason, failed.message) == (
        "Failed",
        "ParityCheckFailed",
        "max |Δ| 0.3",
    )
    deadline = staging_outcome(job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                     "message": "too long"}]), None)  # fmt: skip
    assert (deadline.reason, deadline.message) == (
        "DeadlineExceeded",
        "Job digits-stage-abc failed: too long",
    )
    crashed = staging_outcome(
        job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
        "Traceback: boom",
    )
    assert crashed.reason == "BackoffLimitExceeded"
    assert crashed.message.endswith("Traceback: boom")
    garbled = staging_outcome(job([{"type": "Complete", "status": "True"}]), "not json")
    assert (garbled.phase, garbled.reason) == ("Failed", "StagingResultUnreadable")


def test_the_summary_of_a_success_is_read_from_publish_and_a_failure_from_the_failed_step() -> None:
    def done(name: str, code: int, message: str) -> dict[str, Any]:
        return {"name": name, "state": {"terminated": {"exitCode": code, "message": message}}}

    def pod(created: str, init: list[Any], main: list[Any]) -> dict[str, Any]:
        return {"metadata": {"creationTimestamp": created},
                "status": {"initContainerStatuses": init, "containerStatuses": main}}  # fmt: skip

    forged = done("stage", 0, '{"status": "Succeeded", "uri": "s3://elsewhere/x"}')
    succeeded = pod("2026-01-01T00:00:02Z", [done("fetch", 0, "{}"), forged],
                    [done("publish", 0, "published")])  # fmt: skip
    older = pod("2026-01-01T00:00:01Z", [done("fetch", 0, "{}")], [done("publish", 0, "old")])
    assert termination_message([older, succeeded]) == "published"
    # The tenant's step failing: its message (checked against the known reasons later).
    failed = pod("2026-01-01T00:00:03Z", [done("fetch", 0, "{}"), done("stage", 17, "parity")],
                 [{"name": "publish", "state": {"waiting": {"reason": "PodInitializing"}}}])  # fmt: skip
    assert termination_message([succeeded, failed]) == "parity"
    # A stage step that wrote a success, with publish never finishing: no summary at all.
    unpublished = pod("2026-01-01T00:00:04Z", [done("fetch", 0, "{}"), forged], [])
    assert termination_message([unpublished]) is None


# --- conditions --------------------------------------------------------------------------------


def test_conditions_keep_transition_time_and_report_changes() -> None:
    first, events = merge(None, [Wanted(ConditionType.READY, False, "Staging", "wait")], 1, NOW)
    assert first[0].wire()["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    assert [(e.type, e.reason) for e in events] == [("Warning", "Staging")]
    later = NOW + timedelta(minutes=5)
    same, events = merge(first, [Wanted(ConditionType.READY, False, "Staging", "still")], 2, later)
    assert same[0].wire()["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    assert events == []
    assert same[0].wire()["observedGeneration"] == 2
    assert same[0].wire()["message"] == "still"
    flipped, events = merge(
        same, [Wanted(ConditionType.READY, True, "InferenceServiceReady")], 2, later
    )
    assert flipped[0].wire()["lastTransitionTime"] == "2026-11-23T12:05:00Z"
    assert [(e.type, e.reason) for e in events] == [("Normal", "InferenceServiceReady")]
    degraded, events = merge(
        flipped, [Wanted(ConditionType.DEGRADED, True, "ParityCheckFailed")], 2, later
    )
    assert [c.type for c in degraded] == ["Ready", "Degraded"]
    assert events[0].type == "Warning"


def test_the_happy_path_posts_no_event_and_a_recovery_does() -> None:
    """Each Event is a write: the way to Ready is in the status, only warnings and the end of
    one are posted."""
    steps = [
        [Wanted(ConditionType.ARTIFACT_READY, None, "StagingStarted"),
         Wanted(ConditionType.READY, False, "InferenceServiceMissing")],
        [Wanted(ConditionType.ARTIFACT_READY, True, "Staged"),
         Wanted(ConditionType.DEPLOYED, True, "InferenceServiceApplied"),
         Wanted(ConditionType.READY, False, "InferenceServiceNotReady")],
        [Wanted(ConditionType.READY, True, "InferenceServiceReady")],
    ]  # fmt: skip
    conditions: list[dict[str, Any]] | None = None
    for wanted in steps:
        conditions, events = merge(conditions, wanted, 1, NOW)
        assert events == [], wanted
    broken, events = merge(conditions, [Wanted(ConditionType.READY, False, "RevisionFailed")], 1,
                           NOW)  # fmt: skip
    assert [(e.type, e.reason) for e in events] == [("Warning", "RevisionFailed")]
    _, events = merge(broken, [Wanted(ConditionType.READY, True, "InferenceServiceReady")], 1, NOW)
    assert [(e.type, e.reason) for e in events] == [("Normal", "InferenceServiceReady")]


# --- the plan ----------------------------------------------------------------------------------


def observed(body: dict[str, Any], **kwargs: Any) -> Observed:
    values: dict[str, Any] = {
        "runtime": RUNTIME,
        "secret_missing": None,
        "jobs": [],
        "outcome": None,
        "isvc": None,
    }
    values.update(kwargs)
    return Observed(body=body, **values)


def ready_isvc(uri: str, owner: str = UID) -> dict[str, Any]:
    return {"metadata": {"name": "digits", "namespace": "demo",
                         "ownerReferences": [{"kind": "ModelDeployment", "name": "digits",
                                              "uid": owner, "controller": True}]},
            "spec": {"predictor": {"model": {"storageUri": uri}}},
            "status": {"url": "http://digits.demo", "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip


def test_a_refused_apply_keeps_the_staged_artifact_and_records_nothing_it_would_have_done() -> None:
    deployment = example()
    body = body_of(deployment)
    first = plan(observed(body), CONFIG, NOW)
    assert first.create_job is not None
    body["status"] = first.status.wire()
    done_job = {**first.create_job, "status": {"conditions": [{"type": "Complete",
                                                                "status": "True"}]}}  # fmt: skip
    done = plan(
        observed(body, jobs=[done_job], outcome=staging_outcome(done_job, json.dumps(SUMMARY))),
        CONFIG,
        NOW,
    )
    assert done.apply_isvc is not None
    assert done.status.revisions is not None  # what the apply would have carried out
    why = '403 inferenceservices.serving.kserve.io "digits" is forbidden'
    status, events = rejected_status(body, done.status, done.apply_isvc, why, NOW)
    wire = status.wire()
    conditions = {c["type"]: c for c in wire["conditions"]}
    assert (conditions["Deployed"]["status"], conditions["Deployed"]["reason"]) == (
        "False", "InferenceServiceRejected")  # fmt: skip
    assert why in conditions["Ready"]["message"]
    assert conditions["ArtifactReady"]["status"] == "True"
    assert wire["artifact"] == done.status.wire()["artifact"]
    assert "revisions" not in wire
    assert "traffic" not in wire
    assert [(e.type, e.reason) for e in events] == [
        ("Warning", "InferenceServiceRejected"), ("Warning", "InferenceServiceRejected")]  # fmt: skip
    # The same refusal again changes nothing: nothing to write, no new Event.
    body["status"] = wire
    again, repeated = rejected_status(body, done.status, done.apply_isvc, why, NOW)
    assert again.wire() == wire
    assert repeated == []


def test_plan_walks_from_nothing_to_ready_and_then_changes_nothing() -> None:
    deployment = example()
    body = body_of(deployment)
    first = plan(observed(body), CONFIG, NOW)
    assert first.create_job is not None
    assert first.apply_isvc is None
    assert first.status.wire()["conditions"][0]["reason"] == "StagingStarted"

    body["status"] = first.status.wire()
    created = first.create_job
    running = plan(
        observed(body, jobs=[created], outcome=staging_outcome(job(active=1), None)), CONFIG, NOW
    )
    assert running.create_job is None
    assert running.delete_jobs == []

    body["status"] = running.status.wire()
    done_job = {**created, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    done = plan(
        observed(body, jobs=[done_job], outcome=staging_outcome(done_job, json.dumps(SUMMARY))),
        CONFIG,
        NOW,
    )
    assert done.status.wire()["artifact"]["uri"] == SUMMARY["uri"]
    assert done.status.wire()["artifact"]["stagingHash"] == staging_hash(deployment, STORE)
    assert done.apply_isvc is not None
    assert done.apply_isvc["spec"]["predictor"]["model"]["storageUri"] == SUMMARY["uri"]
    assert done.delete_jobs == []  # finished: the TTL controller's, not a write of ours
    assert created["spec"]["ttlSecondsAfterFinished"] == 600

    body["status"] = done.status.wire()
    ready_isvc_url = ready_isvc(SUMMARY["uri"])["status"]["url"]
    serving = plan(observed(body, isvc=ready_isvc(SUMMARY["uri"])), CONFIG, NOW)
    # Standard mode: the route that splits traffic exists from the first deployment, and its
    # host, not the InferenceService's (stable only), is the URL clients get.
    assert serving.apply_route is not None
    assert serving.apply_route["spec"]["hostnames"] == ["digits.demo.example.com"]
    assert serving.status.wire()["url"] == "http://digits.demo.example.com"
    ready = next(c for c in serving.status.wire()["conditions"] if c["type"] == "Ready")
    assert ready["message"] == (
        "serving at http://digits.demo.example.com through Gateway kserve/kserve-ingress-gateway "
        f"(the InferenceService alone: {ready_isvc_url})"
    )
    assert {c["type"]: c["status"] for c in serving.status.wire()["conditions"]} == {
        "ArtifactReady": "True", "Deployed": "True", "RolloutProgressing": "False", "Ready": "True",
        "Degraded": "False"}  # fmt: skip
    assert serving.status.wire()["revisions"] == {
        "stable": staging_hash(deployment, STORE), "stableUri": SUMMARY["uri"]}  # fmt: skip

    body["status"] = serving.status.wire()
    again = plan(
        observed(copy.deepcopy(body), isvc=ready_isvc(SUMMARY["uri"])),
        CONFIG,
        NOW + timedelta(hours=1),
    )
    assert not again.status_changed
    assert again.events == []
    assert again.create_job is None
    assert again.apply_isvc == serving.apply_isvc  # the same apply: a no-op on the server
    # What is already there, with KServe's additions, is not sent again at all.
    live = copy.deepcopy(serving.apply_isvc)
    assert live is not None
    live["spec"]["predictor"]["model"]["name"] = "kserve-container"  # a default KServe adds
    live["status"] = ready_isvc(SUMMARY["uri"])["status"]
    quiet = plan(observed(copy.deepcopy(body), isvc=live, route=serving.apply_route), CONFIG, NOW)
    assert (quiet.apply_isvc, quiet.apply_route) == (None, None)
    assert not quiet.status_changed
    # A field our last apply set and this one drops (a promotion's canaryTrafficPercent) is
    # removed only by applying: the managedFields say it is ours.
    live["metadata"]["managedFields"] = [{
        "manager": "modeldeploy-operator", "operation": "Apply",
        "fieldsV1": {"f:spec": {"f:predictor": {"f:canaryTrafficPercent": {}, "f:model": {}}}},
    }]  # fmt: skip
    live["spec"]["predictor"]["canaryTrafficPercent"] = 60
    promoted = plan(observed(copy.deepcopy(body), isvc=live, route=serving.apply_route), CONFIG,
                    NOW)  # fmt: skip
    assert promoted.apply_isvc == serving.apply_isvc
    del live["spec"]["predictor"]["canaryTrafficPercent"], live["metadata"]["managedFields"]
    live["spec"]["predictor"]["minReplicas"] = 3  # someone scaled it by hand: ours again
    drifted = plan(observed(copy.deepcopy(body), isvc=live, route=serving.apply_route), CONFIG,
                   NOW)  # fmt: skip
    assert drifted.apply_isvc == serving.apply_isvc


def test_plan_keeps_the_old_artifact_serving_when_staging_fails() -> None:
    deployment = example()
    old_hash = staging_hash(deployment, STORE)
    status = {"artifact": {**{k: SUMMARY[k] for k in ("uri", "digest", "precision")},
                           "sizeBytes": 1, "stagingHash": old_hash}}  # fmt: skip
    deployment.spec.optimization.precision = Precision.FP16
    body = body_of(deployment, generation=2, status=status)
    new_job = build_staging_job(deployment, UID, CONFIG)
    failed_job = {**new_job, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    summary = {"status": "Failed", "reason": "ParityCheckFailed", "message": "max |Δ| 0.2 > atol"}
    result = plan(observed(body, jobs=[failed_job], isvc=ready_isvc(SUMMARY["uri"]),
                           outcome=staging_outcome(failed_job, json.dumps(summary))), CONFIG, NOW)  # fmt: skip
    assert result.apply_isvc is None
    assert result.create_job is None
    assert result.delete_jobs == []
    assert result.status.wire()["artifact"] == {**status["artifact"], "cacheHit": False}
    conditions = {c["type"]: c for c in result.status.wire()["conditions"]}
    assert conditions["ArtifactReady"]["reason"] == "ParityCheckFailed"
    assert conditions["Degraded"]["status"] == "True"
    assert "max |Δ| 0.2" in conditions["Degraded"]["message"]
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Deployed"]["reason"] == "PreviousArtifact"


def test_plan_with_a_blocker_creates_nothing() -> None:
    body = body_of(example())
    result = plan(
        observed(body, runtime=Blocker("RuntimeNotFound", "spec.serving.runtime: no")), CONFIG, NOW
    )
    assert result.create_job is None
    assert result.apply_isvc is None
    assert result.delete_jobs == []
    conditions = {c["type"]: c for c in result.status.wire()["conditions"]}
    assert conditions["Ready"]["reason"] == "RuntimeNotFound"
    missing = plan(observed(body, secret_missing="creds"), CONFIG, NOW)
    assert {c["type"]: c["reason"] for c in missing.status.wire()["conditions"]}[
        "Ready"
    ] == "SecretNotFound"
    assert missing.create_job is None


def test_plan_refuses_a_custom_query_on_a_metric_the_runtime_does_not_export() -> None:
    # kubectl apply passes it (the API server cannot read PromQL); the operator must not.
    body = body_of(example())
    body["spec"].setdefault("rollout", {})["analysis"] = {
        "queries": [{"name": "drift", "query": "avg(modeldeploy_input_median)", "max": 1}]
    }
    result = plan(observed(body), CONFIG, NOW)
    assert result.create_job is None
    assert result.apply_isvc is None
    ready = {c["type"]: c for c in result.status.wire()["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidSpec"
    assert ready["message"].startswith(
        "spec.rollout.analysis.queries[0].query: metric modeldeploy_input_median is not exported"
    )


def test_someone_elses_inference_service_under_our_name_is_left_alone() -> None:
    body = body_of(example())
    foreign = ready_isvc("s3://theirs/model", owner="99999999-0000-0000-0000-000000000000")
    foreign["metadata"]["ownerReferences"][0].update(kind="Notebook", name="their-notebook")
    result = plan(observed(body, isvc=foreign), CONFIG, NOW)
    assert result.create_job is None
    assert result.apply_isvc is None
    assert result.apply_route is None
    assert not result.delete_canary
    conditions = {c["type"]: c for c in result.status.wire()["conditions"]}
    assert conditions["Ready"]["reason"] == "NameConflict"
    assert conditions["Ready"]["message"].startswith(
        "InferenceService demo/digits belongs to Notebook their-notebook"
    )
    assert conditions["Deployed"]["status"] == "False"  # nothing of ours serves
    assert "url" not in result.status.wire()  # their URL is not ours to advertise
    by_hand = ready_isvc("s3://theirs/model")
    del by_hand["metadata"]["ownerReferences"]
    refused = plan(observed(body, isvc=by_hand), CONFIG, NOW)
    ready = {c["type"]: c for c in refused.status.wire()["conditions"]}["Ready"]
    assert "belongs to no owner (made by hand?)" in ready["message"]


def test_someone_elses_config_map_under_the_shadow_s_name_is_never_taken_over() -> None:
    body = body_of(example())
    theirs = {"metadata": {"name": "digits-shadow", "namespace": "demo", "ownerReferences": [
        {"kind": "Deployment", "name": "their-app", "uid": "9", "controller": True}]}}  # fmt: skip
    result = plan(
        observed(body, isvc=ready_isvc("s3://ours"), shadow_config_map=theirs), CONFIG, NOW
    )
    assert result.apply_shadow is None
    assert result.apply_isvc is None
    ready = {c["type"]: c for c in result.status.wire()["conditions"]}["Ready"]
    assert ready["reason"] == "NameConflict"
    assert "ConfigMap demo/digits-shadow belongs to Deployment their-app" in ready["message"]
    ours = {"metadata": {"name": "digits-shadow", "namespace": "demo",
                         "ownerReferences": [{"uid": UID, "kind": "ModelDeployment"}]}}  # fmt: skip
    fine = plan(observed(body, isvc=ready_isvc("s3://ours"), shadow_config_map=ours), CONFIG, NOW)
    assert {c["type"]: c for c in fine.status.wire()["conditions"]}["Ready"][
        "reason"
    ] != "NameConflict"


def test_plan_deletes_jobs_of_specs_no_longer_wanted() -> None:
    deployment = example()
    stale = build_staging_job(deployment, UID, CONFIG)
    stale["metadata"]["name"] = "digits-stage-0000000000"
    result = plan(observed(body_of(deployment), jobs=[stale]), CONFIG, NOW)
    assert result.delete_jobs == ["digits-stage-0000000000"]
    assert result.create_job is not None


# --- CLI ---------------------------------------------------------------------------------------


def test_render_prints_the_operators_objects() -> None:
    result = CliRunner().invoke(app, ["render", str(ROOT / "examples" / "resnet50-gpu-canary.yaml"),
                                      "--artifact-store", "s3://bucket/artifacts"])  # fmt: skip
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.output))
    assert [o["kind"] for o in objects] == ["Job", "InferenceService"]
    model = objects[1]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "s3://bucket/artifacts/vision/resnet50-<content-key>"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "&id" not in result.output  # no YAML anchors: plain manifests


def test_render_refuses_an_invalid_file_with_the_field_path(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "digits-cpu.yaml").read_text())
    doc["spec"]["serving"]["resources"]["gpuType"] = "NVIDIA-A100"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["render", str(path)])
    assert result.exit_code == 3
    assert "spec.serving.resources.gpuType" in result.output


def test_operator_refuses_an_unsupported_store() -> None:
    result = CliRunner().invoke(app, ["operator", "--artifact-store", "gs://bucket/x"])
    assert result.exit_code == 2
    assert "use s3://bucket/prefix or pvc://claim/prefix" in result.output


def test_pull_secrets_reach_every_staging_job_and_predictor_pod() -> None:
    config = OperatorConfig.from_env(
        {"MODELDEPLOY_ARTIFACT_STORE": "pvc://artifacts/store",
         "MODELDEPLOY_IMAGE_PULL_SECRETS": "ghcr-pull, mirror-pull"}
    )  # fmt: skip
    assert config.image_pull_secrets == ("ghcr-pull", "mirror-pull")
    wanted = [{"name": "ghcr-pull"}, {"name": "mirror-pull"}]
    job = build_staging_job(example(), UID, config)
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == wanted
    cleanup = build_cleanup_job(example(), UID, config)
    assert cleanup["spec"]["template"]["spec"]["imagePullSecrets"] == wanted
    # Through the plan: the staging Job, then the InferenceService once the artifact is staged.
    body = body_of(example())
    first = plan(observed(body), config, NOW)
    assert first.create_job is not None
    assert first.create_job["spec"]["template"]["spec"]["imagePullSecrets"] == wanted
    body["status"] = first.status.wire()
    done_job = {
        **first.create_job,
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    summary = {**SUMMARY, "uri": f"{config.tenant_store('demo')}/{SUMMARY['key']}"}
    done = plan(observed(body, jobs=[done_job], outcome=staging_outcome(done_job, json.dumps(summary))),
                config, NOW)  # fmt: skip
    assert done.apply_isvc is not None
    assert done.apply_isvc["spec"]["predictor"]["imagePullSecrets"] == wanted
    # None configured: no field at all, as before.
    assert (
        "imagePullSecrets"
        not in build_staging_job(example(), UID, CONFIG)["spec"]["template"]["spec"]
    )
