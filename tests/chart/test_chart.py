"""The Helm chart with the real ``helm`` (built by ``make envtest``) against the real API server:
lint, the schema refusing bad values, every rendered object accepted by a server-side dry run
(the real KServe and Gateway API schemas included), install and upgrade. The operator running
with exactly the chart's permissions is in tests/operator/test_chart_rbac.py."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.controller.naming import FINALIZER
from tests.cluster.kube import kserve_candidate
from tests.support import Assets, Cluster
from tests.support.controlplane import REPO_ROOT
from tests.support.finalizer_policy import MUTATING_POLICIES

CHART = REPO_ROOT / "charts" / "modeldeploy"
NAMESPACED = ["--set", "watchNamespaces={team-a,team-b}", "--set", "replicas=2",
              "--set", "artifactStore.uri=s3://models/artifacts",
              "--set", "artifactStore.secretName=s3-creds",
              "--set", "artifactStore.operatorCredentialsSecret=operator-s3",
              "--set", "canary.prometheusAddress=http://prometheus.monitoring:9090",
              "--set", "metrics.serviceMonitor.enabled=true"]  # fmt: skip


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    config = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run([Assets.provide().binary("helm"), *config, *args],
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip


def render(
    *args: str, namespace: str = "modeldeploy-system", tests: bool = False
) -> list[dict[str, Any]]:
    """The rendered objects; the ``helm test`` hook's only when ``tests``."""
    skip = [] if tests else ["--skip-tests"]
    result = helm("template", "md", str(CHART), "-n", namespace, *skip, *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_chart_copies_are_the_sources_unchanged() -> None:
    """crds/ and the runtime are copied by `make chart`; a hand edit or a stale copy fails here."""
    sources = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    copies = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in copies] == [p.name for p in sources], "run `make chart`"
    for source in sources:
        assert (CHART / "crds" / source.name).read_text() == source.read_text(), "run `make chart`"
    runtime = REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"
    assert (CHART / "files" / runtime.name).read_text() == runtime.read_text(), "run `make chart`"


@pytest.mark.parametrize("values", [[], NAMESPACED], ids=["cluster-wide", "namespaced"])
def test_helm_lint(values: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicas=0"], "'/replicas'"),
        (["--set", "watchNamespaces=team-a"], "'/watchNamespaces'"),
        (["--set", "watchNamespaces={Team_A}"], "'/watchNamespaces/0'"),
        (["--set", "artifactStore.uri=ftp://host/x"], "'/artifactStore/uri'"),
        (["--set", "canary.gateway=no-namespace"], "'/canary/gateway'"),
        (["--set", "metrics.port=80"], "'/metrics/port'"),
        (["--set", "staging.cpu=lots"], "'/staging/cpu'"),
        (["--set", "artifactStorage.uri=pvc://x/y"], "artifactStorage"),
    ],
)
def test_bad_values_are_refused_with_the_key(values: list[str], message: str) -> None:
    result = helm("template", "md", str(CHART), *values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_default_render_is_locked_down() -> None:
    docs = render()
    deployment = by_kind(docs, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert "--leader-election" not in container["args"]
    assert not any(a.startswith("--namespace") for a in container["args"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELDEPLOY_ARTIFACT_STORE"] == "pvc://modeldeploy-artifacts/artifacts"
    store = next(m for m in container["volumeMounts"] if m["name"] == "artifact-store")
    # Writable only for a shadow's evidence (.shadow/ under the store), which can be turned off.
    assert store == {"name": "artifact-store", "mountPath": "/mnt/pvc/modeldeploy-artifacts",
                     "readOnly": False}  # fmt: skip
    read_only = by_kind(render("--set", "artifactStore.operatorWritesEvidence=false"),
                        "Deployment")[0]["spec"]["template"]["spec"]  # fmt: skip
    assert read_only["containers"][0]["volumeMounts"][1]["readOnly"] is True
    assert read_only["volumes"][1]["persistentVolumeClaim"]["readOnly"] is True
    # Cluster-wide: one ClusterRole, no Secret access without a store Secret, no Roles.
    role = by_kind(docs, "ClusterRole")[0]
    assert not by_kind(docs, "Role")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "secrets" not in resources
    assert {"modeldeployments", "jobs", "inferenceservices", "httproutes", "events"} <= resources
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in role["rules"])
    runtime = by_kind(docs, "ClusterServingRuntime")[0]
    assert runtime["metadata"]["name"] == "modeldeploy-onnx"
    assert runtime["spec"]["containers"][0]["image"] == "ghcr.io/modeldeploy/onnx-runtime:0.1.0"
    # Installing the chart captures no other team's ONNX model: only a named runtime is ours.
    assert not kserve_candidate(runtime["spec"], "onnx", runtime_named=False)
    assert kserve_candidate(runtime["spec"], "onnx", runtime_named=True)
    assert by_kind(docs, "Service")[0]["spec"]["ports"][0]["port"] == 9090


def test_namespaced_render_grants_only_the_listed_namespaces() -> None:
    docs = render(*NAMESPACED)
    cluster_role = by_kind(docs, "ClusterRole")[0]
    assert [r["resources"] for r in cluster_role["rules"]] == [["clusterservingruntimes"]]
    roles = [r for r in by_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    # Two replicas: a Lease decides which one writes; only that Lease may be read or updated.
    (leader,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader")]
    assert leader["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["md-modeldeploy"], "verbs": ["get", "update"]},
    ]  # fmt: skip
    secrets = [rule for rule in roles[0]["rules"] if "secrets" in rule["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"],
                        "resourceNames": ["s3-creds"], "verbs": ["get"]}]  # fmt: skip
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=team-a" in container["args"]
    assert "--leader-election" in container["args"]
    assert "--lease-name=md-modeldeploy" in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "operator-s3"}}]
    assert not any(m["name"] == "artifact-store" for m in container["volumeMounts"])
    assert by_kind(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["port"] == "metrics"


def test_rendered_objects_pass_a_server_side_dry_run(control_plane: Cluster) -> None:
    """Every object the chart renders, judged by the API server (real KServe, RBAC, core
    schemas, the Prometheus Operator's ServiceMonitor and PodMonitor, the helm test hook)."""
    suffix = uuid.uuid4().hex[:6]
    release, team_a, team_b = (f"{n}-{suffix}" for n in ("md", "team-a", "team-b"))
    for ns in (release, team_a, team_b):
        control_plane.kubectl("create", "namespace", ns)
    variants = [MUTATING_POLICIES,
                [*NAMESPACED[:-2], "--set", f"watchNamespaces={{{team_a},{team_b}}}",
                 *MUTATING_POLICIES]]  # fmt: skip
    monitors = ["--set", "metrics.serviceMonitor.enabled=true",
                "--set", "metrics.podMonitor.enabled=true", "--set", "driftAlerts.enabled=true"]  # fmt: skip
    for values in variants:
        docs = render(*values, *monitors, namespace=release, tests=True)
        assert {
            "ServiceMonitor",
            "PodMonitor",
            "PrometheusRule",
            "Pod",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        } <= {d["kind"] for d in docs}
        result = control_plane.kubectl(
            "apply", "--server-side", "--dry-run=server", "--field-manager=helm-test", "-f", "-",
            input="\n---\n".join(json.dumps(d) for d in docs), check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("(server dry run)") == len(docs)


def test_install_then_upgrade_to_namespaced(control_plane: Cluster) -> None:
    suffix = uuid.uuid4().hex[:6]
    release_ns, watched = f"md-{suffix}", f"team-{suffix}"
    release = f"md{suffix}"  # cluster-scoped names (ClusterRole) are per release
    name = f"{release}-modeldeploy"
    for ns in (release_ns, watched):
        control_plane.kubectl("create", "namespace", ns)
    kubeconfig = control_plane.kubeconfig
    # --take-ownership: another test may have applied the same ClusterServingRuntime by hand.
    installed = helm("install", release, str(CHART), "-n", release_ns, "--take-ownership",
                     kubeconfig=kubeconfig)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert f"kubectl -n {release_ns} rollout status deployment/{name}" in installed.stdout
    # The next commands work from anywhere: no source checkout, no URL of a branch.
    assert "modeldeploy validate my-model.yaml" in installed.stdout
    assert "raw.githubusercontent.com" not in installed.stdout
    assert "-f charts/modeldeploy" not in installed.stdout

    def get(*args: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(control_plane.kubectl("get", *args, "-o", "json").stdout)
        return found

    deployment = get("deployment", name, "-n", release_ns)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert get("serviceaccount", name, "-n", release_ns)
    rules = get("clusterrole", f"{name}-cluster")["rules"]
    assert any("modeldeployments" in r["resources"] for r in rules)
    runtime = get("clusterservingruntime", "modeldeploy-onnx")
    assert runtime["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert get("crd", "modeldeployments.modeldeploy.io")

    upgraded = helm("upgrade", release, str(CHART), "-n", release_ns, "--take-ownership",
                    "--set", f"watchNamespaces={{{watched}}}", kubeconfig=kubeconfig)  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    rules = get("clusterrole", f"{name}-cluster")["rules"]
    assert [r["resources"] for r in rules] == [["clusterservingruntimes"]]
    role = get("role", name, "-n", watched)
    assert any("modeldeployments" in r["resources"] for r in role["rules"])
    args = get("deployment", name, "-n", release_ns)["spec"]["template"]["spec"][
        "containers"][0]["args"]  # fmt: skip
    assert f"--namespace={watched}" in args
    history = helm("history", release, "-n", release_ns, "-o", "json", kubeconfig=kubeconfig)
    assert [h["status"] for h in json.loads(history.stdout)] == ["superseded", "deployed"]

    # Uninstall removes what the release made; the CRDs stay (Helm never deletes crds/), so no
    # stored ModelDeployment is lost with a release.
    removed = helm("uninstall", release, "-n", release_ns, "--wait", kubeconfig=kubeconfig)
    assert removed.returncode == 0, removed.stderr
    gone = control_plane.kubectl("get", "clusterrole", f"{name}-cluster", check=False)
    assert gone.returncode != 0
    assert get("crd", "modeldeployments.modeldeploy.io")
    # The runtime stays too: InferenceServices elsewhere may still name it.
    assert get("clusterservingruntime", "modeldeploy-onnx")


def test_the_finalizer_policy_is_rendered_only_where_served_and_bound_to_watched_namespaces() -> (
    None
):
    policies = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    # An API server older than 1.36 (or one with the API off): nothing to install, and the
    # operator adds the finalizer itself.
    assert not [d for d in render(*NAMESPACED) if d["kind"] in policies]
    assert not [d for d in render(*MUTATING_POLICIES, "--set", "finalizerAtCreate=false")
                if d["kind"] in policies]  # fmt: skip
    cluster_wide = render(*MUTATING_POLICIES)
    (policy,), (binding,) = (by_kind(cluster_wide, kind) for kind in policies)
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == "md-modeldeploy-finalizer"
    assert "matchResources" not in binding["spec"]  # every namespace: the operator watches all
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE"]
    assert rule["resources"] == ["modeldeployments"]
    assert FINALIZER in policy["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    assert FINALIZER in policy["spec"]["matchConditions"][0]["expression"]
    assert policy["spec"]["failurePolicy"] == "Ignore"
    (binding,) = by_kind(render(*NAMESPACED, *MUTATING_POLICIES), policies[1])
    (selected,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert selected == {"key": "kubernetes.io/metadata.name", "operator": "In",
                        "values": ["team-a", "team-b"]}  # fmt: skip


def test_every_object_says_helm_manages_it() -> None:
    for doc in render(*MUTATING_POLICIES):
        labels = doc["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", doc["metadata"]["name"]


def test_name_overrides_rename_everything_and_keep_names_valid() -> None:
    renamed = render("--set", "nameOverride=mdop")
    assert by_kind(renamed, "Deployment")[0]["metadata"]["name"] == "md-mdop"
    selector = by_kind(renamed, "Deployment")[0]["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "mdop"
    full = render("--set", "fullnameOverride=serving-operator")
    names = {d["metadata"]["name"] for d in full if d["kind"] != "CustomResourceDefinition"}
    assert {"serving-operator", "serving-operator-cluster"} <= names
    assert by_kind(full, "ServiceAccount")[0]["metadata"]["name"] == "serving-operator"


def test_an_existing_service_account_is_used_and_annotations_reach_the_chart_s_own() -> None:
    own = render(
        "--set", "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/md"
    )
    (account,) = by_kind(own, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/md"
    }
    theirs = render(
        "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=platform-md"
    )
    assert by_kind(theirs, "ServiceAccount") == []
    pod = by_kind(theirs, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-md"
    subjects = [s for b in by_kind(theirs, "ClusterRoleBinding") for s in b["subjects"]]
    assert {s["name"] for s in subjects} == {"platform-md"}
    missing = helm("template", "md", str(CHART), "--set", "serviceAccount.create=false")
    assert missing.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in missing.stderr


def test_pod_pull_secrets_reach_the_operator_s_settings() -> None:
    docs = render("--set", "podImagePullSecrets={ghcr-pull,mirror-pull}")
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELDEPLOY_IMAGE_PULL_SECRETS"] == "ghcr-pull,mirror-pull"
    assert "MODELDEPLOY_IMAGE_PULL_SECRETS" not in {
        e["name"] for e in by_kind(render(), "Deployment")[0]["spec"]["template"]["spec"][
            "containers"][0]["env"]}  # fmt: skip


def parent_chart(root: Path) -> Path:
    """An umbrella chart with this one as a dependency, as a platform team would write it."""
    parent = root / "platform"
    parent.mkdir()
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "modeldeploy", "version": "0.1.0",
                          "repository": f"file://{CHART}", "alias": "serving"}],
    }))  # fmt: skip
    (parent / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"},
        "serving": {"nameOverride": "serving", "replicas": 2},
    }))  # fmt: skip
    built = helm("dependency", "update", str(parent))
    assert built.returncode == 0, built.stderr
    return parent


def test_the_chart_works_as_a_subchart_with_global_values(tmp_path: Path) -> None:
    parent = parent_chart(tmp_path)
    linted = helm("lint", "--strict", str(parent))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    result = helm("template", "p", str(parent), "-n", "platform")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    deployment = by_kind(docs, "Deployment")[0]
    assert deployment["metadata"]["name"] == "p-serving"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-election" in container["args"]
    # The parent's global.imageRegistry reaches every image.
    assert container["image"] == "registry.example.com/modeldeploy/operator:0.1.0"
    runtime = by_kind(docs, "ClusterServingRuntime")[0]
    assert runtime["spec"]["containers"][0]["image"].startswith("registry.example.com/")


def test_the_chart_installs_as_a_subchart(control_plane: Cluster, tmp_path: Path) -> None:
    parent = parent_chart(tmp_path)
    suffix = uuid.uuid4().hex[:6]
    namespace, release = f"platform-{suffix}", f"p{suffix}"
    control_plane.kubectl("create", "namespace", namespace)
    installed = helm("install", release, str(parent), "-n", namespace, "--take-ownership",
                     kubeconfig=control_plane.kubeconfig)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    deployment = json.loads(control_plane.kubectl(
        "get", "deployment", f"{release}-serving", "-n", namespace, "-o", "json").stdout)  # fmt: skip
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    removed = helm("uninstall", release, "-n", namespace, kubeconfig=control_plane.kubeconfig)
    assert removed.returncode == 0, removed.stderr


def test_the_runtime_outlives_an_uninstall_unless_told_otherwise() -> None:
    (kept,) = [d for d in render() if d["kind"] == "ClusterServingRuntime"]
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (plain,) = [d for d in render("--set", "runtime.keepOnUninstall=false")
                if d["kind"] == "ClusterServingRuntime"]  # fmt: skip
    assert "helm.sh/resource-policy" not in plain["metadata"]["annotations"]


def test_images_are_registry_repository_tag_or_digest_with_a_global_registry() -> None:
    def images(*values: str) -> dict[str, str]:
        docs = render(*values, tests=True)
        container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        runtime = by_kind(docs, "ClusterServingRuntime")[0]
        return {
            "operator": container["image"],
            "staging": env["MODELDEPLOY_STAGING_IMAGE"],
            "runtime": runtime["spec"]["containers"][0]["image"],
            "gpu": runtime["metadata"]["annotations"]["modeldeploy.io/gpu-image"],
            "test": by_kind(docs, "Pod")[0]["spec"]["containers"][0]["image"],
        }

    assert images() == {
        "operator": "ghcr.io/modeldeploy/operator:0.1.0",
        "staging": "ghcr.io/modeldeploy/staging:0.1.0",
        "runtime": "ghcr.io/modeldeploy/onnx-runtime:0.1.0",
        "gpu": "ghcr.io/modeldeploy/onnx-runtime:0.1.0-cuda12",
        "test": "ghcr.io/modeldeploy/operator:0.1.0",
    }
    digest = "sha256:" + "ab" * 32
    pinned = images("--set", "global.imageRegistry=mirror.example.com:5000",
                    "--set", f"staging.image.digest={digest}",
                    "--set", "runtime.image.tag=0.1.0-rc1",
                    "--set", "image.registry=")  # fmt: skip
    assert pinned == {
        "operator": "mirror.example.com:5000/modeldeploy/operator:0.1.0",
        "staging": f"mirror.example.com:5000/modeldeploy/staging@{digest}",
        "runtime": "mirror.example.com:5000/modeldeploy/onnx-runtime:0.1.0-rc1",
        "gpu": "mirror.example.com:5000/modeldeploy/onnx-runtime:0.1.0-cuda12",
        "test": "mirror.example.com:5000/modeldeploy/operator:0.1.0",
    }
    bad = helm("template", "md", str(CHART), "--set", "image.digest=latest")
    assert bad.returncode != 0
    assert "'/image/digest'" in bad.stderr


def test_the_pod_monitor_gives_every_series_the_labels_the_analysis_selects_on() -> None:
    from modeldeploy.controller import naming
    from modeldeploy.controller.metric_sources import selector

    assert not by_kind(render(), "PodMonitor")  # off by default
    (monitor,) = by_kind(render("--set", "metrics.podMonitor.enabled=true",
                                "--set", "metrics.podMonitor.ports={8080,9091}"), "PodMonitor")  # fmt: skip
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["selector"]["matchExpressions"] == [
        {"key": naming.REVISION_LABEL, "operator": "Exists"}
    ]
    assert [e["targetPort"] for e in spec["podMetricsEndpoints"]] == [8080, 9091]

    def meta(label: str) -> str:  # how Prometheus names a pod label in service discovery
        return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)

    wanted = {label.split("=")[0] for label in selector("ns", "d", "r").split(",")}
    for endpoint in spec["podMetricsEndpoints"]:
        produced = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
        assert wanted <= set(produced)
        assert produced["modeldeploy_revision"] == [meta(naming.REVISION_LABEL)]
        assert produced["modeldeploy_deployment"] == [meta(naming.DEPLOYMENT_LABEL)]
        assert produced["namespace"] == ["__meta_kubernetes_namespace"]
    scoped = by_kind(render("--set", "metrics.podMonitor.enabled=true",
                            "--set", "watchNamespaces={team-a}"), "PodMonitor")[0]  # fmt: skip
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_the_helm_test_hook_reads_only_what_the_doctor_checks() -> None:
    hooks = [d for d in render(tests=True)
             if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]  # fmt: skip
    assert {d["kind"] for d in hooks} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                          "Role", "RoleBinding", "Pod"}  # fmt: skip
    rules = [r for d in hooks if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    assert all(set(r["verbs"]) <= {"get", "list"} for r in rules)
    assert all(r.get("resourceNames") for r in rules if r["resources"] != ["pods"])
    (pod,) = by_kind(hooks, "Pod")
    assert pod["spec"]["containers"][0]["args"][0] == "doctor"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_values_table_is_generated_from_the_values_comments() -> None:
    import sys

    result = subprocess.run([sys.executable, str(REPO_ROOT / "hack" / "chart" / "values_table.py"),
                             "--check"], capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_every_value_is_described_in_the_table() -> None:
    import importlib.util

    path = REPO_ROOT / "hack" / "chart" / "values_table.py"
    spec = importlib.util.spec_from_file_location("values_table", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    described = {key for key, _, _ in module.rows((CHART / "values.yaml").read_text())}

    def leaves(value: Any, path: str) -> list[str]:
        if isinstance(value, dict) and value:
            return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}".lstrip("."))]
        return [path]

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undescribed = [
        leaf for leaf in leaves(values, "")
        if not any(leaf == d or leaf.startswith(d + ".") for d in described)
    ]  # fmt: skip
    assert undescribed == []


def test_prometheus_auth_values_reach_the_operator_as_it_reads_them() -> None:
    from modeldeploy.controller.config import OperatorConfig

    docs = render("--set", "canary.prometheusAuth.caConfigMap=prom-ca",
                  "--set", "canary.prometheusAuth.bearerTokenFile=/var/run/secrets/kubernetes.io/serviceaccount/token",
                  "--set", "canary.prometheusAuth.headers.X-Scope-OrgID=team-a")  # fmt: skip
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    config = OperatorConfig.from_env(env)
    assert config.prometheus_bearer_token_file == (
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
    assert config.prometheus_headers == (("X-Scope-OrgID", "team-a"),)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "prometheus-ca")
    assert config.prometheus_ca_file == f"{mount['mountPath']}/ca.crt"
    volume = next(v for v in pod["volumes"] if v["name"] == "prometheus-ca")
    assert volume["configMap"] == {
        "name": "prom-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    plain = by_kind(render(), "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("MODELDEPLOY_PROMETHEUS_") for e in plain["env"]
                   if e["name"] != "MODELDEPLOY_PROMETHEUS_ADDRESS")  # fmt: skip


def test_the_drift_alerts_are_rules_prometheus_accepts_on_catalogued_metrics(
    tmp_path: Path,
) -> None:
    from modeldeploy.api.metric_names import RUNTIME_METRICS, metric_names

    assert not by_kind(render(), "PrometheusRule")  # off by default
    (rule,) = by_kind(render("--set", "driftAlerts.enabled=true",
                             "--set-json", "driftAlerts.criticalPsi=0.3"), "PrometheusRule")  # fmt: skip
    groups = rule["spec"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["labels"]["severity"] for r in rules} == {"warning", "critical"}
    assert any(r["expr"].endswith("> 0.3") for r in rules)
    for item in rules:
        assert set(metric_names(item["expr"])) <= RUNTIME_METRICS
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    promtool = Path(Assets.provide().binary("prometheus")).resolve().parent / "promtool"
    checked = subprocess.run([str(promtool), "check", "rules", str(path)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
