"""``modeldeploy status|promote|…`` finds its cluster and namespace as kubectl does, and says in
one line why it cannot: the namespace of the kubeconfig's current context (or of ``--context``)
when ``-n`` is not given, the kubeconfig path when there is none, the server when it does not
answer. Real CLI processes against the real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.support import Cluster
from tests.support.controlplane import REPO_ROOT, Assets, free_port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return subprocess.run([sys.executable, "-m", "modeldeploy", *args], capture_output=True,
                          text=True, timeout=60, check=False, env=env)  # fmt: skip


def kubeconfig_with_team_context(source: Path, target: Path, namespace: str) -> Path:
    """The control plane's kubeconfig plus a context ``team`` in ``namespace``, made current."""
    doc: dict[str, Any] = yaml.safe_load(source.read_text())
    base = doc["contexts"][0]
    doc["contexts"].append({"name": "team", "context": {**base["context"], "namespace": namespace}})
    doc["current-context"] = "team"
    target.write_text(yaml.safe_dump(doc))
    return target


def test_the_namespace_comes_from_the_context_when_none_is_given(
    control_plane: Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    body = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", body
    )
    config = kubeconfig_with_team_context(control_plane.kubeconfig, tmp_path / "config", namespace)
    found = cli("status", "digits", "--kubeconfig", str(config))
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0] == f"{namespace}/digits"
    # --context picks another context: the first one names no namespace, so "default".
    first = yaml.safe_load(config.read_text())["contexts"][0]["name"]
    other = cli("status", "digits", "--kubeconfig", str(config), "--context", first)
    assert other.returncode == 1
    assert other.stderr.strip() == "modeldeploy status: ModelDeployment default/digits not found"
    # -n still wins over the context.
    explicit = cli("status", "digits", "--kubeconfig", str(config), "--context", first,
                   "-n", namespace)  # fmt: skip
    assert explicit.returncode == 0, explicit.stderr
    unknown = cli("status", "digits", "--kubeconfig", str(config), "--context", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"modeldeploy status: {config} has no context 'nope' (it has: {first}, team)"
    )


def test_a_missing_kubeconfig_is_one_line_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "config"
    result = cli("promote", "digits", "--kubeconfig", str(missing))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"modeldeploy promote: no kubeconfig at {missing} (give --kubeconfig or set KUBECONFIG),"
        " and not in a pod"
    ]


def test_a_server_that_does_not_answer_is_one_line_naming_the_server(
    control_plane: Cluster, tmp_path: Path
) -> None:
    doc: dict[str, Any] = yaml.safe_load(control_plane.kubeconfig.read_text())
    server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    doc["clusters"][0]["cluster"]["server"] = server
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump(doc))
    result = cli("status", "digits", "--kubeconfig", str(config), "-n", "demo")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"modeldeploy status: cannot reach the API server at {server}: ")
    assert "Connection refused" in lines[0]
    assert "MaxRetryError" not in lines[0]
    assert "urllib3" not in lines[0]


def create(api_client: client.ApiClient, namespace: str, name: str) -> None:
    body = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())
    body["metadata"].update(name=name, namespace=namespace)
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", body
    )


def test_list_shows_the_contexts_namespace_or_every_one_as_a_table_json_or_yaml(
    control_plane: Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    other = f"{namespace}-b"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": other}})
    try:
        create(api_client, namespace, "alpha")
        create(api_client, other, "beta")
        config = kubeconfig_with_team_context(
            control_plane.kubeconfig, tmp_path / "config", namespace
        )
        table = cli("list", "--kubeconfig", str(config))
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        assert header.split() == ["NAME", "READY", "REASON", "PHASE", "STEP", "TRAFFIC", "URL"]
        assert [r.split()[0] for r in rows] == ["alpha"]  # the context's namespace only
        everywhere = cli("list", "-A", "-o", "json", "--kubeconfig", str(config))
        assert everywhere.returncode == 0, everywhere.stderr
        listed = json.loads(everywhere.stdout)
        assert listed["kind"] == "List"
        found = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]}
        assert {(namespace, "alpha"), (other, "beta")} <= found
        assert all(i["kind"] == "ModelDeployment" for i in listed["items"])
        as_yaml = cli("list", "-n", other, "-o", "yaml", "--kubeconfig", str(config))
        assert [i["metadata"]["name"] for i in yaml.safe_load(as_yaml.stdout)["items"]] == ["beta"]
        one = cli("status", "alpha", "-o", "json", "--kubeconfig", str(config))
        assert json.loads(one.stdout)["metadata"]["name"] == "alpha"
        one_yaml = cli("status", "alpha", "-o", "yaml", "--kubeconfig", str(config))
        assert yaml.safe_load(one_yaml.stdout)["metadata"]["name"] == "alpha"  # one document
        wide = cli("list", "-A", "--kubeconfig", str(config))
        assert wide.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    finally:
        client.CoreV1Api(api_client).delete_namespace(other)


def test_list_watch_prints_each_change_until_its_timeout(
    control_plane: Cluster, api_client: client.ApiClient, namespace: str
) -> None:
    create(api_client, namespace, "first")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "modeldeploy", "list", "-n", namespace, "--watch",
         "--timeout", "20", "--kubeconfig", str(control_plane.kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        header = watcher.stdout.readline()  # type: ignore[union-attr]
        assert header.split()[0] == "NAME"
        assert watcher.stdout.readline().split()[0] == "first"  # type: ignore[union-attr]
        create(api_client, namespace, "second")  # after the list: seen only by the watch
        assert watcher.stdout.readline().split()[0] == "second"  # type: ignore[union-attr]
        assert watcher.wait(timeout=40) == 0
    finally:
        watcher.kill()


def test_kubectl_runs_the_cli_as_its_mdep_plugin(
    control_plane: Cluster, api_client: client.ApiClient, namespace: str
) -> None:
    create(api_client, namespace, "plugged")
    kubectl = Assets.provide().binary("kubectl")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [kubectl, "mdep", "status", "plugged", "-n", namespace,
         "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{namespace}/plugged"
