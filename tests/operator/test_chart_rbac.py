"""The operator with exactly the Helm chart's permissions: the chart is installed with the real
``helm``, the operator process runs with the chart Deployment's arguments and environment and
authenticates with a token of the chart's ServiceAccount (TokenRequest, as a pod would get), and
does a full deployment and a canary rollout. The same token is refused what it should not have.
Then ``helm test`` runs the chart's test pod (``modeldeploy doctor``, with its own hook RBAC):
it passes while the operator answers its health endpoint, and fails once the operator is gone.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modeldeploy.controller.naming import FINALIZER
from tests.chart.test_chart import CHART, helm
from tests.operator.conftest import Kube, digits_spec
from tests.support import Cluster, finalizer_policy
from tests.support.controlplane import free_port
from tests.support.processes import LocalStack, ManagedProcess

STORE_SECRET = "store-creds"


def token_kubeconfig(control_plane: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a bound token."""
    token = control_plane.kubectl("create", "token", account, "-n", namespace,
                                  "--duration=1h").stdout.strip()  # fmt: skip
    admin = json.loads(control_plane.kubeconfig.read_text())
    admin["users"] = [{"name": "sa", "user": {"token": token}}]
    admin["contexts"] = [{"name": "sa", "context": {"cluster": "envtest", "user": "sa"}}]
    admin["current-context"] = "sa"
    path.write_text(json.dumps(admin))
    return path


def chart_operator_command(
    deployment: dict[str, Any], metrics_port: int
) -> tuple[list[str], dict[str, str]]:
    """The installed Deployment's arguments and environment, as the pod would run them; only
    the metrics port (one loopback for every process here) and the PVC mount root are local.
    The liveness port is the chart's (installed with a free one)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in container["args"] if not a.startswith("--metrics-port")]
    env = {e["name"]: e["value"] for e in container["env"]}
    for local in ("MODELDEPLOY_PVC_ROOT", "HOME"):
        env.pop(local)
    return [*args[1:], f"--metrics-port={metrics_port}"], env


@pytest.fixture
def release(
    control_plane: Cluster, api_client: client.ApiClient, namespace: str, store: str
) -> Iterator[str]:
    """The chart installed (release ``md``) in a namespace of its own, watching only the test's
    namespace, once its finalizer policy is in effect there; uninstalled afterwards, so its
    cluster-scoped objects go too."""
    release_ns = f"md-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", release_ns)
    values = ["--set", f"watchNamespaces={{{namespace}}}", "--set", f"artifactStore.uri={store}",
              "--set", f"artifactStore.secretName={STORE_SECRET}", "--set", "runtime.install=false",
              "--set", "canary.metricsMinWindowSeconds=5", "--set", "resyncSeconds=5",
              "--set", f"livenessPort={free_port()}"]  # fmt: skip
    result = helm("install", "md", str(CHART), "-n", release_ns, *values,
                  kubeconfig=control_plane.kubeconfig)  # fmt: skip
    assert result.returncode == 0, result.stderr
    finalizer_policy.wait_in_effect(api_client, namespace)
    yield release_ns
    helm("uninstall", "md", "-n", release_ns, kubeconfig=control_plane.kubeconfig)


def operator_pod(deployment: dict[str, Any], release: str) -> dict[str, Any]:
    """The pod the Deployment's ReplicaSet would make, for the operator process that runs its
    command here: what ``modeldeploy doctor`` finds by label, with the liveness probe it asks."""
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"md-modeldeploy-{uuid.uuid4().hex[:5]}", "namespace": release,
                     "labels": template["metadata"]["labels"]},
        "spec": {**template["spec"], "nodeName": "local-executor"},
    }  # fmt: skip


def helm_test(control_plane: Cluster, release: str) -> subprocess.CompletedProcess[str]:
    return helm("test", "md", "-n", release, "--timeout", "120s",
                kubeconfig=control_plane.kubeconfig)  # fmt: skip


@dataclass(frozen=True)
class ChartOperator:
    """The operator process as the installed chart's Deployment runs it, with a token of its
    ServiceAccount, ready to start (the store's Secret made, as the chart's values name it)."""

    deployment: dict[str, Any]
    kubeconfig: Path
    args: list[str]
    env: dict[str, str]
    metrics_port: int

    def start(self, stack: LocalStack) -> ManagedProcess:
        return stack.operator(*self.args, env={"KUBECONFIG": str(self.kubeconfig), **self.env})


@pytest.fixture
def chart_operator(
    control_plane: Cluster, namespace: str, release: str, tmp_path: Path
) -> ChartOperator:
    deployment = json.loads(control_plane.kubectl(
        "get", "deployment", "md-modeldeploy", "-n", release, "-o", "json").stdout)  # fmt: skip
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = token_kubeconfig(control_plane, release, sa, tmp_path / "sa.kubeconfig")
    metrics_port = free_port()
    args, env = chart_operator_command(deployment, metrics_port)
    control_plane.kubectl("create", "secret", "generic", STORE_SECRET, "-n", namespace,
                          "--from-literal=AWS_DEFAULT_REGION=none")  # fmt: skip
    return ChartOperator(deployment, kubeconfig, args, env, metrics_port)


def test_operator_with_the_charts_service_account_deploys_and_rolls_out(
    control_plane: Cluster,
    stack: LocalStack,
    kube: Kube,
    namespace: str,
    release: str,
    chart_operator: ChartOperator,
) -> None:
    deployment, kubeconfig = chart_operator.deployment, chart_operator.kubeconfig
    metrics_port = chart_operator.metrics_port
    assert f"--namespace={namespace}" in chart_operator.args
    control_plane.kubectl("create", "secret", "generic", "unrelated", "-n", namespace,
                          "--from-literal=password=hunter2")  # fmt: skip

    operator = chart_operator.start(stack)
    try:
        rollout = {"steps": [{"weight": 50, "pause": "2s"}], "analysis": {"interval": "1s"}}
        kube.create("digits", digits_spec(serving={"deploymentMode": "Knative"}, rollout=rollout))
        kube.wait_condition("digits", "Ready", "True", timeout=180)
        ready = kube.get("digits") or {}
        first = ready["status"]
        # The chart's admission policy gave the finalizer at create: the operator never wrote it.
        assert ready["metadata"]["finalizers"] == [FINALIZER]
        assert finalizer_writers(ready) == set()
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        kube.wait("the rollout to be promoted",
                  lambda: ((kube.get("digits") or {}).get("status", {}).get("rollout") or {})
                  .get("phase") == "Promoted", timeout=240)  # fmt: skip
        final = (kube.get("digits") or {})["status"]
        assert final["revisions"]["stable"] != first["revisions"]["stable"]
        assert final["rollout"]["analysis"]["parityMaxAbsDiff"] < 0.01
        kube.wait("the promotion Event",
                  lambda: ("Normal", "RolloutPromoted") in kube.events("digits"))  # fmt: skip
        log = operator.log_text()
        assert "forbidden" not in log.lower(), log[-3000:]
        assert " 403" not in log, log[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            metrics = response.read().decode()
        assert 'modeldeploy_operator_rollouts_total{outcome="Promoted"} 1.0' in metrics
        assert "modeldeploy_operator_analysis_runs_total" in metrics

        # helm test: the chart's doctor pod, run by the executor, checks the CRDs and the
        # operator pod's health endpoint (the running operator's) with its own token.
        core = kube.core
        pod = core.create_namespaced_pod(release, operator_pod(deployment, release))
        core.patch_namespaced_pod_status(pod.metadata.name, release, {"status": {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}})  # fmt: skip
        tested = helm_test(control_plane, release)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "TEST SUITE:     md-modeldeploy-test" in tested.stdout
        assert "Phase:          Succeeded" in tested.stdout
    finally:
        operator.stop()
    # With the operator gone, its health endpoint does not answer: the test fails.
    failed = helm_test(control_plane, release)
    assert failed.returncode != 0
    assert "pod md-modeldeploy-test failed" in failed.stderr, failed.stdout + failed.stderr

    # The same token is refused what the chart does not grant.
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    custom = client.CustomObjectsApi(api.api_client)
    assert api.read_namespaced_secret(STORE_SECRET, namespace).metadata.name == STORE_SECRET

    def refused(call: Any, *call_args: Any) -> bool:
        try:
            call(*call_args)
        except client.ApiException as err:
            return bool(err.status == 403)
        return False

    assert refused(api.read_namespaced_secret, "unrelated", namespace)
    assert refused(api.list_namespaced_secret, namespace)
    assert refused(api.delete_namespaced_pod, "any", namespace)
    assert refused(custom.list_namespaced_custom_object,
                   "modeldeploy.io", "v1alpha1", "default", "modeldeployments")  # fmt: skip
    assert refused(custom.list_cluster_custom_object,
                   "modeldeploy.io", "v1alpha1", "modeldeployments")  # fmt: skip
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "x"}, "spec": {"predictor": {"model": {
                "modelFormat": {"name": "onnx"}, "storageUri": "s3://a/b"}}}}  # fmt: skip
    assert refused(custom.create_namespaced_custom_object,
                   "serving.kserve.io", "v1beta1", "default", "inferenceservices", isvc)  # fmt: skip
    assert refused(api.read_namespaced_secret, STORE_SECRET, "default")


def finalizer_writers(body: dict[str, Any]) -> set[str]:
    """Who wrote ``metadata.finalizers`` in a request (its field managers). A mutating admission
    policy's change is nobody's: the operator's patch would name the operator."""
    return {entry["manager"] for entry in body["metadata"].get("managedFields") or []
            if "f:finalizers" in (entry.get("fieldsV1") or {}).get("f:metadata", {})}  # fmt: skip


def test_the_charts_admission_policy_gives_the_finalizer_at_create_only_in_watched_namespaces(
    control_plane: Cluster, kube: Kube, namespace: str, release: str
) -> None:
    """The chart's MutatingAdmissionPolicy, installed by ``helm install`` on the real API server
    (1.36 serves its API): the create's own answer carries the operator's finalizer, with no
    operator running, once and beside another controller's; a namespace the release does not
    watch gets none, since no operator of this release would ever remove it there."""
    custom = kube.custom
    bodies: list[tuple[str, dict[str, Any]]] = []
    try:
        created = kube.create("plain", digits_spec())
        bodies.append((namespace, created))
        assert created["metadata"]["finalizers"] == [FINALIZER]
        assert finalizer_writers(created) == set()  # the API server's admission added it

        def create_with(name: str, finalizers: list[str], ns: str = namespace) -> dict[str, Any]:
            body = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": name, "finalizers": finalizers}, "spec": digits_spec()}  # fmt: skip
            made: dict[str, Any] = custom.create_namespaced_custom_object(
                "modeldeploy.io", "v1alpha1", ns, "modeldeployments", body
            )
            bodies.append((ns, made))
            return made

        other = "example.com/keep"
        assert create_with("shared", [other])["metadata"]["finalizers"] == [other, FINALIZER]
        assert create_with("already", [FINALIZER])["metadata"]["finalizers"] == [FINALIZER]
        unwatched = f"unwatched-{uuid.uuid4().hex[:6]}"
        control_plane.kubectl("create", "namespace", unwatched)
        assert not create_with("elsewhere", [], unwatched)["metadata"].get("finalizers")
    finally:  # no operator here to release them: the namespaces must be able to go
        for ns, body in bodies:
            custom.patch_namespaced_custom_object(
                "modeldeploy.io", "v1alpha1", ns, "modeldeployments", body["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )  # fmt: skip


def test_a_verb_taken_from_the_charts_role_is_a_condition_with_the_403_and_comes_back(
    control_plane: Cluster, stack: LocalStack, kube: Kube, namespace: str,
    chart_operator: ChartOperator,
) -> None:  # fmt: skip
    """An administrator's narrower Role: without InferenceService ``patch`` the operator's
    server-side apply is refused. That is a condition with the API server's answer, not a crash
    or a retry loop; once the verb is back, the next resync deploys, with nothing lost."""
    role_name = "md-modeldeploy"
    role = json.loads(control_plane.kubectl("get", "role", role_name, "-n", namespace,
                                            "-o", "json").stdout)  # fmt: skip
    granted = next(r for r in role["rules"] if "inferenceservices" in r["resources"])
    assert "patch" in granted["verbs"]
    narrowed = json.loads(json.dumps(role))
    next(r for r in narrowed["rules"] if "inferenceservices" in r["resources"])["verbs"].remove(
        "patch"
    )
    control_plane.kubectl("replace", "-f", "-", input=json.dumps(narrowed))

    operator = chart_operator.start(stack)
    try:
        kube.create("digits", digits_spec(serving={"deploymentMode": "Knative"}))
        refused = kube.wait_condition(
            "digits", "Deployed", "False", "InferenceServiceRejected", timeout=180
        )
        assert "403" in refused["message"], refused
        assert "inferenceservices" in refused["message"], refused
        assert kube.condition("digits", "ArtifactReady")["status"] == "True"
        assert operator.process.poll() is None, operator.log_text()[-3000:]

        # The verb back: the resync (5 s in this release) applies it, and it serves.
        restored = {**narrowed, "rules": role["rules"]}
        restored["metadata"].pop("resourceVersion", None)
        control_plane.kubectl("replace", "-f", "-", input=json.dumps(restored))
        kube.wait_condition("digits", "Ready", "True", timeout=120)
        assert kube.condition("digits", "Deployed")["reason"] == "InferenceServiceApplied"
    finally:
        operator.stop()
